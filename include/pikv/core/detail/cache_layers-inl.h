#pragma once
// What every KVCache layer layout shares (cache_layers.h): result checks, the base class's positions and
// views, and the dense token store; each layout's bodies are in <layout>_layer-inl.h.

#include <pikv/core/config.h>
#include <pikv/core/detail/cache_layers.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/tensor_checks.h>

#include <ATen/ATen.h>

#include <algorithm>

namespace pikv::detail {

PIKV_INLINE int64_t storage_bytes(const at::Tensor& t) {
  return t.defined() ? static_cast<int64_t>(t.storage().nbytes()) : 0;
}

// Bytes of several tensors, counting a storage shared between them once.
PIKV_INLINE int64_t distinct_storage_bytes(std::initializer_list<const at::Tensor*> tensors) {
  std::vector<const void*> seen;
  int64_t total = 0;
  for (const at::Tensor* t : tensors) {
    if (!t->defined()) continue;
    const void* id = t->storage().data();
    if (std::find(seen.begin(), seen.end(), id) != seen.end()) continue;
    seen.push_back(id);
    total += storage_bytes(*t);
  }
  return total;
}

// A press result for a layer of B rows, Hkv heads and n stored tokens whose tensors look like `like`
// (a stored keys tensor, any layout: its last dim is d): keys/values [B, Hkv, k <= n, d] of the cache's dtype and device, and indices int64
// [B, Hkv, k] unless nothing was dropped.
PIKV_INLINE void check_result_fits(const CompressedKV& result, int64_t layer, int64_t B, int64_t Hkv, int64_t n,
                                   const at::Tensor& like) {
  const int64_t d = like.size(-1);
  check_rank(result.keys, 4, "compressed keys", "[B, Hkv, k, d]");
  check_rank(result.values, 4, "compressed values", "[B, Hkv, k, d]");
  PIKV_CHECK(result.keys.size(0) == B && result.keys.size(1) == Hkv && result.keys.size(3) == d &&
                 result.keys.size(2) <= n && result.values.sizes() == result.keys.sizes(),
             "KVCache::apply to layer {}: compressed keys {} / values {} do not fit the cache [B={}, Hkv={}, n={}, d={}]",
             layer, describe_tensor(result.keys), describe_tensor(result.values), B, Hkv, n, d);
  PIKV_CHECK(result.keys.scalar_type() == like.scalar_type() && result.keys.device() == like.device(),
             "KVCache::apply to layer {}: compressed keys {} must keep the cache's dtype and device ({} on {})", layer,
             describe_tensor(result.keys), dtype_name(like.scalar_type()), like.device().str());
  const int64_t k = result.keys.size(2);
  if (result.indices.defined()) {
    PIKV_CHECK(result.indices.dim() == 3 && result.indices.size(0) == B && result.indices.size(1) == Hkv &&
                   result.indices.size(2) == k && result.indices.scalar_type() == at::kLong,
               "KVCache::apply to layer {}: indices must be int64 [B, Hkv, k] = [{}, {}, {}], got {}", layer, B, Hkv,
               k, describe_tensor(result.indices));
  } else {
    PIKV_CHECK(k == n, "KVCache::apply to layer {}: a result that drops tokens ({} -> {}) must report their indices",
               layer, n, k);
  }
}

// A head-wise result's per-head lengths on the host, checked against [B, Hkv] and [0, k].
PIKV_INLINE std::vector<int64_t> checked_head_lengths(const CompressedKV& result, int64_t layer, int64_t B, int64_t Hkv) {
  const at::Tensor lengths = result.head_lengths->to(at::kCPU, at::kLong).contiguous();
  PIKV_CHECK(lengths.dim() == 2 && lengths.size(0) == B && lengths.size(1) == Hkv,
             "KVCache::apply to layer {}: head_lengths must be int64 [B, Hkv] = [{}, {}], got {}", layer, B, Hkv,
             describe_tensor(lengths));
  const int64_t k = result.keys.size(2);
  const int64_t* len = lengths.data_ptr<int64_t>();
  std::vector<int64_t> out(len, len + lengths.numel());
  for (size_t i = 0; i < out.size(); ++i) {
    PIKV_CHECK(out[i] >= 0 && out[i] <= k, "KVCache::apply to layer {}: head {} keeps {} tokens, outside [0, {}]",
               layer, i, out[i], k);
  }
  return out;
}

// ---- what every layout shares ----------------------------------------------------------------------

PIKV_INLINE at::Tensor CacheLayer::token_positions(int64_t layer) const {
  PIKV_CHECK(like().defined() && (logical > 0 || ragged()), "KVCache::token_positions: layer {} is empty", layer);
  return stored_positions();
}

PIKV_INLINE at::Tensor CacheLayer::stored_positions() const {
  return positions_from_kept(like().options().dtype(at::kLong));
}

PIKV_INLINE at::Tensor CacheLayer::positions_from_kept(const at::TensorOptions& options) const {
  if (!kept.defined()) return at::arange(logical, options).expand({batch, kv_heads, logical});
  at::Tensor tail = at::arange(logical_at_apply, logical, options).expand({batch, kv_heads, -1});
  return at::cat({kept.to(options.device()), tail}, 2);
}

PIKV_INLINE at::Tensor CacheLayer::kept_after(const CompressedKV& result) const {
  if (!result.indices.defined()) return at::Tensor();
  const at::Tensor positions = positions_from_kept(result.indices.options());
  const at::Tensor mapped = positions.gather(2, result.indices.clamp_min(0));
  return at::where(result.indices < 0, at::full({}, -1, result.indices.options()), mapped);
}

PIKV_INLINE KVView CacheLayer::view() const {
  KVView v = dense();
  v.source = this;
  return v;
}

PIKV_INLINE KVView CacheLayer::dense() const {
  const KVCache::Padded p = padded();
  KVView v{p.keys, p.values, at::Tensor()};
  if (p.valid.defined()) v.positions = stored_positions().to(p.keys.device());  // padding slots must be masked
  return v;
}

PIKV_INLINE at::Tensor CacheLayer::positions() const {
  if (contiguous_prefix()) return at::Tensor();
  return stored_positions();
}

// ---- dense tokens ------------------------------------------------------------------------------------

PIKV_INLINE void DenseTokens::append(const at::Tensor& k, const at::Tensor& v) {
  const int64_t dense = size(), T = k.size(2);
  if (buf_keys.defined() && dense + T <= buf_keys.size(2)) {
    // Reserved capacity: write in place (keys is a view of the buffer's first `dense` tokens).
    buf_keys.narrow(2, dense, T).copy_(k);
    buf_values.narrow(2, dense, T).copy_(v);
    keys = buf_keys.narrow(2, 0, dense + T);
    values = buf_values.narrow(2, 0, dense + T);
  } else if (dense > 0) {
    keys = at::cat({keys, k}, 2);
    values = at::cat({values, v}, 2);
    buf_keys = at::Tensor();
    buf_values = at::Tensor();
  } else {
    keys = k;
    values = v;
  }
}

PIKV_INLINE void DenseTokens::reserve(int64_t batch, int64_t kv_heads, int64_t extra, const at::Tensor& like) {
  const int64_t dense = size(), need = dense + extra;
  if (buf_keys.defined() && buf_keys.size(2) >= need) return;
  const int64_t d = like.size(-1);
  at::Tensor bk = at::empty({batch, kv_heads, need, d}, like.options());
  at::Tensor bv = at::empty({batch, kv_heads, need, d}, like.options());
  if (dense > 0) {
    bk.narrow(2, 0, dense).copy_(keys);
    bv.narrow(2, 0, dense).copy_(values);
  }
  buf_keys = bk;
  buf_values = bv;
  keys = bk.narrow(2, 0, dense);
  values = bv.narrow(2, 0, dense);
}

PIKV_INLINE void DenseTokens::truncate_to(int64_t keep) {
  if (buf_keys.defined()) {
    // Reserved capacity stays allocated for the next question; only the view shrinks.
    keys = buf_keys.narrow(2, 0, keep);
    values = buf_values.narrow(2, 0, keep);
  } else if (keep == 0) {
    keys = at::Tensor();
    values = at::Tensor();
  } else {
    // A copy, not a view: the dropped tokens' memory is released now and bytes() stays truthful.
    keys = keys.narrow(2, 0, keep).clone();
    values = values.narrow(2, 0, keep).clone();
  }
}

PIKV_INLINE void DenseTokens::replace(const at::Tensor& k, const at::Tensor& v) {
  keys = k;
  values = v;
  buf_keys = at::Tensor();
  buf_values = at::Tensor();
}

PIKV_INLINE DenseTokens DenseTokens::deep_copy() const {
  DenseTokens c;
  if (buf_keys.defined()) {
    c.buf_keys = buf_keys.clone();
    c.buf_values = buf_values.clone();
    c.keys = keys.defined() ? c.buf_keys.narrow(2, 0, keys.size(2)) : at::Tensor();
    c.values = values.defined() ? c.buf_values.narrow(2, 0, values.size(2)) : at::Tensor();
  } else {
    c.keys = keys.defined() ? keys.clone() : keys;
    c.values = values.defined() ? values.clone() : values;
  }
  return c;
}

// The new tokens of an append match what a layer stores (checked where the layer is not empty).
PIKV_INLINE void check_append_matches(int64_t layer, const at::Tensor& keys, int64_t B, int64_t Hkv,
                                      const at::Tensor& ref) {
  PIKV_CHECK(keys.size(0) == B && keys.size(1) == Hkv && keys.size(3) == ref.size(-1) &&
                 keys.scalar_type() == ref.scalar_type() && keys.device() == ref.device(),
             "KVCache::append to layer {}: new keys {} do not match the cached [B={}, Hkv={}, d={}] {} on {}", layer,
             describe_tensor(keys), B, Hkv, ref.size(-1), dtype_name(ref.scalar_type()), ref.device().str());
}

}  // namespace pikv::detail
