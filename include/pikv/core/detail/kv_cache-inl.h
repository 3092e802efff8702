#pragma once
// KVCache: checks what concerns the whole cache and forwards each verb to the layer's layout
// (cache_layers.h; the bodies per layout in dense_layer-inl.h, ragged_layer-inl.h, fixed_capacity_layer-inl.h).

#include <pikv/core/config.h>
#include <pikv/core/detail/cache_layers-inl.h>
#include <pikv/core/detail/dense_layer-inl.h>
#include <pikv/core/detail/fixed_capacity_layer-inl.h>
#include <pikv/core/detail/ragged_layer-inl.h>
#include <pikv/core/detail/cache_layers.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/kv_cache.h>
#include <pikv/core/tensor_checks.h>

#include <ATen/ATen.h>

namespace pikv {

PIKV_INLINE KVCache::KVCache(int64_t num_layers) {
  PIKV_CHECK(num_layers >= 1, "KVCache needs num_layers >= 1, got {}", num_layers);
  layers_.reserve(static_cast<size_t>(num_layers));
  for (int64_t i = 0; i < num_layers; ++i) layers_.push_back(std::make_unique<detail::DenseLayer>());
}

PIKV_INLINE KVCache::KVCache(const KVCache& other) : fixed_(other.fixed_), prefill_open_(other.prefill_open_) {
  layers_.reserve(other.layers_.size());
  for (const auto& L : other.layers_) layers_.push_back(L->copy());
}

PIKV_INLINE KVCache& KVCache::operator=(const KVCache& other) {
  if (this != &other) *this = KVCache(other);
  return *this;
}

PIKV_INLINE KVCache::KVCache(KVCache&&) noexcept = default;
PIKV_INLINE KVCache& KVCache::operator=(KVCache&&) noexcept = default;
PIKV_INLINE KVCache::~KVCache() = default;

PIKV_INLINE detail::CacheLayer& KVCache::at_layer(int64_t layer, const char* verb) {
  PIKV_CHECK(layer >= 0 && layer < num_layers(), "KVCache::{}: layer must be in [0, {}), got {}", verb,
             num_layers(), layer);
  return *layers_[static_cast<size_t>(layer)];
}

PIKV_INLINE const detail::CacheLayer& KVCache::at_layer(int64_t layer, const char* verb) const {
  PIKV_CHECK(layer >= 0 && layer < num_layers(), "KVCache::{}: layer must be in [0, {}), got {}", verb,
             num_layers(), layer);
  return *layers_[static_cast<size_t>(layer)];
}

PIKV_INLINE void KVCache::append(int64_t layer, const at::Tensor& keys, const at::Tensor& values) {
  detail::CacheLayer& L = at_layer(layer, "append");
  check_rank(keys, 4, "KVCache::append keys", "[B, Hkv, q, d]");
  check_rank(values, 4, "KVCache::append values", "[B, Hkv, q, d]");
  check_floating(keys, "KVCache::append keys");
  PIKV_CHECK(keys.sizes() == values.sizes() && keys.scalar_type() == values.scalar_type(),
             "KVCache::append: keys {} and values {} must have the same shape and dtype", describe_tensor(keys),
             describe_tensor(values));
  check_same_device(keys, "keys", values, "values");
  PIKV_CHECK(keys.size(0) >= 1 && keys.size(1) >= 1 && keys.size(3) >= 1,
             "KVCache::append: keys must have B, Hkv, d >= 1, got {}", describe_tensor(keys));
  L.append(layer, keys, values);
}

PIKV_INLINE void KVCache::apply(int64_t layer, const CompressedKV& stored_result) {
  detail::CacheLayer& L = at_layer(layer, "apply");
  PIKV_CHECK(L.logical > 0, "KVCache::apply: layer {} is empty", layer);
  if (stored_result.unchanged) return;
  // A press that scored a widened copy of a narrower cache (HookableModel::set_kv_dtype) returns its
  // kept entries in the wider dtype: store them back in the cache's (they were its values).
  const at::ScalarType cache_dtype = L.like().scalar_type();
  CompressedKV result = stored_result;
  if (result.keys.defined() && result.keys.scalar_type() != cache_dtype && at::isFloatingType(result.keys.scalar_type())) {
    result.keys = result.keys.to(cache_dtype);
    result.values = result.values.to(cache_dtype);
  }
  if (auto next = L.apply(layer, result)) layers_[static_cast<size_t>(layer)] = std::move(next);
}

PIKV_INLINE KVCache KVCache::concat_batch(const std::vector<const KVCache*>& caches) {
  PIKV_CHECK(!caches.empty(), "KVCache::concat_batch needs at least one cache");
  for (const KVCache* c : caches) {
    PIKV_CHECK(!c->is_fixed_capacity(), "KVCache::concat_batch works on dynamic caches, not fixed-capacity ones");
  }
  const KVCache& first = *caches.front();
  KVCache out(first.num_layers());
  for (size_t l = 0; l < first.layers_.size(); ++l) {
    const detail::CacheLayer& f = *first.layers_[l];
    std::vector<at::Tensor> keys, values, kept;
    for (size_t c = 0; c < caches.size(); ++c) {
      PIKV_CHECK(caches[c]->num_layers() == first.num_layers(), "KVCache::concat_batch: cache {} has {} layers, not {}",
                 c, caches[c]->num_layers(), first.num_layers());
      const auto* L = dynamic_cast<const detail::DenseLayer*>(caches[c]->layers_[l].get());
      PIKV_CHECK(L != nullptr && !f.ragged() && L->logical == f.logical && L->logical_at_apply == f.logical_at_apply &&
                     L->tokens.keys.defined() == f.dense_keys().defined() && L->kept.defined() == f.kept.defined() &&
                     (!L->tokens.keys.defined() || L->tokens.size() == f.dense_keys().size(2)),
                 "KVCache::concat_batch: cache {} layer {} differs in lengths or layout from cache 0", c, l);
      if (!L->tokens.keys.defined()) continue;
      keys.push_back(L->tokens.keys);
      values.push_back(L->tokens.values);
      if (L->kept.defined()) kept.push_back(L->kept);
    }
    auto& O = static_cast<detail::DenseLayer&>(*out.layers_[l]);
    O.logical = f.logical;
    O.logical_at_apply = f.logical_at_apply;
    if (keys.empty()) continue;
    O.tokens.keys = at::cat(keys, 0);
    O.tokens.values = at::cat(values, 0);
    if (!kept.empty()) O.kept = at::cat(kept, 0);
    O.batch = O.tokens.keys.size(0);
    O.kv_heads = O.tokens.keys.size(1);
  }
  return out;
}

PIKV_INLINE KVCache KVCache::clone() const {
  KVCache out(*this);
  for (size_t i = 0; i < layers_.size(); ++i) out.layers_[i] = layers_[i]->deep_copy();
  return out;
}

PIKV_INLINE void KVCache::truncate(int64_t logical_length) {
  PIKV_CHECK(logical_length >= 0, "KVCache::truncate: logical_length must be >= 0, got {}", logical_length);
  // The count to drop is measured on the first non-empty layer; every layer drops as many. Layers differ
  // in logical length only when a press reset positions on some of them (KeyRerotation on a model whose
  // sliding layers no press reaches).
  int64_t drop = 0;
  for (int64_t i = 0; i < num_layers(); ++i) {
    const detail::CacheLayer& L = *layers_[static_cast<size_t>(i)];
    if (L.logical == 0) continue;
    PIKV_CHECK(logical_length <= L.logical, "KVCache::truncate: layer {} holds {} tokens, cannot truncate to {}", i,
               L.logical, logical_length);
    drop = L.logical - logical_length;
    break;
  }
  // Check every layer before touching any, so a failed truncate leaves the cache as it was.
  for (int64_t i = 0; i < num_layers(); ++i) {
    const detail::CacheLayer& L = *layers_[static_cast<size_t>(i)];
    if (L.logical == 0) continue;
    const int64_t target = L.logical - drop;
    PIKV_CHECK(target >= 0, "KVCache::truncate: layer {} holds {} tokens, cannot drop {}", i, L.logical, drop);
    PIKV_CHECK(target >= L.logical_at_apply || L.logical_at_apply == 0,
               "KVCache::truncate: layer {} was compressed at length {}; truncating to {} would cut into the "
               "compressed part",
               i, L.logical_at_apply, target);
  }
  if (drop == 0) return;
  for (auto& L : layers_) {
    if (L->logical == 0) continue;
    if (auto next = L->truncate(drop)) L = std::move(next);
  }
}

PIKV_INLINE void KVCache::reserve(int64_t extra_tokens) {
  PIKV_CHECK(extra_tokens >= 0, "KVCache::reserve: extra_tokens must be >= 0, got {}", extra_tokens);
  for (auto& L : layers_) L->reserve(extra_tokens);
}

PIKV_INLINE void KVCache::clear() {
  prefill_open_ = false;
  for (auto& L : layers_) {
    if (auto* fixed = dynamic_cast<detail::FixedCapacityLayer*>(L.get())) {
      fixed->reset();  // the buffers stay allocated
    } else {
      L = std::make_unique<detail::DenseLayer>();
    }
  }
}

PIKV_INLINE bool KVCache::empty(int64_t layer) const { return at_layer(layer, "empty").logical == 0; }

PIKV_INLINE int64_t KVCache::batch_size(int64_t layer) const { return at_layer(layer, "batch_size").batch; }

PIKV_INLINE int64_t KVCache::logical_length(int64_t layer) const { return at_layer(layer, "logical_length").logical; }

PIKV_INLINE int64_t KVCache::physical_length(int64_t layer) const {
  return at_layer(layer, "physical_length").physical_length();
}

PIKV_INLINE bool KVCache::is_ragged(int64_t layer) const { return at_layer(layer, "is_ragged").ragged(); }

PIKV_INLINE at::Tensor KVCache::head_lengths(int64_t layer) const {
  return at_layer(layer, "head_lengths").head_lengths();
}

PIKV_INLINE const at::Tensor& KVCache::keys(int64_t layer) const {
  const detail::CacheLayer& L = at_layer(layer, "keys");
  PIKV_CHECK(!L.ragged(), "KVCache::keys: layer {} holds head-wise budgets; read it with padded()", layer);
  PIKV_CHECK(L.dense_keys().defined(), "KVCache::keys: layer {} is empty", layer);
  return L.dense_keys();
}

PIKV_INLINE const at::Tensor& KVCache::values(int64_t layer) const {
  const detail::CacheLayer& L = at_layer(layer, "values");
  PIKV_CHECK(!L.ragged(), "KVCache::values: layer {} holds head-wise budgets; read it with padded()", layer);
  PIKV_CHECK(L.dense_values().defined(), "KVCache::values: layer {} is empty", layer);
  return L.dense_values();
}

PIKV_INLINE KVCache::Padded KVCache::padded(int64_t layer) const {
  const detail::CacheLayer& L = at_layer(layer, "padded");
  PIKV_CHECK(L.logical > 0 || L.ragged(), "KVCache::padded: layer {} is empty", layer);
  return L.padded();
}

PIKV_INLINE KVView KVCache::view(int64_t layer) const {
  const detail::CacheLayer& L = at_layer(layer, "view");
  PIKV_CHECK(L.logical > 0 || L.ragged(), "KVCache::view: layer {} is empty", layer);
  return L.view();
}

PIKV_INLINE at::Tensor KVCache::token_positions(int64_t layer) const {
  return at_layer(layer, "token_positions").token_positions(layer);
}

PIKV_INLINE bool KVCache::is_contiguous_prefix(int64_t layer) const {
  return at_layer(layer, "is_contiguous_prefix").contiguous_prefix();
}

PIKV_INLINE const at::Tensor& KVCache::kept_positions(int64_t layer) const { return at_layer(layer, "kept_positions").kept; }

PIKV_INLINE int64_t KVCache::bytes(int64_t layer) const { return at_layer(layer, "bytes").bytes(); }

PIKV_INLINE int64_t KVCache::bytes() const {
  int64_t total = 0;
  for (int64_t i = 0; i < num_layers(); ++i) total += bytes(i);
  return total;
}

PIKV_INLINE int64_t KVCache::bytes_in_use(int64_t layer) const {
  const detail::CacheLayer& L = at_layer(layer, "bytes_in_use");
  if (L.logical == 0 && !L.ragged()) return 0;
  const at::Tensor& ref = L.like();
  const int64_t entries = L.head_lengths().sum().item<int64_t>();  // a CPU tensor: no device sync
  return entries * ref.size(-1) * 2 * static_cast<int64_t>(ref.element_size());
}

PIKV_INLINE int64_t KVCache::bytes_in_use() const {
  int64_t total = 0;
  for (int64_t i = 0; i < num_layers(); ++i) total += bytes_in_use(i);
  return total;
}

PIKV_INLINE KVCache KVCache::fixed_capacity(const FixedCacheShape& s, at::TensorOptions options) {
  PIKV_CHECK(s.num_layers >= 1 && s.batch >= 1 && s.kv_heads >= 1 && s.capacity >= 1 && s.head_dim >= 1,
             "KVCache::fixed_capacity needs positive sizes, got num_layers {}, batch {}, kv_heads {}, capacity {}, "
             "head_dim {}",
             s.num_layers, s.batch, s.kv_heads, s.capacity, s.head_dim);
  PIKV_CHECK(s.capacity <= (int64_t{1} << 24) && s.batch <= 4096 && s.kv_heads <= 4096 && s.head_dim <= 4096,
             "KVCache::fixed_capacity: capacity {} (at most 2^24), batch {}, kv_heads {}, head_dim {} (at most 4096) "
             "are out of range",
             s.capacity, s.batch, s.kv_heads, s.head_dim);
  PIKV_CHECK(at::isFloatingType(options.dtype().toScalarType()), "KVCache::fixed_capacity needs a floating dtype, got {}",
             dtype_name(options.dtype().toScalarType()));
  KVCache c(s.num_layers);
  c.fixed_ = s;
  for (auto& L : c.layers_) L = std::make_unique<detail::FixedCapacityLayer>(s, options);
  return c;
}

PIKV_INLINE const KVCache::FixedBuffers& KVCache::fixed_buffers(int64_t layer) const {
  const detail::CacheLayer& L = at_layer(layer, "fixed_buffers");
  PIKV_CHECK(is_fixed_capacity(), "KVCache::fixed_buffers: the cache is not a fixed-capacity cache");
  return static_cast<const detail::FixedCapacityLayer&>(L).buffers;
}

}  // namespace pikv
