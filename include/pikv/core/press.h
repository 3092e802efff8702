#pragma once
// Press: compresses one attention layer's KV cache right after prefill. ScorerPress: the common case
// of a per-token score followed by top-k per KV head.

#include <ATen/core/Tensor.h>

#include <pikv/core/attention.h>

#include <cstdint>
#include <optional>
#include <string>

namespace pikv {

class HookableModel;
class ScorerPress;

// What a press needs beyond keys/values; checked before compress() so a press never silently
// falls back (e.g. ObservedAttention without attention weights).
struct PressRequirements {
  bool hidden_states = false;      // ctx.hidden_states defined
  bool layer_view = false;         // ctx.layer_view != nullptr
  bool attention_weights = false;  // ctx.attention_weights present (the model must run eager attention)
};

// The kept KV of one layer, as returned by a press. The cache applies it (KVCache::apply).
struct CompressedKV {
  // Uniform budget: [B, Hkv, k, d]. Head-wise budget: [B, Hkv, k_max, d] where entries at or beyond
  // a head's length are padding (KVCache stores only the real entries).
  at::Tensor keys;
  at::Tensor values;
  // int64 [B, Hkv, k] (k_max for head-wise): positions kept, ascending, indexing the input cache;
  // padding entries are -1. Undefined when `unchanged`.
  at::Tensor indices;
  // Head-wise budgets only: int64 [B, Hkv], tokens kept per head (<= k_max).
  std::optional<at::Tensor> head_lengths;
  // True when the press kept everything (ratio 0): keys/values are the input tensors, not copies.
  bool unchanged = false;
  // True when the press chose not to act on this forward (a decoding press between its compression
  // steps): nothing is applied and nothing is recorded.
  bool skipped = false;
  // True when the kept keys were re-rotated to positions 0..k-1 (KeyRerotation): the layer's logical
  // length becomes k, so later tokens continue from the compressed length.
  bool positions_reset = false;

  int64_t kept() const { return keys.size(2); }  // k (k_max for head-wise)
};

class Press {
 public:
  virtual ~Press() = default;

  // snake_case name as kvpress's class without "Press": "knorm", "streaming_llm", ...
  virtual std::string name() const = 0;
  // "knorm(compression_ratio=0.5)": name and options, for logs and stats.
  virtual std::string describe() const;

  // Configured fraction of tokens removed (Composed: 1 - prod(1 - r_i); PerLayer: the mean).
  virtual double compression_ratio() const = 0;

  virtual PressRequirements requirements() const { return {}; }
  // True when the press gives heads different budgets (AdaKV and friends).
  virtual bool head_wise() const { return false; }
  // True when the press compresses during decoding (Decoding, CompressionRatioDecoding): runners must
  // then not truncate back into the cache (the pipeline snapshots it per question instead).
  virtual bool acts_during_decoding() const { return false; }
  // The scorer whose per-token scores this press ranks by (itself for scorers, the inner press for
  // AdaKV and friends), or nullptr. `pikv score` records its scores.
  virtual const ScorerPress* scorer() const { return nullptr; }
  // The scorer acting on this forward (PrefillDecoding: the prefill press's or the decoding press's).
  virtual const ScorerPress* scorer_for(const AttentionContext& ctx) const { return scorer(); }

  // Whether this press acts on this forward. Default: prefill only (decoding presses override).
  virtual bool should_compress(const AttentionContext& ctx) const { return ctx.is_prefill; }

  // Compresses one layer: ctx.keys/values [B, Hkv, n, d] -> kept KV. Must not modify ctx's tensors.
  virtual CompressedKV compress(const AttentionContext& ctx) = 0;

  // Lifecycle, called by HookableModel / PressGuard. on_attach may reject a model (e.g. a PerLayer
  // ratio list of the wrong length) by throwing pikv::Error.
  virtual void on_attach(const HookableModel& model) {}
  virtual void on_detach() {}
  virtual void on_prefill_begin() {}
  virtual void on_prefill_end() {}
  virtual void on_decode_step() {}
  // Drops state carried between calls (decoding buffers, router statistics).
  virtual void reset() {}

  // Throws pikv::Error naming this press and the missing input when ctx lacks what requirements()
  // asks for, and validates ctx's shapes.
  void check_context(const AttentionContext& ctx) const;
};

class ScorerPress : public Press {
 public:
  double compression_ratio() const override { return compression_ratio_; }
  const ScorerPress* scorer() const override { return this; }
  // Wrappers that set the ratio of the press they wrap (kvpress's compression_ratio setter).
  void set_compression_ratio(double ratio);

  // Importance of every cached token, higher = keep: ctx.keys [B, Hkv, n, d] -> [B, Hkv, n].
  // `ratio` is the ratio this call compresses at (StreamingLLM's scores depend on it; PerLayer passes
  // each layer's own ratio).
  virtual at::Tensor score(const AttentionContext& ctx, double ratio) const = 0;

  // Keeps the top n_kept(n, compression_ratio()) tokens of every KV head.
  CompressedKV compress(const AttentionContext& ctx) override { return compress_at(ctx, compression_ratio_); }

  // Same at an explicit ratio in [0, 1]; ratio 0 returns the inputs unchanged (no copy).
  CompressedKV compress_at(const AttentionContext& ctx, double ratio) const;

 protected:
  // `what` names the options field for the error message ("KnormOptions.compression_ratio").
  ScorerPress(double compression_ratio, const char* what);

 private:
  double compression_ratio_;
};

// Positions of the k highest scores of every row, ascending. Ties go to the lower position, on every
// device (stable sort), so results are reproducible. scores [B, Hkv, n] -> int64 [B, Hkv, k].
at::Tensor top_k_positions(const at::Tensor& scores, int64_t k);

// Gathers rows along the token axis: x [B, Hkv, n, d], positions int64 [B, Hkv, k] -> [B, Hkv, k, d].
at::Tensor gather_tokens(const at::Tensor& x, const at::Tensor& positions);

// Keeps the top-k tokens by score: the shared selection every scorer uses.
// keys/values [B, Hkv, n, d], scores [B, Hkv, n].
CompressedKV keep_top_k(const at::Tensor& keys, const at::Tensor& values, const at::Tensor& scores,
                        int64_t k);

// Score that wins every top-k without ties: max(scores) + 1 computed in double, cast back to
// scores' dtype; a 0-d tensor on scores' device (no host synchronisation).
at::Tensor protected_score(const at::Tensor& scores);

// `scores` followed by `count` protected positions (a window that always stays, e.g. SnapKV's last
// queries): [B, Hkv, m] -> [B, Hkv, m + count].
at::Tensor append_protected(const at::Tensor& scores, int64_t count);

}  // namespace pikv
