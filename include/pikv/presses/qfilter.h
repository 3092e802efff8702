#pragma once
// Q-Filters (kvpress's QFilterPress, https://arxiv.org/abs/2503.02812): one learned direction per layer
// and KV head, the dominant direction of the model's post-RoPE queries; a key's score is its
// projection on it, score = -(filter . k), so keys the typical query attends to stay. The filters are
// an artefact of the model: kvpress downloads them for a few models (nthngdy/<model>_qfilt);
// `pikv calibrate qfilter` computes them for any model. filters=DIR reads the layout both write:
//   DIR/config.json        {"num_layers": L, "num_kv_heads": Hkv, "kv_head_dim": d}
//   DIR/model.safetensors  q_filters float [L, Hkv, d]
// Prefill only; the filters must match the model's layers, KV heads and head size.

#include <pikv/core/press.h>

#include <string>

namespace pikv {

#define PIKV_QFILTER_OPTIONS(X) \
  PIKV_RATIO_OPTION(X)          \
  X(std::string, filters, "", rule::any(), "Q-filters folder from pikv calibrate qfilter or the hub (required)")

struct QFilterOptions {
  PIKV_OPTIONS(QFilterOptions, PIKV_QFILTER_OPTIONS)
};

class QFilterPress : public ScorerPressBase<QFilterPress, QFilterOptions> {
 public:
  static constexpr const char* kName = "qfilter";
  // Loads options.filters (throws naming the file when it is missing, malformed or disagrees with its
  // config.json); a press built with no folder throws when it first scores.
  explicit QFilterPress(const QFilterOptions& options = {});
  void on_attach(const HookableModel& model) override;
  // keys [B, Hkv, n, d] -> [B, Hkv, n], computed in at least float32
  at::Tensor score(const AttentionContext& ctx, double ratio) const override;

  const at::Tensor& filters() const { return filters_; }  // float32 [L, Hkv, d]

  // Writes DIR/config.json and DIR/model.safetensors for filters [L, Hkv, d] (what `pikv calibrate
  // qfilter` produces; kvpress's QFilters.from_pretrained reads the same folder).
  static void write_filters(const std::string& dir, const at::Tensor& filters);

 private:
  at::Tensor filters_;
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/presses/detail/qfilter-inl.h>
#endif
