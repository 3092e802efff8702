#pragma once

#include <pikv/core/config.h>
#include <pikv/core/stats.h>

#include <fmt/format.h>

#include <ostream>

namespace pikv {

PIKV_INLINE double LayerCompressionStats::achieved_ratio() const {
  return entries_before > 0 ? 1.0 - static_cast<double>(entries_after) / static_cast<double>(entries_before) : 0.0;
}

PIKV_INLINE int64_t CompressionStats::bytes_before() const {
  int64_t total = 0;
  for (const auto& l : layers) total += l.bytes_before;
  return total;
}

PIKV_INLINE int64_t CompressionStats::bytes_after() const {
  int64_t total = 0;
  for (const auto& l : layers) total += l.bytes_after;
  return total;
}

PIKV_INLINE double CompressionStats::achieved_ratio() const {
  int64_t before = 0, after = 0;
  for (const auto& l : layers) {
    before += l.entries_before;
    after += l.entries_after;
  }
  return before > 0 ? 1.0 - static_cast<double>(after) / static_cast<double>(before) : 0.0;
}

PIKV_INLINE double CompressionStats::compress_ms() const {
  double total = 0.0;
  for (const auto& l : layers) total += l.compress_ms;
  return total;
}

PIKV_INLINE std::string format_bytes(int64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while ((v >= 1024.0 || v <= -1024.0) && u < 4) {
    v /= 1024.0;
    ++u;
  }
  return u == 0 ? fmt::format("{} B", bytes) : fmt::format("{:.2f} {}", v, units[u]);
}

PIKV_INLINE std::string to_string(const LayerCompressionStats& s) {
  return fmt::format("layer {:>3}: {:>6} -> {:>6} tokens, {} -> {} ({:.1f}% removed, {:.3f} ms)", s.layer,
                     s.tokens_before, s.tokens_after, format_bytes(s.bytes_before), format_bytes(s.bytes_after),
                     100.0 * s.achieved_ratio(), s.compress_ms);
}

PIKV_INLINE std::string to_string(const CompressionStats& s) {
  std::string out = fmt::format("{}: {} layers, KV {} -> {} (saved {}, {:.1f}% of entries removed), {:.3f} ms",
                                s.press.empty() ? "no press" : s.press, s.layers.size(), format_bytes(s.bytes_before()),
                                format_bytes(s.bytes_after()), format_bytes(s.bytes_saved()), 100.0 * s.achieved_ratio(),
                                s.compress_ms());
  for (const auto& l : s.layers) out += "\n  " + to_string(l);
  return out;
}

PIKV_INLINE std::ostream& operator<<(std::ostream& out, const LayerCompressionStats& s) { return out << to_string(s); }
PIKV_INLINE std::ostream& operator<<(std::ostream& out, const CompressionStats& s) { return out << to_string(s); }

}  // namespace pikv
