#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/hookable_model.h>
#include <pikv/core/registry.h>
#include <pikv/core/tensor_checks.h>
#include <pikv/presses/detail/artefact_folder.h>
#include <pikv/presses/kvzap.h>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

namespace pikv {

PIKV_INLINE KVzapPress::KVzapPress(const KVzapOptions& options) : ScorerPressBase(options) {
  const std::string& type = options_.model_type();
  PIKV_CHECK(type.empty() || type == "linear" || type == "mlp", "kvzap: model_type must be linear or mlp, got '{}'",
             type);
  const std::string& dir = options_.kvzap_model();
  if (dir.empty()) return;
  const detail::ArtefactFolder folder(kName, dir, "KVzap model config", "kvzap");
  input_dim_ = folder.positive("input_dim");
  output_dim_ = folder.positive("output_dim");
  const int64_t layers = folder.positive("n_modules");
  PIKV_CHECK(folder.config().contains("hidden_dim"), "kvzap: {} needs 'hidden_dim' (null for the linear model)",
             folder.config_path());
  hidden_dim_ = folder.config()["hidden_dim"].is_null() ? 0 : folder.positive("hidden_dim");
  PIKV_CHECK(type.empty() || (type == "mlp") == is_mlp(), "kvzap: model_type={} but {} holds the {} model", type, dir,
             is_mlp() ? "mlp" : "linear");
  auto get = [&](const std::string& name, std::vector<int64_t> shape) { return folder.tensor(name, shape); };
  for (int64_t l = 0; l < layers; ++l) {
    const std::string p = fmt::format("layers.{}.", l);
    Module m;
    if (is_mlp()) {
      m.w0 = get(p + "0.weight", {hidden_dim_, input_dim_});
      m.b0 = get(p + "0.bias", {hidden_dim_});
      m.w2 = get(p + "2.weight", {output_dim_, hidden_dim_});
      m.b2 = get(p + "2.bias", {output_dim_});
    } else {
      m.w0 = get(p + "weight", {output_dim_, input_dim_});
      m.b0 = get(p + "bias", {output_dim_});
    }
    modules_.push_back(std::move(m));
  }
}

PIKV_INLINE PressRequirements KVzapPress::requirements() const {
  PressRequirements r;
  r.hidden_states = true;
  return r;
}

PIKV_INLINE void KVzapPress::on_attach(const HookableModel& model) {
  PIKV_CHECK(modules_.empty() || static_cast<int64_t>(modules_.size()) == model.num_layers(),
             "kvzap: the model in {} has {} layers; this model has {} (a surrogate of another model?)",
             options_.kvzap_model(), modules_.size(), model.num_layers());
}

PIKV_INLINE at::Tensor KVzapPress::score(const AttentionContext& ctx, double) const {
  PIKV_CHECK(!modules_.empty(), "kvzap needs its surrogate model: kvzap_model=DIR (an nvidia/KVzap-*-<model> folder)");
  PIKV_CHECK(ctx.hidden_states.defined(), "kvzap scores the layer's hidden states; this runner gives none");
  const int64_t D = ctx.hidden_states.size(-1);
  PIKV_CHECK(ctx.layer < static_cast<int64_t>(modules_.size()) && D == input_dim_ && ctx.kv_heads() == output_dim_,
             "kvzap: the model in {} maps {} layers of {} hidden units to {} KV heads; this model's layer {} has {} "
             "hidden units and {} KV heads (a surrogate of another model?)",
             options_.kvzap_model(), modules_.size(), input_dim_, output_dim_, ctx.layer, D, ctx.kv_heads());
  const Module& m = modules_[static_cast<size_t>(ctx.layer)];
  const auto type = at::promote_types(ctx.hidden_states.scalar_type(), at::kFloat);
  const auto dev = ctx.hidden_states.device();
  const at::Tensor h = ctx.hidden_states.to(type);
  at::Tensor y = at::linear(h, m.w0.to(dev, type), m.b0.to(dev, type));
  if (is_mlp()) y = at::linear(at::gelu(y), m.w2.to(dev, type), m.b2.to(dev, type));  // nn.GELU(): exact erf
  return y.transpose(1, 2).contiguous();  // [B, n, Hkv] -> [B, Hkv, n]
}

PIKV_REGISTER_PRESS(KVzapPress,
                    options_press<KVzapPress>("scores predicted from the hidden states by KVzap's surrogate model "
                                              "(kvzap_model folder; usually under dms)"));

}  // namespace pikv
