#pragma once
// The share each layer removed in the last prefill, for presses whose ratio follows the content
// (SimLayerKV, DMS): compression_ratio() reports the mean over layers, 0 before a prefill.

#include <cstdint>
#include <map>

namespace pikv::detail {

class LayerRatios {
 public:
  void clear() { ratios_.clear(); }
  void set(int64_t layer, double removed) { ratios_[layer] = removed; }
  double mean() const {
    if (ratios_.empty()) return 0.0;
    double sum = 0.0;
    for (const auto& [layer, r] : ratios_) sum += r;
    return sum / static_cast<double>(ratios_.size());
  }

 private:
  std::map<int64_t, double> ratios_;  // layer -> removed share
};

}  // namespace pikv::detail
