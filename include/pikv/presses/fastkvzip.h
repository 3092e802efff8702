#pragma once
// Fast KVzip (kvpress's FastKVzipPress, https://arxiv.org/abs/2601.17668): KVzip's ranking predicted
// by a small gate per layer from the attention block's input (post input-norm hidden states), so no
// context reconstruction is needed. Each gate projects a token to G queries and one key of o (16)
// dimensions per KV head (q/k RMS-normed), and scores it by the softmax weight of its own key against
// S (16) learned "sink" keys: score = 1 / (1 + sum_s exp(q.k_s/sqrt(o) - (q.k/sqrt(o) + b))), averaged
// over the G queries. The first n_sink tokens and a recent window (window_ratio of the context below
// 32000 tokens, window_size above) score 1. After the prefill the lowest scores go as KVzip's do:
// across every layer and head (default) or the same ratio per layer (layerwise). Stored head-wise
// (ragged: the memory is freed; kvpress masks). Batch 1, the context in one prefill forward.
//
// kvpress downloads gates from Jang-Hyun/Fast-KVzip (a pickled .pt per model); gates=DIR reads
//   DIR/config.json        {"model_type": "fastkvzip", "num_layers": L, "input_dim": Dm,
//                           "num_kv_heads": Hkv, "ngroup": G, "output_dim": o, "sink": S}
//   DIR/model.safetensors  per layer l: l.q_proj.weight [Hkv*G*o, Dm], l.q_proj.bias [Hkv*G*o],
//                          l.k_proj.weight [Hkv*o, Dm], l.q_norm.weight [o], l.k_norm.weight [o],
//                          l.k_base [Hkv, 1, S, o], l.b [Hkv, 1, G]
// which `pikv calibrate fastkvzip` trains for any model and scripts/convert_fastkvzip_gates.py makes
// from the released .pt files.

#include <pikv/presses/context_pass.h>

#include <map>
#include <string>
#include <vector>

namespace pikv {

#define PIKV_FASTKVZIP_OPTIONS(X)                                                                          \
  PIKV_RATIO_OPTION(X)                                                                                     \
  X(std::string, gates, "", rule::any(), "gate folder (config.json + model.safetensors; required)")        \
  X(bool, layerwise, false, rule::any(), "the same ratio in every layer (default: one budget for all)")    \
  X(int64_t, n_sink, 4, rule::at_least(0), "leading tokens always kept")                                   \
  X(int64_t, window_size, 4096, rule::at_least(0), "recent tokens always kept from 32000 tokens on")       \
  X(double, window_ratio, 0.02, rule::in(0, 1), "share of a shorter context kept as the recent window")

struct FastKVzipOptions {
  PIKV_OPTIONS(FastKVzipOptions, PIKV_FASTKVZIP_OPTIONS)
};

class FastKVzipPress : public ContextPassPress {
 public:
  using Options = FastKVzipOptions;
  static constexpr const char* kName = "fastkvzip";
  // Loads options.gates (throws naming the file and tensor when it is missing or malformed); a press
  // built without gates throws when it first scores at a ratio above 0.
  explicit FastKVzipPress(const FastKVzipOptions& options = {});
  std::string name() const override { return kName; }
  std::string describe() const override;
  double compression_ratio() const override { return options_.compression_ratio(); }
  PressRequirements requirements() const override;
  bool head_wise() const override { return true; }
  bool needs_context_passes() const override { return options_.compression_ratio() > 0; }
  void on_attach(const HookableModel& model) override;
  // Scores every layer during the prefill (it compresses after it).
  bool should_compress(const AttentionContext& ctx) const override;
  void reset() override;

  // During the prefill: records the layer's gate scores and keeps the cache as it is.
  CompressedKV compress(const AttentionContext& ctx) override;
  // No extra forward: the selection across layers, applied to every layer of passes.cache.
  ContextPassesCost run_context_passes(const ContextPasses& passes) override;
  at::Tensor context_pass_scores() const override { return scores_; }

  // The gate of `layer` on hidden_states [1, n, Dm] -> float32 (at least) [1, Hkv, n], before the
  // sink and window are set to 1.
  at::Tensor gate_scores(int64_t layer, const at::Tensor& hidden_states) const;

  // Writes a gate folder (the layout above) from per-layer tensors named as in it without the "l."
  // prefix; `shape` gives the config's numbers.
  struct GateShape {
    int64_t layers = 0, input_dim = 0, kv_heads = 0, group = 0, output_dim = 16, sink = 16;
  };
  static void write_gates(const std::string& dir, const GateShape& shape,
                          const std::vector<std::map<std::string, at::Tensor>>& layers);
  const FastKVzipOptions& options() const { return options_; }

  // One gate's parameters, with leading dims P (none for one layer; [L] for gates trained together):
  // q_w [P, Hkv*G*o, Dm], q_b [P, Hkv*G*o], k_w [P, Hkv*o, Dm], q_norm / k_norm [P, o],
  // k_base [P, Hkv, S, o], b [P, Hkv, G].
  struct Gate {
    at::Tensor q_w, q_b, k_w, q_norm, k_norm, k_base, b;
  };
  // The gate's score of every token, x [P, T, Dm] -> [P, T, Hkv] in x's dtype: 1 / (1 + sum_s
  // exp(q.k_s/sqrt(o) - q.k/sqrt(o) - b)), computed as exp(-logsumexp([0, ...])) so that no exp
  // overflows, averaged over the G queries. What the press runs and `pikv calibrate fastkvzip` trains.
  static at::Tensor gate(const at::Tensor& x, const Gate& g, int64_t kv_heads, int64_t group, int64_t output_dim);

 private:
  FastKVzipOptions options_;
  GateShape shape_;
  std::vector<Gate> gates_;
  std::vector<at::Tensor> layer_scores_;  // per layer, [1, Hkv, n] after the prefill
  at::Tensor scores_;                     // [L, 1, Hkv, n] of the last selection
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/presses/detail/fastkvzip-inl.h>
#endif
