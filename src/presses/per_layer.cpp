#include <pikv/core/budget.h>
#include <pikv/core/error.h>
#include <pikv/core/hookable_model.h>
#include <pikv/presses/per_layer.h>

#include <numeric>

namespace pikv {

PerLayerPress::PerLayerPress(std::shared_ptr<ScorerPress> press, std::vector<double> compression_ratios)
    : press_(std::move(press)), ratios_(std::move(compression_ratios)) {
  PIKV_CHECK(press_ != nullptr, "PerLayerPress needs a scorer press, got null");
  PIKV_CHECK(!ratios_.empty(), "PerLayerPress needs one compression ratio per layer, got an empty list");
  for (size_t l = 0; l < ratios_.size(); ++l)
    check_compression_ratio(ratios_[l], fmt::format("PerLayerPress compression_ratios[{}]", l), /*allow_one=*/true);
}

std::string PerLayerPress::describe() const {
  return fmt::format("per_layer_compression({}, compression_ratios=[{}])", press_->describe(), fmt::join(ratios_, ", "));
}

double PerLayerPress::compression_ratio() const {
  return std::accumulate(ratios_.begin(), ratios_.end(), 0.0) / static_cast<double>(ratios_.size());
}

CompressedKV PerLayerPress::compress(const AttentionContext& ctx) {
  PIKV_CHECK(ctx.layer >= 0 && ctx.layer < static_cast<int64_t>(ratios_.size()),
             "PerLayerPress has {} compression ratios but was asked to compress layer {}", ratios_.size(), ctx.layer);
  return press_->compress_at(ctx, ratios_[static_cast<size_t>(ctx.layer)]);
}

void PerLayerPress::on_attach(const HookableModel& model) {
  PIKV_CHECK(model.num_layers() == static_cast<int64_t>(ratios_.size()),
             "PerLayerPress has {} compression ratios but the model has {} layers", ratios_.size(), model.num_layers());
  press_->on_attach(model);
}

}  // namespace pikv
