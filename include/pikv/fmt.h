#pragma once
// Opt-in fmt formatters for PiKVPress's statistics structs: fmt::format("{}", stats). The library does
// not force fmt on its users; include this header where you want it and make fmt usable in that
// translation unit (LibTorch ships fmt's headers: define FMT_HEADER_ONLY, or link your own fmt).

#include <pikv/core/stats.h>
#include <pikv/routing/moe_router.h>

#include <fmt/format.h>

#include <string_view>

template <>
struct fmt::formatter<pikv::LayerCompressionStats> : fmt::formatter<std::string_view> {
  auto format(const pikv::LayerCompressionStats& s, fmt::format_context& ctx) const -> decltype(ctx.out()) {
    return fmt::formatter<std::string_view>::format(pikv::to_string(s), ctx);
  }
};

template <>
struct fmt::formatter<pikv::CompressionStats> : fmt::formatter<std::string_view> {
  auto format(const pikv::CompressionStats& s, fmt::format_context& ctx) const -> decltype(ctx.out()) {
    return fmt::formatter<std::string_view>::format(pikv::to_string(s), ctx);
  }
};

template <>
struct fmt::formatter<pikv::routing::RouterStats> : fmt::formatter<std::string_view> {
  auto format(const pikv::routing::RouterStats& s, fmt::format_context& ctx) const -> decltype(ctx.out()) {
    return fmt::formatter<std::string_view>::format(pikv::routing::to_string(s), ctx);
  }
};
