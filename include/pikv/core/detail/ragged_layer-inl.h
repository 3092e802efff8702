#pragma once
// RaggedLayer: a head-wise compressed KVCache layer, packed without padding, then a dense suffix
// (cache_layers.h).

#include <pikv/core/config.h>
#include <pikv/core/detail/cache_layers-inl.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/tensor_checks.h>

#include <ATen/ATen.h>

#include <algorithm>

namespace pikv::detail {

PIKV_INLINE RaggedLayer::RaggedLayer(const CacheLayer& from, at::Tensor kept_positions, const CompressedKV& result,
                                     int64_t layer) {
  batch = from.batch;
  kv_heads = from.kv_heads;
  logical = from.logical;
  kept = std::move(kept_positions);
  // Pack the real entries of every (b, h) back to back. Reading the lengths is one host sync per layer.
  lengths_ = checked_head_lengths(result, layer, batch, kv_heads);
  const int64_t k = result.keys.size(2);
  at::Tensor valid = at::arange(k, result.keys.options().dtype(at::kLong)) <
                     result.head_lengths->to(result.keys.device(), at::kLong).unsqueeze(-1);
  packed_keys_ = result.keys.index({valid});  // [sum(lengths), d], (b, h, j) order
  packed_values_ = result.values.index({valid});
  max_length_ = *std::max_element(lengths_.begin(), lengths_.end());
  valid_ = valid.narrow(2, 0, max_length_).contiguous();
  if (kept.defined()) kept = kept.narrow(2, 0, max_length_).contiguous();  // the padded layout's width
  slots_ = valid_.flatten().nonzero().flatten();
  logical_at_apply = logical;
}

PIKV_INLINE std::unique_ptr<CacheLayer> RaggedLayer::copy() const {
  return std::unique_ptr<CacheLayer>(new RaggedLayer(*this));
}

PIKV_INLINE std::unique_ptr<CacheLayer> RaggedLayer::deep_copy() const {
  std::unique_ptr<RaggedLayer> c(new RaggedLayer(*this));
  c->packed_keys_ = packed_keys_.clone();
  c->packed_values_ = packed_values_.clone();
  c->slots_ = slots_.clone();
  c->valid_ = valid_.clone();
  c->suffix_ = suffix_.deep_copy();
  if (kept.defined()) c->kept = kept.clone();
  return c;
}

PIKV_INLINE void RaggedLayer::append(int64_t layer, const at::Tensor& keys, const at::Tensor& values) {
  check_append_matches(layer, keys, batch, kv_heads, packed_keys_);
  suffix_.append(keys, values);
  logical += keys.size(2);
}

PIKV_INLINE std::unique_ptr<CacheLayer> RaggedLayer::apply(int64_t layer, const CompressedKV& result) {
  // Compressed again from its padded view (the packed heads padded to the longest, then the tokens
  // appended since): only by a head-wise result, which repacks it all.
  PIKV_CHECK(result.head_lengths.has_value(),
             "KVCache::apply: layer {} holds head-wise budgets; only a head-wise result can compress it again", layer);
  check_result_fits(result, layer, batch, kv_heads, physical_length(), packed_keys_);
  PIKV_CHECK(!result.positions_reset, "KVCache::apply to layer {}: a head-wise result cannot reset positions", layer);
  return std::make_unique<RaggedLayer>(*this, kept_after(result), result, layer);
}

PIKV_INLINE std::unique_ptr<CacheLayer> RaggedLayer::truncate(int64_t drop) {
  // Only the suffix: the cache never cuts into the compressed part.
  suffix_.truncate_to(suffix_.size() - drop);
  logical -= drop;
  return nullptr;
}

PIKV_INLINE void RaggedLayer::reserve(int64_t extra_tokens) {
  suffix_.reserve(batch, kv_heads, extra_tokens, suffix_.keys.defined() ? suffix_.keys : packed_keys_);
}

PIKV_INLINE at::Tensor RaggedLayer::head_lengths() const {
  return at::tensor(lengths_, at::kLong).view({batch, kv_heads}) + suffix_.size();
}

PIKV_INLINE KVCache::Padded RaggedLayer::padded() const {
  const int64_t d = packed_keys_.size(1);
  at::Tensor keys = at::zeros({batch * kv_heads * max_length_, d}, packed_keys_.options());
  at::Tensor values = at::zeros_like(keys);
  keys.index_copy_(0, slots_, packed_keys_);
  values.index_copy_(0, slots_, packed_values_);
  keys = keys.view({batch, kv_heads, max_length_, d});
  values = values.view({batch, kv_heads, max_length_, d});
  at::Tensor valid = valid_;
  if (suffix_.size() > 0) {
    keys = at::cat({keys, suffix_.keys}, 2);
    values = at::cat({values, suffix_.values}, 2);
    valid = at::cat({valid, at::ones({batch, kv_heads, suffix_.size()}, valid.options())}, 2);
  }
  return {keys, values, valid};
}

PIKV_INLINE int64_t RaggedLayer::bytes() const {
  return distinct_storage_bytes({&suffix_.keys, &suffix_.values, &packed_keys_, &packed_values_});
}

PIKV_INLINE KVView RaggedLayer::view() const {
  KVView v;  // keys/values left to attend(): the packed heads in place, or dense() when the call needs it
  v.source = this;
  return v;
}

PIKV_INLINE const PackedKV* RaggedLayer::packed() const {
  packed_view_.keys = packed_keys_;
  packed_view_.values = packed_values_;
  packed_view_.lengths = &lengths_;
  const bool suffix = suffix_.size() > 0;
  packed_view_.suffix_keys = suffix ? suffix_.keys : at::Tensor();
  packed_view_.suffix_values = suffix ? suffix_.values : at::Tensor();
  return &packed_view_;
}

}  // namespace pikv::detail
