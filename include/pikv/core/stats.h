#pragma once
// Plain statistics structs users read directly; fmt formatters print them as readable tables.

#include <fmt/format.h>

#include <cstdint>
#include <string>
#include <vector>

namespace pikv {

struct LayerCompressionStats {
  int64_t layer = 0;
  int64_t tokens_before = 0;   // n, tokens per head before compression
  int64_t tokens_after = 0;    // tokens per head after (the largest head for head-wise budgets)
  int64_t entries_before = 0;  // B * Hkv * n
  int64_t entries_after = 0;   // kept (batch, head, token) entries
  int64_t bytes_before = 0;    // layer KV bytes before
  int64_t bytes_after = 0;     // and after (what the cache really holds)
  double compress_ms = 0.0;    // host wall time of score + select + apply

  // Fraction of entries removed.
  double achieved_ratio() const;
};

struct CompressionStats {
  std::string press;  // Press::describe()
  std::vector<LayerCompressionStats> layers;

  int64_t bytes_before() const;
  int64_t bytes_after() const;
  int64_t bytes_saved() const { return bytes_before() - bytes_after(); }
  double achieved_ratio() const;  // over all layers' entries
  double compress_ms() const;
  void clear() { layers.clear(); press.clear(); }
};

// "1.50 MiB", "512 B"
std::string format_bytes(int64_t bytes);

}  // namespace pikv

template <>
struct fmt::formatter<pikv::LayerCompressionStats> : fmt::formatter<std::string_view> {
  auto format(const pikv::LayerCompressionStats& s, fmt::format_context& ctx) const
      -> decltype(ctx.out()) {
    return fmt::format_to(ctx.out(), "layer {:>3}: {:>6} -> {:>6} tokens, {} -> {} ({:.1f}% removed, {:.3f} ms)",
                          s.layer, s.tokens_before, s.tokens_after, pikv::format_bytes(s.bytes_before),
                          pikv::format_bytes(s.bytes_after), 100.0 * s.achieved_ratio(), s.compress_ms);
  }
};

template <>
struct fmt::formatter<pikv::CompressionStats> : fmt::formatter<std::string_view> {
  auto format(const pikv::CompressionStats& s, fmt::format_context& ctx) const -> decltype(ctx.out()) {
    auto out = fmt::format_to(ctx.out(), "{}: {} layers, KV {} -> {} (saved {}, {:.1f}% of entries removed), {:.3f} ms",
                              s.press.empty() ? "no press" : s.press, s.layers.size(),
                              pikv::format_bytes(s.bytes_before()), pikv::format_bytes(s.bytes_after()),
                              pikv::format_bytes(s.bytes_saved()), 100.0 * s.achieved_ratio(), s.compress_ms());
    for (const auto& l : s.layers) out = fmt::format_to(out, "\n  {}", l);
    return out;
  }
};
