#pragma once
// PerLayer: one scorer press, a different compression ratio for every layer (layer l uses ratios[l];
// 1.0 is allowed and keeps no token). The reported ratio is the mean. kvpress calls it
// PerLayerCompressionPress.

#include <pikv/core/press.h>

#include <memory>
#include <vector>

namespace pikv {

#define PIKV_PER_LAYER_OPTIONS(X) \
  X(std::vector<double>, compression_ratios, {}, rule::in(0, 1), "comma-separated ratio per layer, each in [0, 1]")

struct PerLayerOptions {
  PIKV_OPTIONS(PerLayerOptions, PIKV_PER_LAYER_OPTIONS)
};

class PerLayerPress : public detail::Wrapping<Press> {
 public:
  using Options = PerLayerOptions;
  static constexpr const char* kName = "per_layer_compression";
  // Throws pikv::Error for a null press, an empty list or a ratio outside [0, 1].
  PerLayerPress(std::shared_ptr<ScorerPress> press, const PerLayerOptions& options);
  PerLayerPress(std::shared_ptr<ScorerPress> press, std::vector<double> compression_ratios)
      : PerLayerPress(std::move(press), PerLayerOptions().compression_ratios(std::move(compression_ratios))) {}

  std::string name() const override { return kName; }
  std::string describe() const override;
  double compression_ratio() const override;
  const ScorerPress* scorer() const override { return press_.get(); }
  // Throws unless ctx.layer indexes the ratio list.
  CompressedKV compress(const AttentionContext& ctx) override;
  // Throws unless the model has exactly as many layers as there are ratios.
  void on_attach(const HookableModel& model) override;

  const std::vector<double>& compression_ratios() const { return options_.compression_ratios(); }

 private:
  PerLayerOptions options_;
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/presses/detail/per_layer-inl.h>
#endif
