#pragma once
// Bodies of the KVCache layer layouts (cache_layers.h): what every layout shares, then dense, ragged
// and fixed-capacity layers in turn.

#include <pikv/core/config.h>
#include <pikv/core/detail/cache_layers.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/detail/fixed_slots.h>
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

// ---- dense layer ---------------------------------------------------------------------------------------

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

// ---- ragged layer ----------------------------------------------------------------------------------------

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

// ---- fixed-capacity layer -------------------------------------------------------------------------------

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
