#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/hookable_model.h>
#include <pikv/core/registry.h>
#include <pikv/presses/per_layer.h>

#include <numeric>

namespace pikv {

PIKV_INLINE PerLayerPress::PerLayerPress(std::shared_ptr<ScorerPress> press, const PerLayerOptions& options)
    : Wrapping(std::move(press), kName), options_(options) {
  PIKV_CHECK(!options_.compression_ratios().empty(),
             "per_layer_compression needs one compression ratio per layer, got an empty list");
  validate_options(options_);
}

PIKV_INLINE std::string PerLayerPress::describe() const {
  return describe_wrapper(name(), *press_, describe_options(options_));
}

PIKV_INLINE double PerLayerPress::compression_ratio() const {
  const auto& r = options_.compression_ratios();
  return std::accumulate(r.begin(), r.end(), 0.0) / static_cast<double>(r.size());
}

PIKV_INLINE CompressedKV PerLayerPress::compress(const AttentionContext& ctx) {
  const auto& r = options_.compression_ratios();
  PIKV_CHECK(ctx.layer >= 0 && ctx.layer < static_cast<int64_t>(r.size()),
             "per_layer_compression has {} compression ratios but was asked to compress layer {}", r.size(), ctx.layer);
  return press_->compress_at(ctx, r[static_cast<size_t>(ctx.layer)]);
}

PIKV_INLINE void PerLayerPress::on_attach(const HookableModel& model) {
  PIKV_CHECK(model.num_layers() == static_cast<int64_t>(options_.compression_ratios().size()),
             "per_layer_compression has {} compression ratios but the model has {} layers",
             options_.compression_ratios().size(), model.num_layers());
  press_->on_attach(model);
}

PIKV_REGISTER_PRESS(PerLayerPress, wrapper_press<PerLayerPress>("a scorer press with one compression ratio per layer",
                                                                PressKind::wrapper,
                                                                InnerSpec{"press", "inner.", "inner", false}));

}  // namespace pikv
