#include <pikv/core/attention.h>
#include <pikv/core/error.h>
#include <pikv/core/tensor_checks.h>

#include <ATen/ATen.h>

namespace pikv {

void AttentionContext::validate() const {
  PIKV_CHECK(num_layers >= 1, "AttentionContext.num_layers must be >= 1, got {}", num_layers);
  PIKV_CHECK(layer >= 0 && layer < num_layers, "AttentionContext.layer must be in [0, {}), got {}",
             num_layers, layer);
  check_rank(keys, 4, "keys", "[B, Hkv, n, d]");
  check_rank(values, 4, "values", "[B, Hkv, n, d]");
  check_floating(keys, "keys");
  check_floating(values, "values");
  PIKV_CHECK(keys.sizes() == values.sizes(), "keys {} and values {} must have the same shape [B, Hkv, n, d]",
             describe_tensor(keys), describe_tensor(values));
  check_same_device(keys, "keys", values, "values");
  PIKV_CHECK(keys.size(0) >= 1 && keys.size(1) >= 1 && keys.size(3) >= 1,
             "keys must have B, Hkv, d >= 1, got {}", describe_tensor(keys));
  PIKV_CHECK(keys.size(2) >= 1, "the cache of layer {} is empty (keys {}): nothing to compress", layer,
             describe_tensor(keys));
  PIKV_CHECK(position_offset >= 0, "AttentionContext.position_offset must be >= 0, got {}", position_offset);
  if (hidden_states.defined()) {
    check_rank(hidden_states, 3, "hidden_states", "[B, q, Dm]");
    check_floating(hidden_states, "hidden_states");
    check_same_size(hidden_states, 0, "hidden_states", keys, 0, "keys", "B");
    check_same_device(hidden_states, "hidden_states", keys, "keys");
  }
  if (attention_weights) {
    const at::Tensor& w = *attention_weights;
    check_rank(w, 4, "attention_weights", "[B, H, q, n]");
    check_same_size(w, 0, "attention_weights", keys, 0, "keys", "B");
    check_same_size(w, 3, "attention_weights", keys, 2, "keys", "n");
    PIKV_CHECK(w.size(1) % keys.size(1) == 0,
               "attention_weights has H={} query heads, not a multiple of the keys' Hkv={}", w.size(1),
               keys.size(1));
    if (hidden_states.defined()) check_same_size(w, 2, "attention_weights", hidden_states, 1, "hidden_states", "q");
  }
  if (query_states.defined()) {
    check_rank(query_states, 4, "query_states", "[B, H, q, d]");
    check_same_size(query_states, 0, "query_states", keys, 0, "keys", "B");
    check_same_size(query_states, 3, "query_states", keys, 3, "keys", "d");
    if (hidden_states.defined()) check_same_size(query_states, 2, "query_states", hidden_states, 1, "hidden_states", "q");
  }
  if (layer_view != nullptr) {
    PIKV_CHECK(layer_view->num_kv_heads() == keys.size(1),
               "layer view of layer {} has {} KV heads but keys have Hkv={}", layer,
               layer_view->num_kv_heads(), keys.size(1));
    PIKV_CHECK(layer_view->head_dim() == keys.size(3), "layer view of layer {} has head_dim {} but keys have d={}",
               layer, layer_view->head_dim(), keys.size(3));
  }
}

at::Tensor prerope_queries(const AttentionContext& ctx, int64_t start, int64_t len) {
  PIKV_CHECK(ctx.hidden_states.defined(), "layer {}: queries need the forward's hidden states", ctx.layer);
  const int64_t q = ctx.hidden_states.size(1);
  PIKV_CHECK(start >= 0 && len >= 0 && start + len <= q, "layer {}: query slice [{}, {}) is outside the forward's {} tokens",
             ctx.layer, start, start + len, q);
  if (ctx.query_states.defined() && ctx.query_states.size(2) == q) return ctx.query_states.narrow(2, start, len);
  PIKV_CHECK(ctx.layer_view != nullptr, "layer {}: queries need the layer's query projection (no layer view)", ctx.layer);
  return ctx.layer_view->query_states(ctx.hidden_states.narrow(1, start, len));
}

at::Tensor rotated_queries(const AttentionContext& ctx, int64_t start, int64_t len) {
  at::Tensor q = prerope_queries(ctx, start, len);
  PIKV_CHECK(ctx.layer_view != nullptr, "layer {}: RoPE of queries needs the layer view", ctx.layer);
  const int64_t first = ctx.position_offset + start;
  return ctx.layer_view->apply_rope(
      q, at::arange(first, first + len, at::TensorOptions().dtype(at::kLong).device(q.device())));
}

}  // namespace pikv
