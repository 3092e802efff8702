#include <pikv/core/stats.h>

namespace pikv {

double LayerCompressionStats::achieved_ratio() const {
  return entries_before > 0 ? 1.0 - static_cast<double>(entries_after) / static_cast<double>(entries_before) : 0.0;
}

int64_t CompressionStats::bytes_before() const {
  int64_t total = 0;
  for (const auto& l : layers) total += l.bytes_before;
  return total;
}

int64_t CompressionStats::bytes_after() const {
  int64_t total = 0;
  for (const auto& l : layers) total += l.bytes_after;
  return total;
}

double CompressionStats::achieved_ratio() const {
  int64_t before = 0, after = 0;
  for (const auto& l : layers) {
    before += l.entries_before;
    after += l.entries_after;
  }
  return before > 0 ? 1.0 - static_cast<double>(after) / static_cast<double>(before) : 0.0;
}

double CompressionStats::compress_ms() const {
  double total = 0.0;
  for (const auto& l : layers) total += l.compress_ms;
  return total;
}

std::string format_bytes(int64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while ((v >= 1024.0 || v <= -1024.0) && u < 4) {
    v /= 1024.0;
    ++u;
  }
  return u == 0 ? fmt::format("{} B", bytes) : fmt::format("{:.2f} {}", v, units[u]);
}

}  // namespace pikv
