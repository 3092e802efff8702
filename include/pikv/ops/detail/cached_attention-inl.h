#pragma once

#include <pikv/core/attention.h>
#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/detail/fixed_slots.h>
#include <pikv/core/hookable_model.h>
#include <pikv/core/rotary.h>
#include <pikv/core/tensor_checks.h>
#include <pikv/ops/cached_attention.h>

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>


namespace pikv::ops {
namespace detail {

// The layer as a press sees it inside the operator: head counts, the RoPE the graph applied (from
// inv_freq), the output projection when the graph passes it. Queries come with the context.
class OperatorLayerView : public AttentionLayerView {
 public:
  OperatorLayerView(int64_t layer, int64_t heads, int64_t kv_heads, int64_t head_dim, at::Tensor inv_freq,
                    double rope_scaling, at::Tensor out_weight)
      : layer_(layer),
        heads_(heads),
        kv_heads_(kv_heads),
        head_dim_(head_dim),
        inv_freq_(inv_freq.numel() > 0 ? std::move(inv_freq) : at::Tensor()),
        rope_scaling_(rope_scaling),
        out_weight_(std::move(out_weight)) {}

  int64_t layer_index() const override { return layer_; }
  int64_t num_heads() const override { return heads_; }
  int64_t num_kv_heads() const override { return kv_heads_; }
  int64_t head_dim() const override { return head_dim_; }
  at::Tensor query_states(const at::Tensor&) const override {
    PIKV_FAIL("layer {}: inside the cached_attention operator there are no hidden states; a press reads the "
              "queries the context carries (query_states)",
              layer_);
  }
  at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& positions) const override {
    return inv_freq_.defined() ? pikv::apply_rope(x, positions, inv_freq_, rope_scaling_) : x;
  }
  at::Tensor unapply_rope(const at::Tensor& x, const at::Tensor& positions) const override {
    return inv_freq_.defined() ? pikv::unapply_rope(x, positions, inv_freq_, rope_scaling_) : x;
  }
  at::Tensor inv_freq() const override { return inv_freq_; }
  at::Tensor output_weight() const override {
    PIKV_CHECK(out_weight_.defined(),
               "layer {}: this press needs the layer's output projection, which the graph did not pass to "
               "cached_attention (export with python/pikv_export, which passes o_proj's weight)",
               layer_);
    return out_weight_;
  }

 private:
  int64_t layer_, heads_, kv_heads_, head_dim_;
  at::Tensor inv_freq_;
  double rope_scaling_;
  at::Tensor out_weight_;
};

inline void check_operator_inputs(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& kc,
                                  const at::Tensor& vc, const at::Tensor& slots, const at::Tensor& positions,
                                  int64_t layer, int64_t num_layers) {
  check_rank(q, 4, "cached_attention query", "[B, H, T, d]");
  check_rank(k, 4, "cached_attention key", "[B, Hkv, T, d]");
  check_rank(kc, 4, "cached_attention key_cache", "[B, Hkv, C, d]");
  check_rank(slots, 3, "cached_attention slots", "[B, Hkv, C]");
  check_rank(positions, 2, "cached_attention positions", "[B, T]");
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), d = q.size(3);
  const int64_t Hkv = k.size(1), C = kc.size(2);
  PIKV_CHECK(layer >= 0 && layer < num_layers, "cached_attention: layer {} is not in [0, {})", layer, num_layers);
  PIKV_CHECK(k.size(0) == B && k.size(2) == T && k.size(3) == d && Hkv >= 1 && H % Hkv == 0 && v.sizes() == k.sizes(),
             "cached_attention layer {}: key {} / value {} do not fit query {} (same B, T, d; H a multiple of Hkv)", layer,
             describe_tensor(k), describe_tensor(v), describe_tensor(q));
  PIKV_CHECK(kc.size(0) == B && kc.size(1) == Hkv && kc.size(3) == d && vc.sizes() == kc.sizes() &&
                 slots.size(0) == B && slots.size(1) == Hkv && slots.size(2) == C,
             "cached_attention layer {}: the cache key_cache {} / value_cache {} / slots {} does not fit [B={}, Hkv={}, "
             "C, d={}]",
             layer, describe_tensor(kc), describe_tensor(vc), describe_tensor(slots), B, Hkv, d);
  PIKV_CHECK(slots.scalar_type() == at::kLong && positions.scalar_type() == at::kLong,
             "cached_attention layer {}: slots and positions must be int64, got {} and {}", layer,
             dtype_name(slots.scalar_type()), dtype_name(positions.scalar_type()));
  PIKV_CHECK(positions.size(0) == B && positions.size(1) == T,
             "cached_attention layer {}: positions must be [B, T] = [{}, {}], got {}", layer, B, T,
             describe_tensor(positions));
  PIKV_CHECK(kc.scalar_type() == k.scalar_type() && kc.device() == k.device() && q.device() == k.device() &&
                 slots.device() == k.device(),
             "cached_attention layer {}: the cache ({} on {}) must have the new keys' dtype and device ({} on {})", layer,
             dtype_name(kc.scalar_type()), kc.device().str(), dtype_name(k.scalar_type()), k.device().str());
}

inline AttentionParams operator_params(double scale, int64_t sliding_window, double softcap) {
  AttentionParams p;
  p.scale = scale;
  if (sliding_window > 0) p.sliding_window = sliding_window;
  if (softcap > 0) p.softcap = softcap;
  return p;
}

// The last error the operator raised on this thread (take_operator_error).
inline std::string& operator_error() {
  thread_local std::string message;
  return message;
}

// Without a ForwardScope: append at every head's stored count and attend over the buffers, no press.
inline at::Tensor unbound_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                    const at::Tensor& kc, const at::Tensor& vc, const at::Tensor& slots,
                                    const at::Tensor& positions, const AttentionParams& params, int64_t layer) {
  const int64_t B = k.size(0), Hkv = k.size(1), T = k.size(2), C = kc.size(2);
  at::Tensor counts = (slots >= 0).sum(-1);  // [B, Hkv]: kept tokens sit at the front of each head
  const auto [lo_t, hi_t] = at::aminmax(counts);
  const int64_t lo = lo_t.item<int64_t>(), hi = hi_t.item<int64_t>();
  PIKV_CHECK(hi + T <= C, "cached_attention layer {}: {} new tokens after the {} a head holds exceed the cache capacity {}",
             layer, T, hi, C);
  ::pikv::detail::write_fixed_tokens(kc, vc, slots, counts, lo, hi, k, v, positions.unsqueeze(1).expand({B, Hkv, T}));
  const int64_t m = hi + T;
  KVView view{kc.narrow(2, 0, m), vc.narrow(2, 0, m), slots.narrow(2, 0, m)};
  return attend(q, positions, view, params).output.contiguous();
}

}  // namespace detail

PIKV_INLINE const char* cached_attention_schema() {
  return "cached_attention(Tensor query, Tensor key, Tensor value, Tensor(a!) key_cache, Tensor(b!) value_cache, "
         "Tensor(c!) slots, Tensor positions, Tensor inv_freq, Tensor? out_weight, int layer, int num_layers, "
         "float scale, int sliding_window, float softcap, float rope_scaling) -> Tensor";
}

PIKV_INLINE at::Tensor cached_attention(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value,
                                        const at::Tensor& key_cache, const at::Tensor& value_cache,
                                        const at::Tensor& slots, const at::Tensor& positions,
                                        const at::Tensor& inv_freq, const std::optional<at::Tensor>& out_weight,
                                        int64_t layer, int64_t num_layers, double scale, int64_t sliding_window,
                                        double softcap, double rope_scaling) try {
  detail::check_operator_inputs(query, key, value, key_cache, value_cache, slots, positions, layer, num_layers);
  const AttentionParams params = detail::operator_params(scale, sliding_window, softcap);
  const ForwardBinding* b = current_forward();
  if (b == nullptr) {
    return detail::unbound_attention(query, key, value, key_cache, value_cache, slots, positions, params, layer);
  }
  KVCache& cache = *b->cache;
  PIKV_CHECK(cache.is_fixed_capacity() && cache.num_layers() == num_layers,
             "cached_attention layer {}: the ForwardScope's cache must be a fixed-capacity cache of {} layers (make it "
             "with the model's make_cache())",
             layer, num_layers);
  const KVCache::FixedBuffers& buf = cache.fixed_buffers(layer);
  PIKV_CHECK(buf.keys.data_ptr() == key_cache.data_ptr() && buf.values.data_ptr() == value_cache.data_ptr() &&
                 buf.slots.data_ptr() == slots.data_ptr(),
             "cached_attention layer {}: the graph's cache buffers are not those of the cache bound by the ForwardScope "
             "(bind the cache to the graph before running it)",
             layer);
  const int64_t T = key.size(2), offset = b->position_offset;
  // The graph's positions must continue the bound cache (free to check on the host; on a device only
  // with PIKV_DEBUG_CHECKS, which costs a synchronisation).
  if (positions.device().is_cpu() || ::pikv::detail::debug_checks()) {
    const at::Tensor expected = at::arange(offset, offset + T, positions.options()).expand(positions.sizes());
    PIKV_CHECK(at::equal(positions, expected),
               "cached_attention layer {}: positions {} do not continue the cache, whose next position is {}", layer,
               describe_tensor(positions), offset);
  }
  detail::OperatorLayerView view(layer, query.size(1), key.size(1), query.size(3), inv_freq, rope_scaling,
                                 out_weight.value_or(at::Tensor()));
  LayerAttention call;
  call.layer = &view;
  call.queries = query;
  call.keys = key;
  call.values = value;
  call.query_index = at::arange(offset, offset + T, positions.options());
  call.params = params;
  const Press* press = b->model->press();
  if (press != nullptr && press->requirements().hidden_states) {
    // Pre-RoPE queries for presses that need them (query statistics): the rotation inverted.
    call.query_states = view.inv_freq().defined() ? unapply_rope(query, positions, inv_freq, rope_scaling) : query;
  }
  // Contiguous, as the meta kernel promises: a compiled graph reads the result with those strides.
  return b->model->attention(call, cache).output.contiguous();
} catch (const std::exception& e) {
  // Kept for GraphModel: the graph runtime replaces this exception by its own (see take_operator_error).
  detail::operator_error() = e.what();
  throw;
}

PIKV_INLINE at::Tensor cached_attention_meta(const at::Tensor& query, const at::Tensor&, const at::Tensor&,
                                             const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                             const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                                             int64_t, int64_t, double, int64_t, double, double) {
  return at::empty_symint(query.sym_sizes(), query.options());
}

PIKV_INLINE std::string take_operator_error() {
  std::string message;
  message.swap(detail::operator_error());
  return message;
}

PIKV_INLINE bool operator_registered() {
  return c10::Dispatcher::singleton().findSchema({"pikv::cached_attention", ""}).has_value();
}

}  // namespace pikv::ops
