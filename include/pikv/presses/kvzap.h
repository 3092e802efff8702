#pragma once
// KVzap (kvpress's KVzapPress, https://arxiv.org/abs/2601.07891): a small per-layer model predicts,
// from the attention block's input (post input-norm hidden states), each token's log KVzip+ score per
// KV head, so a KVzip-quality ranking costs one linear layer or a two-layer MLP instead of a second
// pass over the context. kvpress downloads the surrogate models (nvidia/KVzap-{linear,mlp}-<model>);
// kvzap_model=DIR reads that folder (transformers' save_pretrained layout):
//   DIR/config.json        {"model_type": "kvzap", "input_dim": Dm, "output_dim": Hkv,
//                           "hidden_dim": null (linear) or h (MLP), "n_modules": L}
//   DIR/model.safetensors  linear: layers.{l}.weight [Hkv, Dm], layers.{l}.bias [Hkv]
//                          MLP:    layers.{l}.0.weight [h, Dm], .0.bias [h], GELU (erf),
//                                  layers.{l}.2.weight [Hkv, h], .2.bias [Hkv]
// Its intended use is under DMS (dms:press=kvzap, a threshold on the predicted log score); as a
// scorer it keeps the top (1 - ratio) per head. Prefill only.

#include <pikv/core/press.h>

#include <string>
#include <vector>

namespace pikv {

#define PIKV_KVZAP_OPTIONS(X)                                                                                    \
  PIKV_RATIO_OPTION(X)                                                                                           \
  X(std::string, kvzap_model, "", rule::any(), "surrogate model folder (nvidia/KVzap-*-<model> layout; required)") \
  X(std::string, model_type, "", rule::any(), "linear or mlp: checked against the folder (default: the folder's)")

struct KVzapOptions {
  PIKV_OPTIONS(KVzapOptions, PIKV_KVZAP_OPTIONS)
};

class KVzapPress : public ScorerPressBase<KVzapPress, KVzapOptions> {
 public:
  static constexpr const char* kName = "kvzap";
  // Loads options.kvzap_model (throws naming the file and tensor when it is missing or malformed); a
  // press built with no folder throws when it first scores.
  explicit KVzapPress(const KVzapOptions& options = {});
  PressRequirements requirements() const override;
  void on_attach(const HookableModel& model) override;
  // hidden_states [B, n, Dm] -> [B, Hkv, n] (float32 at least)
  at::Tensor score(const AttentionContext& ctx, double ratio) const override;

  bool is_mlp() const { return hidden_dim_ > 0; }

 private:
  struct Module {
    at::Tensor w0, b0, w2, b2;  // linear: w0 [Hkv, Dm], b0 [Hkv]; MLP: w0 [h, Dm], b0 [h], w2 [Hkv, h], b2 [Hkv]
  };
  std::vector<Module> modules_;
  int64_t input_dim_ = 0, output_dim_ = 0, hidden_dim_ = 0;
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/presses/detail/kvzap-inl.h>
#endif
