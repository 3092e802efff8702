#pragma once
// What a press sees of one attention layer during one forward: AttentionLayerView (the layer's
// static structure and the projections query-based presses recompute) and AttentionContext (this
// forward's tensors). Models implement the view; custom runners can fill a context themselves and
// call Press::compress directly.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <vector>

namespace pikv {

class AttentionLayerView {
 public:
  virtual ~AttentionLayerView() = default;

  virtual int64_t layer_index() const = 0;
  virtual int64_t num_heads() const = 0;     // H, query heads
  virtual int64_t num_kv_heads() const = 0;  // Hkv; H % Hkv == 0
  virtual int64_t head_dim() const = 0;      // d

  // Pre-RoPE queries (q projection incl. bias and q-norm where the family has them).
  // hidden_states: [B, q, Dm] -> [B, H, q, d]
  virtual at::Tensor query_states(const at::Tensor& hidden_states) const = 0;

  // Pre-RoPE keys (k projection incl. bias and k-norm where the family has them), or an undefined
  // tensor when the layer cannot recompute them (prerope_keys then rotates the cached keys back).
  // hidden_states: [B, q, Dm] -> [B, Hkv, q, d]
  virtual at::Tensor key_states(const at::Tensor& hidden_states) const { return at::Tensor(); }

  // Applies this layer's rotary embedding at the given absolute positions.
  // x: [B, h, q, d] (any head count); positions: int64 [q] (shared by the batch) or [B, q] -> [B, h, q, d].
  // Layers without RoPE (GPT-2) return x unchanged.
  virtual at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& positions) const = 0;
  // The inverse: x rotated by apply_rope at `positions` -> x before it (pre-RoPE keys from the cache).
  // The default rotates by minus the positions, exact for layers whose RoPE has no attention scaling.
  virtual at::Tensor unapply_rope(const at::Tensor& x, const at::Tensor& positions) const {
    return apply_rope(x, -positions);
  }

  // Raw rotary inverse frequencies, float32 [d_rot / 2] (scaled variants already applied); an
  // undefined tensor when the layer has no RoPE.
  virtual at::Tensor inv_freq() const = 0;

  // Output projection weight as a Linear weight, [Dm, H * d] (CriticalKV projects values through it).
  virtual at::Tensor output_weight() const = 0;
};

// One layer's state after its attention consumed the current forward.
struct AttentionContext {
  int64_t layer = 0;       // layer index in [0, num_layers)
  int64_t num_layers = 0;  // L, for per-layer budgets (PyramidKV, PerLayer)

  at::Tensor hidden_states;  // [B, q, Dm], the attention block's input (after the input norm)
  at::Tensor keys;           // [B, Hkv, n, d], post-RoPE (and post q/k-norm), the whole cache
  at::Tensor values;         // [B, Hkv, n, d]
  std::optional<at::Tensor> attention_weights;  // [B, H, q, n], only when the model materialised them
  // Pre-RoPE queries of this forward [B, H, q, d], when the runner has them at hand: query-based presses
  // then skip recomputing the projection. Undefined otherwise (layer_view->query_states recomputes).
  at::Tensor query_states;

  // The forward is the prefill: the layer had no past tokens before it, or it is the last chunk of a
  // prefill given in pieces (ForwardOptions::prefill_continues), whose keys are the whole context.
  bool is_prefill = true;
  int64_t position_offset = 0;  // logical position of the first token of this forward
  // Logical position of every entry of keys/values, int64 [B, Hkv, n]; -1 marks the padding slots of a
  // head-wise (ragged) layer, whose keys arrive padded to its longest head. Undefined when the entries
  // are positions 0..n-1 in order (an uncompressed layer). Set for decoding presses; a press that
  // compresses a ragged layer must keep no padding slot.
  at::Tensor key_positions;

  const AttentionLayerView* layer_view = nullptr;  // null when the runner exposes no view

  // Tokens in this forward (q): from hidden_states, else from query_states, else the cache length.
  int64_t forward_length() const {
    return hidden_states.defined() ? hidden_states.size(1) : query_states.defined() ? query_states.size(2) : keys.size(2);
  }
  // The forward's queries are available: pre-RoPE query_states, or hidden states with a layer view.
  bool has_queries() const { return query_states.defined() || (hidden_states.defined() && layer_view != nullptr); }

  int64_t batch() const { return keys.size(0); }
  int64_t kv_heads() const { return keys.size(1); }
  int64_t length() const { return keys.size(2); }  // n
  int64_t head_dim() const { return keys.size(3); }

  // Checks the contract above: shapes, matching B/Hkv/n/d, floating dtypes, one device, n >= 1.
  // Throws pikv::Error naming the tensor and the bad value.
  void validate() const;
};

// ---- the attention function ------------------------------------------------------------------------

// How a layer attends: architecture differences are these values, not branches in a model's forward.
struct AttentionParams {
  // Logits are multiplied by `scale`; 0 divides them by sqrt(d) instead (kvpress's window attention).
  double scale = 0.0;
  // A query at logical index p sees keys at p - w < index <= p (Mistral, Gemma 3 local layers).
  std::optional<int64_t> sliding_window;
  // Logits -> softcap * tanh(logits / softcap) (Gemma 2 style; forces the eager path).
  std::optional<double> softcap;
  // Materialise the attention weights [B, H, q, n] (eager path).
  bool need_weights = false;
  // Only the weights are wanted (presses that score by attention): the output is not computed.
  bool weights_only = false;
};

class KVSource;

// One layer's cache as attention reads it.
struct KVView {
  at::Tensor keys;    // [B, Hkv, n, d]
  at::Tensor values;  // [B, Hkv, n, d]
  // int64 [B, Hkv, n]: the logical index of the token in every slot, -1 = empty slot (padding of a
  // head-wise layer, free slots of a fixed-capacity cache). Undefined: slot i holds index i (a cache
  // that was never compressed), or, with a source, not computed yet.
  at::Tensor positions;
  // The cache layer this view reads (KVCache::view), or null for tensors a caller assembled. attend()
  // asks it for what the view leaves undefined, and only when the call needs it: the positions of a
  // compressed layer (masks), the padded copy of a head-wise layer (whose keys/values are then left
  // undefined, so that single-token decoding can read the packed heads in place). Valid until the
  // cache's layer next changes.
  const KVSource* source = nullptr;
};

// A head-wise compressed layer stored without padding: the kept entries of every (batch row, KV head)
// back to back, then the tokens appended since, dense.
struct PackedKV {
  at::Tensor keys;                                // [sum(lengths), d], (b, h, j) row-major
  at::Tensor values;                              // [sum(lengths), d]
  const std::vector<int64_t>* lengths = nullptr;  // B * Hkv entries per (b, h), row-major
  at::Tensor suffix_keys;                         // [B, Hkv, s, d]; undefined when s == 0
  at::Tensor suffix_values;                       // [B, Hkv, s, d]
};

// What a cache layer supplies to attention beyond a view's tensors (KVCache's layouts implement it).
class KVSource {
 public:
  virtual ~KVSource() = default;
  // Keys/values [B, Hkv, n, d] (a padded copy for a head-wise layer) with positions int64 [B, Hkv, n]
  // defined whenever some slot is padding.
  [[nodiscard]] virtual KVView dense() const = 0;
  // int64 [B, Hkv, n] laid out like dense(), or undefined when slot i holds token i.
  [[nodiscard]] virtual at::Tensor positions() const = 0;
  // The packed form, for layers stored that way (else null).
  virtual const PackedKV* packed() const { return nullptr; }
};

struct AttentionResult {
  at::Tensor output;   // [B, H, q, d]; undefined with weights_only
  at::Tensor weights;  // [B, H, q, n] float in the queries' dtype; defined only when asked for
};

// Attention of queries over one layer's cache: causal by logical index, GQA (H / Hkv query heads per
// KV head), optional sliding window, soft-capping and key padding. The one attention implementation
// of the library: the decoder, the synthetic model, the custom operator and the presses that
// recompute attention all call it.
//   queries     [B, H, q, d], post-RoPE
//   query_index int64 [q] (shared by the batch) or [B, q]: logical index of every query
//   key_padding bool [B, N] or undefined: false marks a padding token by logical index (left padding)
// Picks the fastest exact path: no mask when the cache is contiguous and the queries are its last
// tokens (prefill or one decode token), a grouped matrix product for single-token decoding, fused SDPA
// otherwise, and the eager path (explicit softmax in float32) when weights or soft-capping are needed.
// A query that may see no key (a padding query) sees every key instead of producing NaN.
// Keys/values may be stored narrower than the queries (float16 or bfloat16 under float32 queries): one
// decoding query on the CPU then reads them as stored, scores and softmax in float32 (a head-wise layer's
// packed heads in place, without its padded copy); other calls attend over a float32 copy.
// A view with a source (KVCache::view) is completed from it as the call needs (see KVView).
[[nodiscard]] AttentionResult attend(const at::Tensor& queries, const at::Tensor& query_index, const KVView& kv,
                       const AttentionParams& params = {}, const at::Tensor& key_padding = at::Tensor());

// Pre-RoPE queries of the forward's tokens [start, start + len): ctx.query_states sliced when present,
// else recomputed through ctx.layer_view from ctx.hidden_states. -> [B, H, len, d]. Runners without
// hidden states (the cached_attention operator) pass query_states.
[[nodiscard]] at::Tensor prerope_queries(const AttentionContext& ctx, int64_t start, int64_t len);

// The same queries with the layer's RoPE applied at their positions (position_offset + start + i).
// -> [B, H, len, d]
[[nodiscard]] at::Tensor rotated_queries(const AttentionContext& ctx, int64_t start, int64_t len);

// Pre-RoPE keys of the cached tokens [start, start + len) of a prefill (cache index = position
// position_offset + index): re-projected from ctx.hidden_states when the layer can (as kvpress does),
// else the cache's post-RoPE keys rotated back (AttentionLayerView::unapply_rope; graphs), which equals
// the projection up to float rounding (~1e-7 relative). -> [B, Hkv, len, d]
[[nodiscard]] at::Tensor prerope_keys(const AttentionContext& ctx, int64_t start, int64_t len);

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/core/detail/attention-inl.h>
#endif
