#pragma once
// KVCache: the per-request key/value store of every attention layer. It is the only object that
// mutates cached tensors, through a closed set of verbs: append (a forward adds tokens), apply (a
// press result replaces a layer's tokens), truncate (drop tokens after a logical length), clear. Attention
// reads a layer through view().
//
// Lengths. The logical length of a layer counts every token it has seen (original positions: what
// RoPE of later tokens continues from); the physical length counts the tokens it stores. After a press
// they differ. Head-wise budgets (AdaKV) give each (batch row, KV head) its own physical length.
//
// Layouts. Each layer is stored by one class of core/detail/cache_layers.h behind one interface, so a
// verb is written once per layout instead of branching on the layout inside every verb:
//   dense           tensors sized to what is stored ([B, Hkv, n, d]): compression frees memory. The
//                   layer of a dynamic cache (KVCache(num_layers)) until a head-wise press result.
//   ragged          a dynamic layer after a head-wise result: the compressed prefix of every head
//                   packed without padding (the memory is really freed), and the tokens appended later
//                   in a dense suffix shared by all heads.
//   fixed capacity  (KVCache::fixed_capacity) every layer preallocated as [B, Hkv, C, d] plus a slot
//                   map int64 [B, Hkv, C] holding each slot's logical position (-1 = empty). Kept tokens
//                   are compacted to the front of each head. Shapes never change, which is what
//                   exported graphs (the pikv::cached_attention operator) and CUDA graphs need; the
//                   memory is allocated once, and bytes_in_use() reports what the stored tokens take.

#include <ATen/core/Tensor.h>

#include <pikv/core/press.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace pikv {

namespace detail {
class CacheLayer;
}

// The geometry of a fixed-capacity cache: every layer [batch, kv_heads, capacity, head_dim].
struct FixedCacheShape {
  int64_t num_layers = 0;
  int64_t batch = 1;
  int64_t kv_heads = 0;
  int64_t capacity = 0;  // tokens per (batch row, KV head)
  int64_t head_dim = 0;
};

class KVCache {
 public:
  explicit KVCache(int64_t num_layers);
  // A copy shares the stored tensors (as copying a tensor does); clone() copies them.
  KVCache(const KVCache& other);
  KVCache& operator=(const KVCache& other);
  KVCache(KVCache&&) noexcept;
  KVCache& operator=(KVCache&&) noexcept;
  ~KVCache();

  // A fixed-capacity cache (see the layouts above), allocated now with `options` (dtype, device).
  // Throws pikv::Error for non-positive sizes or a capacity above 2^24 tokens.
  [[nodiscard]] static KVCache fixed_capacity(const FixedCacheShape& shape, at::TensorOptions options);
  bool is_fixed_capacity() const { return fixed_.num_layers > 0; }
  const FixedCacheShape& fixed_shape() const { return fixed_; }
  // The buffers of a fixed-capacity layer: keys/values [B, Hkv, C, d], slots int64 [B, Hkv, C] (the
  // logical position held by each slot, -1 = empty). Exported graphs mutate these tensors in place.
  struct FixedBuffers {
    at::Tensor keys, values, slots;
  };
  const FixedBuffers& fixed_buffers(int64_t layer) const;

  int64_t num_layers() const { return static_cast<int64_t>(layers_.size()); }

  // ---- verbs (the single mutation point) ----

  // Appends this forward's tokens. keys/values: [B, Hkv, q, d]. The first append of a layer fixes its
  // B, Hkv, d, dtype and device; later appends must match.
  void append(int64_t layer, const at::Tensor& keys, const at::Tensor& values);

  // Replaces the layer's stored tokens with a press result computed on full_keys(layer). A head-wise
  // result (head_lengths set) makes the layer ragged: this is where the memory is freed. Allowed once
  // per layer until the next clear() for head-wise results.
  void apply(int64_t layer, const CompressedKV& result);

  // Drops, in every layer, the tokens appended after logical length `logical_length` (e.g. a question
  // and its answer, to return to the compressed context): as many tokens as the first non-empty layer
  // holds beyond it, also where a press reset a layer's positions. Throws if that would cut into a
  // compressed part (below a layer's length at its last apply()).
  void truncate(int64_t logical_length);

  // Empties every layer (a new request).
  void clear();

  // Makes room for `extra_tokens` more tokens in every non-empty layer, so the following appends
  // write in place instead of reallocating the layer (decode loops call it once after prefill).
  // The reserved memory counts in bytes(); truncate() keeps it for the next question.
  void reserve(int64_t extra_tokens);

  // A deep copy (every stored tensor cloned, reserved capacity included): a snapshot that later
  // appends or presses on either cache cannot touch.
  [[nodiscard]] KVCache clone() const;

  // Several single-request caches as one batch (rows in the given order), e.g. to answer the same
  // question on several compressed versions of one context at once. Every cache must have the same
  // layers, per-layer stored and logical lengths and compression history length, dense layers only
  // (no head-wise budgets). Throws otherwise. Copies the tensors.
  [[nodiscard]] static KVCache concat_batch(const std::vector<const KVCache*>& caches);

  // ---- reads ----

  bool empty(int64_t layer) const;
  int64_t batch_size(int64_t layer) const;  // B of the stored tokens (0 when empty)
  int64_t logical_length(int64_t layer) const;
  int64_t physical_length(int64_t layer) const;  // longest head
  bool is_ragged(int64_t layer) const;
  // Stored tokens per (batch row, KV head): int64 [B, Hkv] on the CPU.
  at::Tensor head_lengths(int64_t layer) const;

  // Dense layers: keys / values [B, Hkv, n, d] exactly as stored (no copy). Throws for ragged layers:
  // use padded().
  const at::Tensor& keys(int64_t layer) const;
  const at::Tensor& values(int64_t layer) const;

  struct Padded {
    at::Tensor keys;    // [B, Hkv, n_max, d]
    at::Tensor values;  // [B, Hkv, n_max, d]
    at::Tensor valid;   // bool [B, Hkv, n_max]: true where a real token is stored; undefined if all are
  };
  // Every layer as a dense view: dense layers return their tensors (valid undefined); ragged layers
  // are unpacked into a temporary padded copy with a validity mask (attention must mask the rest).
  [[nodiscard]] Padded padded(int64_t layer) const;

  // The layer as attention reads it (attend()): dense layers their stored tensors (no copy), head-wise
  // layers of the dynamic layout their packed heads, read in place by single-token decoding and padded
  // only for calls that need it. Valid until the layer next changes.
  [[nodiscard]] KVView view(int64_t layer) const;

  // Positions (in the logical sequence) of the stored prefix after the last apply(): int64
  // [B, Hkv, k] ascending, -1 padding for ragged layers; undefined if the layer was never compressed.
  const at::Tensor& kept_positions(int64_t layer) const;

  // Logical position of every stored token, laid out like padded(layer): int64 [B, Hkv, n_max]
  // (-1 on padding of ragged layers). Attention masks (causal, sliding window, padding) use it.
  [[nodiscard]] at::Tensor token_positions(int64_t layer) const;
  // True while the layer stores exactly tokens 0..n-1 in order (nothing compressed).
  bool is_contiguous_prefix(int64_t layer) const;

  // Bytes the cache really holds (keys + values) for one layer / all layers: for a fixed-capacity
  // cache the whole preallocated buffers.
  int64_t bytes(int64_t layer) const;
  int64_t bytes() const;
  // Bytes of the stored tokens only (stored entries x d x 2 x element size): what a compressed cache
  // needs, whatever the layout allocates.
  int64_t bytes_in_use(int64_t layer) const;
  int64_t bytes_in_use() const;

 private:
  friend class ForwardScope;  // keeps prefill_open_
  detail::CacheLayer& at_layer(int64_t layer, const char* verb);
  const detail::CacheLayer& at_layer(int64_t layer, const char* verb) const;

  std::vector<std::unique_ptr<detail::CacheLayer>> layers_;
  FixedCacheShape fixed_;  // num_layers == 0: the dynamic layout
  bool prefill_open_ = false;  // a chunked prefill continues in the next forward (ForwardOptions)
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/core/detail/kv_cache-inl.h>
#endif
