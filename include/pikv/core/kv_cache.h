#pragma once
// KVCache: the per-request key/value store of every attention layer. It is the only object that
// mutates cached tensors, through a closed set of verbs: append (a forward adds tokens), apply (a
// press result replaces a layer's tokens), truncate (drop tokens after a logical length), clear.
//
// Lengths. The logical length of a layer counts every token it has seen (original positions: what
// RoPE of later tokens continues from); the physical length counts the tokens it stores. After a press
// they differ. Head-wise budgets (AdaKV) give each (batch row, KV head) its own physical length; such
// a layer is stored "ragged": the compressed prefix is packed without padding, so its memory is really
// freed, and tokens appended later go to a dense suffix shared by all heads.
//
// Two storage layouts serve the same verbs:
//   dynamic         (KVCache(num_layers)) tensors sized to what is stored: compression frees memory.
//   fixed capacity  (KVCache::fixed_capacity) every layer preallocated as [B, Hkv, C, d] plus a slot
//                   map int64 [B, Hkv, C] holding each slot's logical position (-1 = empty). Kept tokens
//                   are compacted to the front of each head. Shapes never change, which is what
//                   exported graphs (the pikv::cached_attention operator) and CUDA graphs need; the
//                   memory is allocated once, and bytes_in_use() reports what the stored tokens take.

#include <ATen/core/Tensor.h>

#include <pikv/core/press.h>

#include <cstdint>
#include <vector>

namespace pikv {

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

  // A ragged layer of the dynamic layout read in place, without padded()'s copy: the packed prefix
  // (rows of every (b, h) back to back, (b, h) row-major) keys/values [sum(lengths), d], the B * Hkv
  // prefix lengths, and the dense suffix appended since keys/values [B, Hkv, s, d] (undefined when
  // empty). Throws for dense or fixed-capacity layers.
  struct RaggedParts {
    at::Tensor packed_keys, packed_values;
    const std::vector<int64_t>* lengths = nullptr;
    at::Tensor suffix_keys, suffix_values;
  };
  [[nodiscard]] RaggedParts ragged_parts(int64_t layer) const;

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
  struct Layer {
    // Dense storage: everything when not ragged; the suffix appended after a head-wise apply().
    at::Tensor keys, values;  // [B, Hkv, s, d]; views into buf_* when capacity was reserved
    at::Tensor buf_keys, buf_values;  // [B, Hkv, capacity, d] or undefined
    // Ragged prefix: rows of (b, h, j) packed in that order: [sum(lengths), d].
    at::Tensor ragged_keys, ragged_values;
    std::vector<int64_t> ragged_lengths;  // B * Hkv, row-major
    int64_t ragged_max = 0;
    // On the cache's device, made once by apply(): where each packed row sits in the padded layout
    // (int64 [sum(lengths)], index into B * Hkv * ragged_max) and that layout's validity mask (bool
    // [B, Hkv, ragged_max]). padded() scatters with them, so a decode step never waits for the host.
    at::Tensor ragged_slots, ragged_valid;
    int64_t batch = 0, kv_heads = 0;
    int64_t logical = 0;             // tokens seen
    int64_t logical_at_apply = 0;    // logical length when apply() last ran (truncate floor)
    at::Tensor kept;                 // kept_positions
    // Fixed-capacity layout: buffers and the stored count of every (b, h), row-major, on the host.
    FixedBuffers fixed;
    std::vector<int64_t> fixed_lengths;
    bool compressed = false;  // an apply() changed what is stored (fixed layout)
    bool ragged() const { return !ragged_lengths.empty(); }
  };

  // The fixed-capacity verbs and reads.
  void fixed_append(Layer& L, int64_t layer, const at::Tensor& keys, const at::Tensor& values);
  void fixed_apply(Layer& L, int64_t layer, const CompressedKV& result);
  void fixed_truncate(Layer& L, int64_t logical_length);
  int64_t fixed_uniform_length(const Layer& L, int64_t layer, const char* verb) const;

  Layer& at_layer(int64_t layer, const char* verb);
  const Layer& at_layer(int64_t layer, const char* verb) const;

  std::vector<Layer> layers_;
  FixedCacheShape fixed_;  // num_layers == 0: the dynamic layout
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/core/detail/kv_cache-inl.h>
#endif
