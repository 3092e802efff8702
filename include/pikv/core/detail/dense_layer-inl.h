#pragma once
// DenseLayer: a KVCache layer stored as [B, Hkv, n, d] (cache_layers.h).

#include <pikv/core/config.h>
#include <pikv/core/detail/cache_layers-inl.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/tensor_checks.h>

#include <ATen/ATen.h>

#include <algorithm>

namespace pikv::detail {

PIKV_INLINE std::unique_ptr<CacheLayer> DenseLayer::deep_copy() const {
  auto c = std::make_unique<DenseLayer>(*this);
  c->tokens = tokens.deep_copy();
  if (kept.defined()) c->kept = kept.clone();
  return c;
}

PIKV_INLINE void DenseLayer::append(int64_t layer, const at::Tensor& keys, const at::Tensor& values) {
  if (logical > 0 && tokens.keys.defined()) check_append_matches(layer, keys, batch, kv_heads, tokens.keys);
  batch = keys.size(0);
  kv_heads = keys.size(1);
  tokens.append(keys, values);
  logical += keys.size(2);
}

PIKV_INLINE std::unique_ptr<CacheLayer> DenseLayer::apply(int64_t layer, const CompressedKV& result) {
  const int64_t n = tokens.size();
  check_result_fits(result, layer, batch, kv_heads, n, tokens.keys);
  const int64_t k = result.keys.size(2);
  if (result.positions_reset) {
    PIKV_CHECK(!result.head_lengths, "KVCache::apply to layer {}: a head-wise result cannot reset positions", layer);
    PIKV_CHECK(logical == n, "KVCache::apply to layer {}: positions can be reset only by a result on the whole cache",
               layer);
  }
  at::Tensor next_kept = kept_after(result);
  if (result.head_lengths) {
    // Head-wise budgets: the layer becomes ragged. This is what frees the memory kvpress keeps (it masks).
    return std::make_unique<RaggedLayer>(*this, std::move(next_kept), result, layer);
  }
  tokens.replace(result.keys, result.values);
  kept = std::move(next_kept);
  if (result.positions_reset) {
    // Re-rotated keys sit at positions 0..k-1 now: the layer continues from the compressed length.
    logical = k;
    kept = at::Tensor();
  }
  logical_at_apply = logical;
  return nullptr;
}

PIKV_INLINE std::unique_ptr<CacheLayer> DenseLayer::truncate(int64_t drop) {
  if (logical_at_apply == 0 && drop == logical) return std::make_unique<DenseLayer>();
  tokens.truncate_to(tokens.size() - drop);
  logical -= drop;
  return nullptr;
}

PIKV_INLINE void DenseLayer::reserve(int64_t extra_tokens) {
  if (!tokens.keys.defined()) return;
  tokens.reserve(batch, kv_heads, extra_tokens, tokens.keys);
}

PIKV_INLINE at::Tensor DenseLayer::head_lengths() const { return at::full({batch, kv_heads}, tokens.size(), at::kLong); }

PIKV_INLINE KVCache::Padded DenseLayer::padded() const { return {tokens.keys, tokens.values, at::Tensor()}; }

PIKV_INLINE int64_t DenseLayer::bytes() const { return distinct_storage_bytes({&tokens.keys, &tokens.values}); }

}  // namespace pikv::detail
