#pragma once
// PerLayer: one scorer press, a different compression ratio for every layer (layer l uses ratios[l];
// 1.0 is allowed and keeps no token). The reported ratio is the mean. kvpress calls it
// PerLayerCompressionPress.

#include <pikv/core/press.h>

#include <memory>
#include <vector>

namespace pikv {

class PerLayerPress : public Press {
 public:
  // Throws pikv::Error for a null press, an empty list or a ratio outside [0, 1].
  PerLayerPress(std::shared_ptr<ScorerPress> press, std::vector<double> compression_ratios);

  std::string name() const override { return "per_layer_compression"; }
  std::string describe() const override;
  double compression_ratio() const override;
  PressRequirements requirements() const override { return press_->requirements(); }
  // Throws unless ctx.layer indexes the ratio list.
  CompressedKV compress(const AttentionContext& ctx) override;
  // Throws unless the model has exactly as many layers as there are ratios.
  void on_attach(const HookableModel& model) override;

  const std::vector<double>& compression_ratios() const { return ratios_; }
  const ScorerPress& press() const { return *press_; }

 private:
  std::shared_ptr<ScorerPress> press_;
  std::vector<double> ratios_;
};

}  // namespace pikv
