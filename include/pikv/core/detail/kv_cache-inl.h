#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/detail/fixed_slots.h>
#include <pikv/core/kv_cache.h>
#include <pikv/core/tensor_checks.h>

#include <ATen/ATen.h>

#include <algorithm>

namespace pikv {
namespace detail {

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

// Views of a fixed layer's stored prefix when every head holds the same count (else undefined).
PIKV_INLINE void refresh_fixed_views(at::Tensor& keys, at::Tensor& values, const at::Tensor& buf_k, const at::Tensor& buf_v,
                                const std::vector<int64_t>& lengths) {
  const auto [lo, hi] = std::minmax_element(lengths.begin(), lengths.end());
  if (*lo == *hi && *hi > 0) {
    keys = buf_k.narrow(2, 0, *hi);
    values = buf_v.narrow(2, 0, *hi);
  } else {
    keys = at::Tensor();
    values = at::Tensor();
  }
}

}  // namespace detail

PIKV_INLINE KVCache::KVCache(int64_t num_layers) {
  PIKV_CHECK(num_layers >= 1, "KVCache needs num_layers >= 1, got {}", num_layers);
  layers_.resize(static_cast<size_t>(num_layers));
}

PIKV_INLINE KVCache::Layer& KVCache::at_layer(int64_t layer, const char* verb) {
  PIKV_CHECK(layer >= 0 && layer < num_layers(), "KVCache::{}: layer must be in [0, {}), got {}", verb,
             num_layers(), layer);
  return layers_[static_cast<size_t>(layer)];
}

PIKV_INLINE const KVCache::Layer& KVCache::at_layer(int64_t layer, const char* verb) const {
  PIKV_CHECK(layer >= 0 && layer < num_layers(), "KVCache::{}: layer must be in [0, {}), got {}", verb,
             num_layers(), layer);
  return layers_[static_cast<size_t>(layer)];
}

PIKV_INLINE void KVCache::append(int64_t layer, const at::Tensor& keys, const at::Tensor& values) {
  Layer& L = at_layer(layer, "append");
  check_rank(keys, 4, "KVCache::append keys", "[B, Hkv, q, d]");
  check_rank(values, 4, "KVCache::append values", "[B, Hkv, q, d]");
  check_floating(keys, "KVCache::append keys");
  PIKV_CHECK(keys.sizes() == values.sizes() && keys.scalar_type() == values.scalar_type(),
             "KVCache::append: keys {} and values {} must have the same shape and dtype", describe_tensor(keys),
             describe_tensor(values));
  check_same_device(keys, "keys", values, "values");
  PIKV_CHECK(keys.size(0) >= 1 && keys.size(1) >= 1 && keys.size(3) >= 1,
             "KVCache::append: keys must have B, Hkv, d >= 1, got {}", describe_tensor(keys));
  if (is_fixed_capacity()) {
    fixed_append(L, layer, keys, values);
    return;
  }
  const bool fresh = L.logical == 0 && !L.ragged();
  if (!fresh) {
    const at::Tensor& ref = L.keys.defined() ? L.keys : L.ragged_keys;
    PIKV_CHECK(keys.size(0) == L.batch && keys.size(1) == L.kv_heads && keys.size(3) == ref.size(-1) &&
                   keys.scalar_type() == ref.scalar_type() && keys.device() == ref.device(),
               "KVCache::append to layer {}: new keys {} do not match the cached [B={}, Hkv={}, d={}] {} on {}",
               layer, describe_tensor(keys), L.batch, L.kv_heads, ref.size(-1), dtype_name(ref.scalar_type()),
               ref.device().str());
  }
  L.batch = keys.size(0);
  L.kv_heads = keys.size(1);
  const int64_t dense = L.keys.defined() ? L.keys.size(2) : 0;
  if (L.buf_keys.defined() && dense + keys.size(2) <= L.buf_keys.size(2)) {
    // Reserved capacity: write in place (L.keys is a view of the buffer's first `dense` tokens).
    L.buf_keys.narrow(2, dense, keys.size(2)).copy_(keys);
    L.buf_values.narrow(2, dense, keys.size(2)).copy_(values);
    L.keys = L.buf_keys.narrow(2, 0, dense + keys.size(2));
    L.values = L.buf_values.narrow(2, 0, dense + keys.size(2));
  } else if (dense > 0) {
    L.keys = at::cat({L.keys, keys}, 2);
    L.values = at::cat({L.values, values}, 2);
    L.buf_keys = at::Tensor();
    L.buf_values = at::Tensor();
  } else {
    L.keys = keys;
    L.values = values;
  }
  L.logical += keys.size(2);
}

PIKV_INLINE void KVCache::apply(int64_t layer, const CompressedKV& stored_result) {
  Layer& L = at_layer(layer, "apply");
  PIKV_CHECK(L.logical > 0, "KVCache::apply: layer {} is empty", layer);
  if (stored_result.unchanged) return;
  // A press that scored a widened copy of a narrower cache (HookableModel::set_kv_dtype) returns its
  // kept entries in the wider dtype: store them back in the cache's (they were its values).
  const at::ScalarType cache_dtype = is_fixed_capacity() ? L.fixed.keys.scalar_type()
                                     : L.ragged()        ? L.ragged_keys.scalar_type()
                                                         : L.keys.scalar_type();
  CompressedKV result = stored_result;
  if (result.keys.defined() && result.keys.scalar_type() != cache_dtype && at::isFloatingType(result.keys.scalar_type())) {
    result.keys = result.keys.to(cache_dtype);
    result.values = result.values.to(cache_dtype);
  }
  if (is_fixed_capacity()) {
    PIKV_CHECK(!is_ragged(layer),
               "KVCache::apply: layer {} of a fixed-capacity cache already holds head-wise budgets; it can be "
               "compressed again only after clear()", layer);
    fixed_apply(L, layer, result);
    return;
  }
  // A ragged layer is compressed again from its padded view (padded(): the packed heads padded to the
  // longest, then the tokens appended since): only by a head-wise result, which repacks it all.
  const bool was_ragged = L.ragged();
  PIKV_CHECK(!was_ragged || result.head_lengths.has_value(),
             "KVCache::apply: layer {} holds head-wise budgets; only a head-wise result can compress it again", layer);
  // Its padded width without building the padded copy (the press already did).
  const int64_t n = physical_length(layer);
  detail::check_result_fits(result, layer, L.batch, L.kv_heads, n, was_ragged ? L.ragged_keys : L.keys);
  const int64_t k = result.keys.size(2);

  // Logical position of every stored token: the prefix kept by an earlier apply(), then the tokens
  // appended since.
  if (result.indices.defined()) {
    auto idx_opts = result.indices.options();
    at::Tensor positions;
    if (L.kept.defined()) {
      at::Tensor tail = at::arange(L.logical_at_apply, L.logical, idx_opts).expand({L.batch, L.kv_heads, -1});
      positions = at::cat({L.kept, tail}, 2);
    } else {
      positions = at::arange(L.logical, idx_opts).expand({L.batch, L.kv_heads, L.logical});
    }
    at::Tensor padding = result.indices < 0;
    at::Tensor mapped = positions.gather(2, result.indices.clamp_min(0));
    L.kept = at::where(padding, at::full({}, -1, idx_opts), mapped);
  } else {
    L.kept = at::Tensor();
  }

  L.buf_keys = at::Tensor();
  L.buf_values = at::Tensor();
  if (!result.head_lengths) {
    L.keys = result.keys;
    L.values = result.values;
  } else {
    // Head-wise budgets: pack the real entries of every (b, h) back to back. This is what frees the
    // memory kvpress keeps (it masks instead). Reading the lengths is one host sync per layer.
    at::Tensor lengths = result.head_lengths->to(at::kCPU, at::kLong).contiguous();
    PIKV_CHECK(lengths.dim() == 2 && lengths.size(0) == L.batch && lengths.size(1) == L.kv_heads,
               "KVCache::apply to layer {}: head_lengths must be int64 [B, Hkv] = [{}, {}], got {}", layer, L.batch,
               L.kv_heads, describe_tensor(lengths));
    const int64_t* len = lengths.data_ptr<int64_t>();
    std::vector<int64_t> lens(len, len + lengths.numel());
    for (size_t i = 0; i < lens.size(); ++i) {
      PIKV_CHECK(lens[i] >= 0 && lens[i] <= k, "KVCache::apply to layer {}: head {} keeps {} tokens, outside [0, {}]",
                 layer, i, lens[i], k);
    }
    at::Tensor valid = at::arange(k, result.keys.options().dtype(at::kLong)) <
                       result.head_lengths->to(result.keys.device(), at::kLong).unsqueeze(-1);
    L.ragged_keys = result.keys.index({valid});      // [sum(lengths), d], (b, h, j) order
    L.ragged_values = result.values.index({valid});
    L.ragged_lengths = std::move(lens);
    L.ragged_max = *std::max_element(L.ragged_lengths.begin(), L.ragged_lengths.end());
    L.ragged_valid = valid.narrow(2, 0, L.ragged_max).contiguous();
    if (L.kept.defined()) L.kept = L.kept.narrow(2, 0, L.ragged_max).contiguous();  // the padded layout's width
    L.ragged_slots = L.ragged_valid.flatten().nonzero().flatten();
    L.keys = at::Tensor();
    L.values = at::Tensor();
  }
  if (result.positions_reset) {
    // Re-rotated keys sit at positions 0..k-1 now: the layer continues from the compressed length.
    PIKV_CHECK(!L.ragged(), "KVCache::apply to layer {}: a head-wise result cannot reset positions", layer);
    PIKV_CHECK(L.keys.size(2) == k && L.logical == n,
               "KVCache::apply to layer {}: positions can be reset only by a result on the whole cache", layer);
    L.logical = k;
    L.kept = at::Tensor();
  }
  L.logical_at_apply = L.logical;
}

PIKV_INLINE KVCache KVCache::concat_batch(const std::vector<const KVCache*>& caches) {
  PIKV_CHECK(!caches.empty(), "KVCache::concat_batch needs at least one cache");
  for (const KVCache* c : caches) {
    PIKV_CHECK(!c->is_fixed_capacity(), "KVCache::concat_batch works on dynamic caches, not fixed-capacity ones");
  }
  const KVCache& first = *caches.front();
  KVCache out(first.num_layers());
  for (size_t l = 0; l < first.layers_.size(); ++l) {
    const Layer& f = first.layers_[l];
    std::vector<at::Tensor> keys, values, kept;
    for (size_t c = 0; c < caches.size(); ++c) {
      PIKV_CHECK(caches[c]->num_layers() == first.num_layers(), "KVCache::concat_batch: cache {} has {} layers, not {}",
                 c, caches[c]->num_layers(), first.num_layers());
      const Layer& L = caches[c]->layers_[l];
      PIKV_CHECK(!L.ragged() && L.logical == f.logical && L.logical_at_apply == f.logical_at_apply &&
                     L.keys.defined() == f.keys.defined() && L.kept.defined() == f.kept.defined() &&
                     (!L.keys.defined() || L.keys.size(2) == f.keys.size(2)),
                 "KVCache::concat_batch: cache {} layer {} differs in lengths or layout from cache 0", c, l);
      if (!L.keys.defined()) continue;
      keys.push_back(L.keys);
      values.push_back(L.values);
      if (L.kept.defined()) kept.push_back(L.kept);
    }
    Layer& O = out.layers_[l];
    O.logical = f.logical;
    O.logical_at_apply = f.logical_at_apply;
    if (keys.empty()) continue;
    O.keys = at::cat(keys, 0);
    O.values = at::cat(values, 0);
    if (!kept.empty()) O.kept = at::cat(kept, 0);
    O.batch = O.keys.size(0);
    O.kv_heads = O.keys.size(1);
  }
  return out;
}

PIKV_INLINE KVCache KVCache::clone() const {
  KVCache out(num_layers());
  out.fixed_ = fixed_;
  for (size_t i = 0; i < layers_.size(); ++i) {
    const Layer& L = layers_[i];
    Layer& C = out.layers_[i];
    C = L;
    auto deep = [](const at::Tensor& t) { return t.defined() ? t.clone() : t; };
    if (is_fixed_capacity()) {
      C.fixed = {L.fixed.keys.clone(), L.fixed.values.clone(), L.fixed.slots.clone()};
      C.kept = deep(L.kept);
      detail::refresh_fixed_views(C.keys, C.values, C.fixed.keys, C.fixed.values, C.fixed_lengths);
      continue;
    }
    if (L.buf_keys.defined()) {
      C.buf_keys = L.buf_keys.clone();
      C.buf_values = L.buf_values.clone();
      C.keys = L.keys.defined() ? C.buf_keys.narrow(2, 0, L.keys.size(2)) : at::Tensor();
      C.values = L.values.defined() ? C.buf_values.narrow(2, 0, L.values.size(2)) : at::Tensor();
    } else {
      C.keys = deep(L.keys);
      C.values = deep(L.values);
    }
    C.ragged_keys = deep(L.ragged_keys);
    C.ragged_values = deep(L.ragged_values);
    C.ragged_slots = deep(L.ragged_slots);
    C.ragged_valid = deep(L.ragged_valid);
    C.kept = deep(L.kept);
  }
  return out;
}

PIKV_INLINE void KVCache::truncate(int64_t logical_length) {
  PIKV_CHECK(logical_length >= 0, "KVCache::truncate: logical_length must be >= 0, got {}", logical_length);
  // The count to drop is measured on the first non-empty layer; every layer drops as many. Layers differ
  // in logical length only when a press reset positions on some of them (KeyRerotation on a model whose
  // sliding layers no press reaches).
  int64_t drop = 0;
  for (int64_t i = 0; i < num_layers(); ++i) {
    const Layer& L = layers_[static_cast<size_t>(i)];
    if (L.logical == 0) continue;
    PIKV_CHECK(logical_length <= L.logical, "KVCache::truncate: layer {} holds {} tokens, cannot truncate to {}", i,
               L.logical, logical_length);
    drop = L.logical - logical_length;
    break;
  }
  // Check every layer before touching any, so a failed truncate leaves the cache as it was.
  for (int64_t i = 0; i < num_layers(); ++i) {
    const Layer& L = layers_[static_cast<size_t>(i)];
    if (L.logical == 0) continue;
    const int64_t target = L.logical - drop;
    PIKV_CHECK(target >= 0, "KVCache::truncate: layer {} holds {} tokens, cannot drop {}", i, L.logical, drop);
    PIKV_CHECK(target >= L.logical_at_apply || L.logical_at_apply == 0,
               "KVCache::truncate: layer {} was compressed at length {}; truncating to {} would cut into the "
               "compressed part",
               i, L.logical_at_apply, target);
  }
  if (drop == 0) return;
  for (Layer& L : layers_) {
    if (L.logical == 0) continue;
    const int64_t target = L.logical - drop;
    if (is_fixed_capacity()) {
      fixed_truncate(L, target);
      continue;
    }
    const int64_t dense = L.keys.defined() ? L.keys.size(2) : 0;
    if (L.logical_at_apply == 0 && drop == L.logical) {
      L = Layer();
      continue;
    }
    if (L.buf_keys.defined()) {
      // Reserved capacity stays allocated for the next question; only the view shrinks.
      L.keys = L.buf_keys.narrow(2, 0, dense - drop);
      L.values = L.buf_values.narrow(2, 0, dense - drop);
    } else if (dense - drop == 0) {
      L.keys = at::Tensor();
      L.values = at::Tensor();
    } else {
      // A copy, not a view: the dropped tokens' memory is released now and bytes() stays truthful.
      L.keys = L.keys.narrow(2, 0, dense - drop).clone();
      L.values = L.values.narrow(2, 0, dense - drop).clone();
    }
    L.logical = target;
  }
}

PIKV_INLINE void KVCache::reserve(int64_t extra_tokens) {
  PIKV_CHECK(extra_tokens >= 0, "KVCache::reserve: extra_tokens must be >= 0, got {}", extra_tokens);
  if (is_fixed_capacity()) return;  // preallocated
  for (Layer& L : layers_) {
    if (!L.keys.defined() && !L.ragged()) continue;
    const at::Tensor& ref = L.keys.defined() ? L.keys : L.ragged_keys;
    const int64_t dense = L.keys.defined() ? L.keys.size(2) : 0;
    const int64_t need = dense + extra_tokens;
    if (L.buf_keys.defined() && L.buf_keys.size(2) >= need) continue;
    const int64_t d = ref.size(-1);
    at::Tensor bk = at::empty({L.batch, L.kv_heads, need, d}, ref.options());
    at::Tensor bv = at::empty({L.batch, L.kv_heads, need, d}, ref.options());
    if (dense > 0) {
      bk.narrow(2, 0, dense).copy_(L.keys);
      bv.narrow(2, 0, dense).copy_(L.values);
    }
    L.buf_keys = bk;
    L.buf_values = bv;
    L.keys = bk.narrow(2, 0, dense);
    L.values = bv.narrow(2, 0, dense);
  }
}

PIKV_INLINE void KVCache::clear() {
  for (Layer& L : layers_) {
    if (is_fixed_capacity()) {
      L.logical_at_apply = 0;
      fixed_truncate(L, 0);
    } else {
      L = Layer();
    }
  }
}

PIKV_INLINE bool KVCache::empty(int64_t layer) const { return at_layer(layer, "empty").logical == 0; }

PIKV_INLINE int64_t KVCache::batch_size(int64_t layer) const { return at_layer(layer, "batch_size").batch; }

PIKV_INLINE int64_t KVCache::logical_length(int64_t layer) const { return at_layer(layer, "logical_length").logical; }

PIKV_INLINE int64_t KVCache::physical_length(int64_t layer) const {
  const Layer& L = at_layer(layer, "physical_length");
  if (is_fixed_capacity()) return *std::max_element(L.fixed_lengths.begin(), L.fixed_lengths.end());
  const int64_t dense = L.keys.defined() ? L.keys.size(2) : 0;
  return L.ragged_max + dense;
}

PIKV_INLINE bool KVCache::is_ragged(int64_t layer) const {
  const Layer& L = at_layer(layer, "is_ragged");
  if (is_fixed_capacity()) {
    const auto [lo, hi] = std::minmax_element(L.fixed_lengths.begin(), L.fixed_lengths.end());
    return *lo != *hi;
  }
  return L.ragged();
}

PIKV_INLINE at::Tensor KVCache::head_lengths(int64_t layer) const {
  const Layer& L = at_layer(layer, "head_lengths");
  if (is_fixed_capacity()) return at::tensor(L.fixed_lengths, at::kLong).view({L.batch, L.kv_heads});
  const int64_t dense = L.keys.defined() ? L.keys.size(2) : 0;
  if (!L.ragged()) return at::full({L.batch, L.kv_heads}, dense, at::kLong);
  at::Tensor out = at::tensor(L.ragged_lengths, at::kLong).view({L.batch, L.kv_heads});
  return out + dense;
}

PIKV_INLINE const at::Tensor& KVCache::keys(int64_t layer) const {
  const Layer& L = at_layer(layer, "keys");
  PIKV_CHECK(!L.ragged() && !is_ragged(layer), "KVCache::keys: layer {} holds head-wise budgets; read it with padded()", layer);
  PIKV_CHECK(L.keys.defined(), "KVCache::keys: layer {} is empty", layer);
  return L.keys;
}

PIKV_INLINE const at::Tensor& KVCache::values(int64_t layer) const {
  const Layer& L = at_layer(layer, "values");
  PIKV_CHECK(!L.ragged() && !is_ragged(layer), "KVCache::values: layer {} holds head-wise budgets; read it with padded()", layer);
  PIKV_CHECK(L.values.defined(), "KVCache::values: layer {} is empty", layer);
  return L.values;
}

PIKV_INLINE KVCache::Padded KVCache::padded(int64_t layer) const {
  const Layer& L = at_layer(layer, "padded");
  PIKV_CHECK(L.logical > 0 || L.ragged(), "KVCache::padded: layer {} is empty", layer);
  if (is_fixed_capacity()) {
    const int64_t m = physical_length(layer);
    if (!is_ragged(layer)) return {L.fixed.keys.narrow(2, 0, m), L.fixed.values.narrow(2, 0, m), at::Tensor()};
    return {L.fixed.keys.narrow(2, 0, m), L.fixed.values.narrow(2, 0, m), L.fixed.slots.narrow(2, 0, m) >= 0};
  }
  if (!L.ragged()) return {L.keys, L.values, at::Tensor()};
  const int64_t d = L.ragged_keys.size(1);
  at::Tensor keys = at::zeros({L.batch * L.kv_heads * L.ragged_max, d}, L.ragged_keys.options());
  at::Tensor values = at::zeros_like(keys);
  keys.index_copy_(0, L.ragged_slots, L.ragged_keys);
  values.index_copy_(0, L.ragged_slots, L.ragged_values);
  keys = keys.view({L.batch, L.kv_heads, L.ragged_max, d});
  values = values.view({L.batch, L.kv_heads, L.ragged_max, d});
  at::Tensor valid = L.ragged_valid;
  if (L.keys.defined() && L.keys.size(2) > 0) {
    keys = at::cat({keys, L.keys}, 2);
    values = at::cat({values, L.values}, 2);
    valid = at::cat({valid, at::ones({L.batch, L.kv_heads, L.keys.size(2)}, valid.options())}, 2);
  }
  return {keys, values, valid};
}

PIKV_INLINE KVCache::RaggedParts KVCache::ragged_parts(int64_t layer) const {
  const Layer& L = at_layer(layer, "ragged_parts");
  PIKV_CHECK(!is_fixed_capacity() && L.ragged(),
             "KVCache::ragged_parts: layer {} is not a ragged layer of a dynamic cache", layer);
  RaggedParts parts;
  parts.packed_keys = L.ragged_keys;
  parts.packed_values = L.ragged_values;
  parts.lengths = &L.ragged_lengths;
  if (L.keys.defined() && L.keys.size(2) > 0) {
    parts.suffix_keys = L.keys;
    parts.suffix_values = L.values;
  }
  return parts;
}

PIKV_INLINE at::Tensor KVCache::token_positions(int64_t layer) const {
  const Layer& L = at_layer(layer, "token_positions");
  if (is_fixed_capacity()) {
    PIKV_CHECK(L.logical > 0, "KVCache::token_positions: layer {} is empty", layer);
    return L.fixed.slots.narrow(2, 0, physical_length(layer));
  }
  const at::Tensor& ref = L.keys.defined() ? L.keys : L.ragged_keys;
  PIKV_CHECK(ref.defined(), "KVCache::token_positions: layer {} is empty", layer);
  auto opts = ref.options().dtype(at::kLong);
  if (!L.kept.defined()) return at::arange(L.logical, opts).expand({L.batch, L.kv_heads, L.logical});
  at::Tensor tail = at::arange(L.logical_at_apply, L.logical, opts).expand({L.batch, L.kv_heads, -1});
  return at::cat({L.kept.to(opts.device()), tail}, 2);
}

PIKV_INLINE bool KVCache::is_contiguous_prefix(int64_t layer) const {
  const Layer& L = at_layer(layer, "is_contiguous_prefix");
  if (is_fixed_capacity()) return !L.compressed;
  return !L.kept.defined() && !L.ragged();
}

PIKV_INLINE const at::Tensor& KVCache::kept_positions(int64_t layer) const { return at_layer(layer, "kept_positions").kept; }

PIKV_INLINE int64_t KVCache::bytes(int64_t layer) const {
  const Layer& L = at_layer(layer, "bytes");
  if (is_fixed_capacity()) return detail::distinct_storage_bytes({&L.fixed.keys, &L.fixed.values});
  return detail::distinct_storage_bytes({&L.keys, &L.values, &L.ragged_keys, &L.ragged_values});
}

PIKV_INLINE int64_t KVCache::bytes() const {
  int64_t total = 0;
  for (int64_t i = 0; i < num_layers(); ++i) total += bytes(i);
  return total;
}

PIKV_INLINE int64_t KVCache::bytes_in_use(int64_t layer) const {
  const Layer& L = at_layer(layer, "bytes_in_use");
  if (L.logical == 0 && !L.ragged()) return 0;
  const at::Tensor& ref = is_fixed_capacity() ? L.fixed.keys : (L.keys.defined() ? L.keys : L.ragged_keys);
  const int64_t entries = head_lengths(layer).sum().item<int64_t>();  // a CPU tensor: no device sync
  return entries * ref.size(-1) * 2 * static_cast<int64_t>(ref.element_size());
}

PIKV_INLINE int64_t KVCache::bytes_in_use() const {
  int64_t total = 0;
  for (int64_t i = 0; i < num_layers(); ++i) total += bytes_in_use(i);
  return total;
}

// ---- fixed-capacity layout ----------------------------------------------------------------------------

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
  for (Layer& L : c.layers_) {
    L.fixed.keys = at::zeros({s.batch, s.kv_heads, s.capacity, s.head_dim}, options);
    L.fixed.values = at::zeros({s.batch, s.kv_heads, s.capacity, s.head_dim}, options);
    L.fixed.slots = at::full({s.batch, s.kv_heads, s.capacity}, -1, options.dtype(at::kLong));
    L.fixed_lengths.assign(static_cast<size_t>(s.batch * s.kv_heads), 0);
    L.batch = s.batch;
    L.kv_heads = s.kv_heads;
  }
  return c;
}

PIKV_INLINE const KVCache::FixedBuffers& KVCache::fixed_buffers(int64_t layer) const {
  const Layer& L = at_layer(layer, "fixed_buffers");
  PIKV_CHECK(is_fixed_capacity(), "KVCache::fixed_buffers: the cache is not a fixed-capacity cache");
  return L.fixed;
}


PIKV_INLINE int64_t KVCache::fixed_uniform_length(const Layer& L, int64_t layer, const char* verb) const {
  const auto [lo, hi] = std::minmax_element(L.fixed_lengths.begin(), L.fixed_lengths.end());
  PIKV_CHECK(*lo == *hi,
             "KVCache::{}: layer {} holds head-wise budgets (heads keep {} to {} tokens); it can be compressed again "
             "only after clear()",
             verb, layer, *lo, *hi);
  return *hi;
}

PIKV_INLINE void KVCache::fixed_append(Layer& L, int64_t layer, const at::Tensor& keys, const at::Tensor& values) {
  const FixedCacheShape& s = fixed_;
  PIKV_CHECK(keys.size(0) == s.batch && keys.size(1) == s.kv_heads && keys.size(3) == s.head_dim &&
                 keys.scalar_type() == L.fixed.keys.scalar_type() && keys.device() == L.fixed.keys.device(),
             "KVCache::append to layer {}: new keys {} do not match the fixed-capacity cache [B={}, Hkv={}, d={}] {} on {}",
             layer, describe_tensor(keys), s.batch, s.kv_heads, s.head_dim, dtype_name(L.fixed.keys.scalar_type()),
             L.fixed.keys.device().str());
  const int64_t T = keys.size(2);
  const auto [lo, hi] = std::minmax_element(L.fixed_lengths.begin(), L.fixed_lengths.end());
  PIKV_CHECK(*hi + T <= s.capacity,
             "KVCache::append to layer {}: {} new tokens after the {} a head holds exceed the fixed capacity of {} "
             "tokens (make the cache, or export the model, with a larger capacity)",
             layer, T, *hi, s.capacity);
  auto lopts = L.fixed.slots.options();
  at::Tensor positions = at::arange(L.logical, L.logical + T, lopts).expand({s.batch, s.kv_heads, T});
  at::Tensor counts = *lo == *hi ? at::Tensor()
                                 : at::tensor(L.fixed_lengths, at::kLong).view({s.batch, s.kv_heads}).to(lopts.device());
  detail::write_fixed_tokens(L.fixed.keys, L.fixed.values, L.fixed.slots, counts, *lo, *hi, keys, values, positions);
  for (int64_t& n : L.fixed_lengths) n += T;
  L.logical += T;
  detail::refresh_fixed_views(L.keys, L.values, L.fixed.keys, L.fixed.values, L.fixed_lengths);
}

PIKV_INLINE void KVCache::fixed_apply(Layer& L, int64_t layer, const CompressedKV& result) {
  const FixedCacheShape& s = fixed_;
  const int64_t n = fixed_uniform_length(L, layer, "apply");
  detail::check_result_fits(result, layer, s.batch, s.kv_heads, n, L.fixed.keys);
  const int64_t k = result.keys.size(2);
  at::Tensor kept;
  if (result.indices.defined()) {
    at::Tensor before = L.fixed.slots.narrow(2, 0, n);
    at::Tensor idx = result.indices.to(before.device());
    kept = at::where(idx < 0, at::full({}, -1, before.options()), before.gather(2, idx.clamp_min(0)));
  } else {
    kept = L.fixed.slots.narrow(2, 0, n).clone();
  }
  // The result is gathered from the stored prefix: a new tensor, so writing it back in place is safe.
  L.fixed.keys.narrow(2, 0, k).copy_(result.keys);
  L.fixed.values.narrow(2, 0, k).copy_(result.values);
  L.fixed.slots.narrow(2, 0, k).copy_(kept);
  if (k < s.capacity) L.fixed.slots.narrow(2, k, s.capacity - k).fill_(-1);
  if (result.head_lengths) {
    at::Tensor lengths = result.head_lengths->to(at::kCPU, at::kLong).contiguous();
    PIKV_CHECK(lengths.dim() == 2 && lengths.size(0) == s.batch && lengths.size(1) == s.kv_heads,
               "KVCache::apply to layer {}: head_lengths must be int64 [B, Hkv] = [{}, {}], got {}", layer, s.batch,
               s.kv_heads, describe_tensor(lengths));
    const int64_t* len = lengths.data_ptr<int64_t>();
    for (size_t i = 0; i < L.fixed_lengths.size(); ++i) {
      PIKV_CHECK(len[i] >= 0 && len[i] <= k, "KVCache::apply to layer {}: head {} keeps {} tokens, outside [0, {}]",
                 layer, i, len[i], k);
      L.fixed_lengths[i] = len[i];
    }
  } else {
    for (int64_t& m : L.fixed_lengths) m = k;
  }
  if (result.positions_reset) {
    PIKV_CHECK(!result.head_lengths && L.logical == n,
               "KVCache::apply to layer {}: positions can be reset only by a uniform result on the whole cache", layer);
    L.fixed.slots.narrow(2, 0, k).copy_(at::arange(k, L.fixed.slots.options()).expand({s.batch, s.kv_heads, k}));
    L.logical = k;
    L.kept = at::Tensor();
  } else {
    L.kept = kept;
  }
  L.compressed = true;
  L.logical_at_apply = L.logical;
  detail::refresh_fixed_views(L.keys, L.values, L.fixed.keys, L.fixed.values, L.fixed_lengths);
}

PIKV_INLINE void KVCache::fixed_truncate(Layer& L, int64_t logical_length) {
  if (L.logical_at_apply == 0 && logical_length == 0) {
    L.fixed.slots.fill_(-1);
    std::fill(L.fixed_lengths.begin(), L.fixed_lengths.end(), 0);
    L.logical = 0;
    L.compressed = false;
    L.kept = at::Tensor();
    L.keys = at::Tensor();
    L.values = at::Tensor();
    return;
  }
  // Tokens after the cut are the suffix of every head (appended after any compression).
  L.fixed.slots.masked_fill_(L.fixed.slots >= logical_length, -1);
  at::Tensor counts = (L.fixed.slots >= 0).sum(-1).to(at::kCPU, at::kLong).contiguous();
  const int64_t* c = counts.data_ptr<int64_t>();
  L.fixed_lengths.assign(c, c + counts.numel());
  L.logical = logical_length;
  detail::refresh_fixed_views(L.keys, L.values, L.fixed.keys, L.fixed.values, L.fixed_lengths);
}


}  // namespace pikv
