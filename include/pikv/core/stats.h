#pragma once
// Plain statistics structs users read directly; to_string / operator<< print them as readable tables
// (and <pikv/fmt.h> makes them fmt-formattable).

#include <cstdint>
#include <iosfwd>
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
  [[nodiscard]] double achieved_ratio() const;
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
[[nodiscard]] std::string format_bytes(int64_t bytes);

// "layer   3:   1024 ->    512 tokens, 4.00 MiB -> 2.00 MiB (50.0% removed, 0.420 ms)"
[[nodiscard]] std::string to_string(const LayerCompressionStats& stats);
// A summary line, then one line per layer.
[[nodiscard]] std::string to_string(const CompressionStats& stats);
std::ostream& operator<<(std::ostream& out, const LayerCompressionStats& stats);
std::ostream& operator<<(std::ostream& out, const CompressionStats& stats);

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/core/detail/stats-inl.h>
#endif
