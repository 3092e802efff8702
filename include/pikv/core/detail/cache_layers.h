#pragma once
// The storage layouts of one KVCache layer behind one interface (KVCache keeps one CacheLayer per
// attention layer and forwards its verbs): DenseLayer, RaggedLayer (head-wise compressed, packed) and
// FixedCapacityLayer (preallocated, for exported graphs). Internal: users see KVCache.

#include <pikv/core/attention.h>
#include <pikv/core/kv_cache.h>
#include <pikv/core/selection.h>

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace pikv::detail {

// One layer's stored tokens, whatever the layout. The cache checks arguments that concern several
// layers (truncate's common drop) and the inputs' ranks; a layer checks what concerns itself.
class CacheLayer : public KVSource {
 public:
  // What every layout tracks.
  int64_t batch = 0, kv_heads = 0;
  int64_t logical = 0;           // tokens seen
  int64_t logical_at_apply = 0;  // logical length when apply() last ran (truncate's floor)
  at::Tensor kept;               // KVCache::kept_positions

  // A copy sharing the tensors (a KVCache copy), and one with every tensor cloned (KVCache::clone).
  [[nodiscard]] virtual std::unique_ptr<CacheLayer> copy() const = 0;
  [[nodiscard]] virtual std::unique_ptr<CacheLayer> deep_copy() const = 0;

  // keys/values [B, Hkv, q, d], checked for rank, dtype and device agreement by the cache.
  virtual void append(int64_t layer, const at::Tensor& keys, const at::Tensor& values) = 0;
  // Stores a press result already in the layer's dtype. Returns the layer that replaces this one when
  // the result changes the layout (a head-wise result on a dense layer), else null.
  [[nodiscard]] virtual std::unique_ptr<CacheLayer> apply(int64_t layer, const CompressedKV& result) = 0;
  // Drops the last `drop` tokens (0 < drop <= logical - logical_at_apply unless never compressed; the
  // cache checked it). Returns a replacement layer, or null.
  [[nodiscard]] virtual std::unique_ptr<CacheLayer> truncate(int64_t drop) = 0;
  virtual void reserve(int64_t extra_tokens) = 0;

  virtual int64_t physical_length() const = 0;  // longest head
  virtual bool ragged() const = 0;              // heads store different counts
  virtual at::Tensor head_lengths() const = 0;  // int64 [B, Hkv] on the CPU
  // The stored keys/values [B, Hkv, n, d] of a layer whose heads are aligned, or undefined.
  virtual const at::Tensor& dense_keys() const = 0;
  virtual const at::Tensor& dense_values() const = 0;
  [[nodiscard]] virtual KVCache::Padded padded() const = 0;
  // Logical position of every stored token, laid out like padded(); throws naming `layer` when empty.
  [[nodiscard]] at::Tensor token_positions(int64_t layer) const;
  virtual bool contiguous_prefix() const = 0;
  virtual int64_t bytes() const = 0;
  // A stored tensor (its dtype, device and d), undefined while nothing is stored.
  virtual const at::Tensor& like() const = 0;

  // The view attention reads (KVCache::view); by default the dense form, positions left to positions().
  [[nodiscard]] virtual KVView view() const;
  // KVSource
  [[nodiscard]] KVView dense() const override;
  [[nodiscard]] at::Tensor positions() const override;

 protected:
  // token_positions() of a non-empty layer.
  [[nodiscard]] virtual at::Tensor stored_positions() const;
  // The logical positions of the stored prefix after the last apply, then of the tokens appended since:
  // int64 [B, Hkv, kept width + suffix] on `options`' device.
  at::Tensor positions_from_kept(const at::TensorOptions& options) const;
  // kept positions after a result selected `indices` (int64 [B, Hkv, k], -1 padded) from the layer's
  // current tokens, or undefined for a result that dropped nothing.
  at::Tensor kept_after(const CompressedKV& result) const;
};

// Tokens stored densely ([B, Hkv, s, d]), optionally inside a reserved buffer so that decoding appends
// write in place: a whole dense layer, and the suffix of a ragged one.
struct DenseTokens {
  at::Tensor keys, values;          // [B, Hkv, s, d]; views into buf_* when capacity was reserved
  at::Tensor buf_keys, buf_values;  // [B, Hkv, capacity, d] or undefined

  int64_t size() const { return keys.defined() ? keys.size(2) : 0; }
  void append(const at::Tensor& k, const at::Tensor& v);
  // Room for `extra` more tokens after the current ones; `like` gives B, Hkv, d, dtype and device.
  void reserve(int64_t batch, int64_t kv_heads, int64_t extra, const at::Tensor& like);
  // Keeps the first `keep` tokens: reserved capacity stays, anything else is copied so the dropped
  // tokens' memory is released now.
  void truncate_to(int64_t keep);
  void replace(const at::Tensor& k, const at::Tensor& v);
  DenseTokens deep_copy() const;
};

class DenseLayer final : public CacheLayer {
 public:
  DenseTokens tokens;

  std::unique_ptr<CacheLayer> copy() const override { return std::make_unique<DenseLayer>(*this); }
  std::unique_ptr<CacheLayer> deep_copy() const override;
  void append(int64_t layer, const at::Tensor& keys, const at::Tensor& values) override;
  std::unique_ptr<CacheLayer> apply(int64_t layer, const CompressedKV& result) override;
  std::unique_ptr<CacheLayer> truncate(int64_t drop) override;
  void reserve(int64_t extra_tokens) override;
  int64_t physical_length() const override { return tokens.size(); }
  bool ragged() const override { return false; }
  at::Tensor head_lengths() const override;
  const at::Tensor& dense_keys() const override { return tokens.keys; }
  const at::Tensor& dense_values() const override { return tokens.values; }
  KVCache::Padded padded() const override;
  bool contiguous_prefix() const override { return !kept.defined(); }
  int64_t bytes() const override;
  const at::Tensor& like() const override { return tokens.keys; }
};

class RaggedLayer final : public CacheLayer {
 public:
  // Made from a checked head-wise result on `from` (a dense or ragged layer), with the kept positions
  // that result leaves (CacheLayer::kept_after).
  RaggedLayer(const CacheLayer& from, at::Tensor kept_positions, const CompressedKV& result, int64_t layer);

  std::unique_ptr<CacheLayer> copy() const override;
  std::unique_ptr<CacheLayer> deep_copy() const override;
  void append(int64_t layer, const at::Tensor& keys, const at::Tensor& values) override;
  std::unique_ptr<CacheLayer> apply(int64_t layer, const CompressedKV& result) override;
  std::unique_ptr<CacheLayer> truncate(int64_t drop) override;
  void reserve(int64_t extra_tokens) override;
  int64_t physical_length() const override { return max_length_ + suffix_.size(); }
  bool ragged() const override { return true; }
  at::Tensor head_lengths() const override;
  const at::Tensor& dense_keys() const override { return undefined_; }
  const at::Tensor& dense_values() const override { return undefined_; }
  KVCache::Padded padded() const override;
  bool contiguous_prefix() const override { return false; }
  int64_t bytes() const override;
  const at::Tensor& like() const override { return packed_keys_; }
  KVView view() const override;
  const PackedKV* packed() const override;

 private:
  RaggedLayer() = default;
  void refresh_packed_view() const;

  at::Tensor packed_keys_, packed_values_;  // [sum(lengths), d], rows of (b, h, j) in that order
  std::vector<int64_t> lengths_;            // B * Hkv, row-major
  int64_t max_length_ = 0;
  // On the cache's device, made once per apply(): where each packed row sits in the padded layout
  // (int64 [sum(lengths)], index into B * Hkv * max_length_) and that layout's validity mask (bool
  // [B, Hkv, max_length_]). padded() scatters with them, so a decode step never waits for the host.
  at::Tensor slots_, valid_;
  DenseTokens suffix_;  // appended after the last apply(), shared by all heads
  mutable PackedKV packed_view_;
  at::Tensor undefined_;
};

class FixedCapacityLayer final : public CacheLayer {
 public:
  FixedCapacityLayer(const FixedCacheShape& shape, const at::TensorOptions& options);

  std::unique_ptr<CacheLayer> copy() const override { return std::make_unique<FixedCapacityLayer>(*this); }
  std::unique_ptr<CacheLayer> deep_copy() const override;
  void append(int64_t layer, const at::Tensor& keys, const at::Tensor& values) override;
  std::unique_ptr<CacheLayer> apply(int64_t layer, const CompressedKV& result) override;
  std::unique_ptr<CacheLayer> truncate(int64_t drop) override;
  void reserve(int64_t) override {}  // preallocated
  void reset();                       // empty, as allocated
  int64_t physical_length() const override;
  bool ragged() const override;
  at::Tensor head_lengths() const override;
  const at::Tensor& dense_keys() const override { return keys_; }
  const at::Tensor& dense_values() const override { return values_; }
  KVCache::Padded padded() const override;
  bool contiguous_prefix() const override { return !compressed_; }
  at::Tensor stored_positions() const override;
  int64_t bytes() const override;
  const at::Tensor& like() const override { return buffers.keys; }

  KVCache::FixedBuffers buffers;

 private:
  int64_t uniform_length(int64_t layer, const char* verb) const;
  void truncate_to(int64_t logical_length);
  void refresh_views();

  FixedCacheShape shape_;
  std::vector<int64_t> lengths_;  // stored count of every (b, h), row-major, on the host
  at::Tensor keys_, values_;      // views of the stored prefix when every head holds the same count
  bool compressed_ = false;       // an apply() changed what is stored
};

}  // namespace pikv::detail
