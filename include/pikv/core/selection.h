#pragma once
// Token selection shared by every press: top-k per head with reproducible ties, gathers, protected
// positions, and head-wise (ragged) selections. All on the scores' device; budgets are host integers.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>

namespace pikv {

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


// Positions of the k highest scores of every row, ascending. Ties go to the lower position, on every
// device (stable sort), so results are reproducible. scores [B, Hkv, n] -> int64 [B, Hkv, k].
[[nodiscard]] at::Tensor top_k_positions(const at::Tensor& scores, int64_t k);

// Marks the top `k` of every row: scores [B, Hkv, n] -> bool [B, Hkv, n] (ties to the lower position).
[[nodiscard]] at::Tensor top_k_mask(const at::Tensor& scores, int64_t k);

// Gathers rows along the token axis: x [B, Hkv, n, d], positions int64 [B, Hkv, k] -> [B, Hkv, k, d].
[[nodiscard]] at::Tensor gather_tokens(const at::Tensor& x, const at::Tensor& positions);

// Keeps the top-k tokens by score: the shared selection every scorer uses.
// keys/values [B, Hkv, n, d], scores [B, Hkv, n].
[[nodiscard]] CompressedKV keep_top_k(const at::Tensor& keys, const at::Tensor& values, const at::Tensor& scores, int64_t k);

// Keeps the given positions: keys/values [B, Hkv, n, d], positions int64 [B, Hkv, k] ascending.
[[nodiscard]] CompressedKV keep_positions(const at::Tensor& keys, const at::Tensor& values, const at::Tensor& positions);

// Score that wins every top-k without ties: max(scores) + 1 computed in double, cast back to
// scores' dtype; a 0-d tensor on scores' device (no host synchronisation).
[[nodiscard]] at::Tensor protected_score(const at::Tensor& scores);

// `scores` followed by `count` protected positions (a window that always stays, e.g. SnapKV's last
// queries): [B, Hkv, m] -> [B, Hkv, m + count].
[[nodiscard]] at::Tensor append_protected(const at::Tensor& scores, int64_t count);

// Scores with the dtype's largest finite value at `forced` entries (kvpress's scatter of finfo.max):
// scores [B, Hkv, n], forced bool [B, Hkv, n].
[[nodiscard]] at::Tensor force_max(const at::Tensor& scores, const at::Tensor& forced);

// ---- head-wise budgets ----

// Builds a head-wise result from a keep mask: keys/values [B, Hkv, n, d], keep bool [B, Hkv, n] ->
// keys/values [B, Hkv, k_max, d] (each head's kept tokens first, ascending, then zero padding),
// indices [B, Hkv, k_max] (-1 on padding), head_lengths [B, Hkv].
[[nodiscard]] CompressedKV keep_head_wise(const at::Tensor& keys, const at::Tensor& values, const at::Tensor& keep);

// Per batch row, keeps the `total` highest entries of scores [B, Hkv, n] across all heads (ties to
// the lower head, then the lower position): bool [B, Hkv, n].
[[nodiscard]] at::Tensor keep_top_across_heads(const at::Tensor& scores, int64_t total);

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/core/detail/selection-inl.h>
#endif
