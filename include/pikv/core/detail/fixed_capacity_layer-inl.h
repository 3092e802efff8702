#pragma once
// FixedCapacityLayer: a KVCache layer preallocated at a fixed capacity with a slot map (cache_layers.h).

#include <pikv/core/config.h>
#include <pikv/core/detail/cache_layers-inl.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/detail/fixed_slots.h>
#include <pikv/core/tensor_checks.h>

#include <ATen/ATen.h>

#include <algorithm>

namespace pikv::detail {

PIKV_INLINE FixedCapacityLayer::FixedCapacityLayer(const FixedCacheShape& s, const at::TensorOptions& options)
    : shape_(s) {
  buffers.keys = at::zeros({s.batch, s.kv_heads, s.capacity, s.head_dim}, options);
  buffers.values = at::zeros({s.batch, s.kv_heads, s.capacity, s.head_dim}, options);
  buffers.slots = at::full({s.batch, s.kv_heads, s.capacity}, -1, options.dtype(at::kLong));
  lengths_.assign(static_cast<size_t>(s.batch * s.kv_heads), 0);
  batch = s.batch;
  kv_heads = s.kv_heads;
}

PIKV_INLINE std::unique_ptr<CacheLayer> FixedCapacityLayer::deep_copy() const {
  auto c = std::make_unique<FixedCapacityLayer>(*this);
  c->buffers = {buffers.keys.clone(), buffers.values.clone(), buffers.slots.clone()};
  if (kept.defined()) c->kept = kept.clone();
  c->refresh_views();
  return c;
}

PIKV_INLINE void FixedCapacityLayer::refresh_views() {
  const auto [lo, hi] = std::minmax_element(lengths_.begin(), lengths_.end());
  if (*lo == *hi && *hi > 0) {
    keys_ = buffers.keys.narrow(2, 0, *hi);
    values_ = buffers.values.narrow(2, 0, *hi);
  } else {
    keys_ = at::Tensor();
    values_ = at::Tensor();
  }
}

PIKV_INLINE int64_t FixedCapacityLayer::uniform_length(int64_t layer, const char* verb) const {
  const auto [lo, hi] = std::minmax_element(lengths_.begin(), lengths_.end());
  PIKV_CHECK(*lo == *hi,
             "KVCache::{}: layer {} holds head-wise budgets (heads keep {} to {} tokens); it can be compressed again "
             "only after clear()",
             verb, layer, *lo, *hi);
  return *hi;
}

PIKV_INLINE void FixedCapacityLayer::append(int64_t layer, const at::Tensor& keys, const at::Tensor& values) {
  const FixedCacheShape& s = shape_;
  PIKV_CHECK(keys.size(0) == s.batch && keys.size(1) == s.kv_heads && keys.size(3) == s.head_dim &&
                 keys.scalar_type() == buffers.keys.scalar_type() && keys.device() == buffers.keys.device(),
             "KVCache::append to layer {}: new keys {} do not match the fixed-capacity cache [B={}, Hkv={}, d={}] {} on {}",
             layer, describe_tensor(keys), s.batch, s.kv_heads, s.head_dim, dtype_name(buffers.keys.scalar_type()),
             buffers.keys.device().str());
  const int64_t T = keys.size(2);
  const auto [lo, hi] = std::minmax_element(lengths_.begin(), lengths_.end());
  PIKV_CHECK(*hi + T <= s.capacity,
             "KVCache::append to layer {}: {} new tokens after the {} a head holds exceed the fixed capacity of {} "
             "tokens (make the cache, or export the model, with a larger capacity)",
             layer, T, *hi, s.capacity);
  auto lopts = buffers.slots.options();
  at::Tensor positions = at::arange(logical, logical + T, lopts).expand({s.batch, s.kv_heads, T});
  at::Tensor counts = *lo == *hi ? at::Tensor()
                                 : at::tensor(lengths_, at::kLong).view({s.batch, s.kv_heads}).to(lopts.device());
  write_fixed_tokens(buffers.keys, buffers.values, buffers.slots, counts, *lo, *hi, keys, values, positions);
  for (int64_t& n : lengths_) n += T;
  logical += T;
  refresh_views();
}

PIKV_INLINE std::unique_ptr<CacheLayer> FixedCapacityLayer::apply(int64_t layer, const CompressedKV& result) {
  PIKV_CHECK(!ragged(),
             "KVCache::apply: layer {} of a fixed-capacity cache already holds head-wise budgets; it can be "
             "compressed again only after clear()", layer);
  const FixedCacheShape& s = shape_;
  const int64_t n = uniform_length(layer, "apply");
  check_result_fits(result, layer, s.batch, s.kv_heads, n, buffers.keys);
  const int64_t k = result.keys.size(2);
  std::vector<int64_t> lengths(lengths_.size(), k);
  if (result.head_lengths) lengths = checked_head_lengths(result, layer, s.batch, s.kv_heads);
  if (result.positions_reset) {
    PIKV_CHECK(!result.head_lengths && logical == n,
               "KVCache::apply to layer {}: positions can be reset only by a uniform result on the whole cache", layer);
  }
  at::Tensor next_kept;
  if (result.indices.defined()) {
    at::Tensor before = buffers.slots.narrow(2, 0, n);
    at::Tensor idx = result.indices.to(before.device());
    next_kept = at::where(idx < 0, at::full({}, -1, before.options()), before.gather(2, idx.clamp_min(0)));
  } else {
    next_kept = buffers.slots.narrow(2, 0, n).clone();
  }
  // The result is gathered from the stored prefix: a new tensor, so writing it back in place is safe.
  buffers.keys.narrow(2, 0, k).copy_(result.keys);
  buffers.values.narrow(2, 0, k).copy_(result.values);
  buffers.slots.narrow(2, 0, k).copy_(next_kept);
  if (k < s.capacity) buffers.slots.narrow(2, k, s.capacity - k).fill_(-1);
  lengths_ = std::move(lengths);
  if (result.positions_reset) {
    buffers.slots.narrow(2, 0, k).copy_(at::arange(k, buffers.slots.options()).expand({s.batch, s.kv_heads, k}));
    logical = k;
    kept = at::Tensor();
  } else {
    kept = next_kept;
  }
  compressed_ = true;
  logical_at_apply = logical;
  refresh_views();
  return nullptr;
}

PIKV_INLINE void FixedCapacityLayer::truncate_to(int64_t logical_length) {
  if (logical_at_apply == 0 && logical_length == 0) {
    buffers.slots.fill_(-1);
    std::fill(lengths_.begin(), lengths_.end(), 0);
    logical = 0;
    compressed_ = false;
    kept = at::Tensor();
    keys_ = at::Tensor();
    values_ = at::Tensor();
    return;
  }
  // Tokens after the cut are the suffix of every head (appended after any compression).
  buffers.slots.masked_fill_(buffers.slots >= logical_length, -1);
  at::Tensor counts = (buffers.slots >= 0).sum(-1).to(at::kCPU, at::kLong).contiguous();
  const int64_t* c = counts.data_ptr<int64_t>();
  lengths_.assign(c, c + counts.numel());
  logical = logical_length;
  refresh_views();
}

PIKV_INLINE std::unique_ptr<CacheLayer> FixedCapacityLayer::truncate(int64_t drop) {
  truncate_to(logical - drop);
  return nullptr;
}

PIKV_INLINE void FixedCapacityLayer::reset() {
  logical_at_apply = 0;
  truncate_to(0);
}

PIKV_INLINE int64_t FixedCapacityLayer::physical_length() const {
  return *std::max_element(lengths_.begin(), lengths_.end());
}

PIKV_INLINE bool FixedCapacityLayer::ragged() const {
  const auto [lo, hi] = std::minmax_element(lengths_.begin(), lengths_.end());
  return *lo != *hi;
}

PIKV_INLINE at::Tensor FixedCapacityLayer::head_lengths() const {
  return at::tensor(lengths_, at::kLong).view({batch, kv_heads});
}

PIKV_INLINE KVCache::Padded FixedCapacityLayer::padded() const {
  const int64_t m = physical_length();
  if (!ragged()) return {buffers.keys.narrow(2, 0, m), buffers.values.narrow(2, 0, m), at::Tensor()};
  return {buffers.keys.narrow(2, 0, m), buffers.values.narrow(2, 0, m), buffers.slots.narrow(2, 0, m) >= 0};
}

PIKV_INLINE at::Tensor FixedCapacityLayer::stored_positions() const {
  return buffers.slots.narrow(2, 0, physical_length());
}

PIKV_INLINE int64_t FixedCapacityLayer::bytes() const {
  return distinct_storage_bytes({&buffers.keys, &buffers.values});
}

}  // namespace pikv::detail
