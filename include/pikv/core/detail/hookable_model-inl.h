#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/hookable_model.h>
#include <pikv/core/detail/logging.h>
#include <pikv/core/tensor_checks.h>

#include <ATen/ATen.h>

#include <atomic>
#include <chrono>
#include <exception>
#include <unordered_map>

namespace pikv {
namespace detail {

PIKV_INLINE int64_t stored_entries(const KVCache& cache, int64_t layer) {
  return cache.head_lengths(layer).sum().item<int64_t>();  // CPU tensor: no device sync
}

}  // namespace detail

PIKV_INLINE bool apply_press(Press& press, const AttentionContext& ctx, KVCache& cache, CompressionStats* stats) {
  if (!press.should_compress(ctx)) return false;
  PIKV_CHECK(ctx.keys.defined() && ctx.keys.dim() == 4 && ctx.keys.size(2) == cache.physical_length(ctx.layer),
             "apply_press: the context of layer {} must carry the layer's whole cache ({} tokens), got keys {}",
             ctx.layer, cache.physical_length(ctx.layer), describe_tensor(ctx.keys));
  LayerCompressionStats s;
  s.layer = ctx.layer;
  s.tokens_before = cache.physical_length(ctx.layer);
  s.entries_before = detail::stored_entries(cache, ctx.layer);
  s.bytes_before = cache.bytes_in_use(ctx.layer);
  const auto t0 = std::chrono::steady_clock::now();
  CompressedKV result = press.compress(ctx);
  if (result.skipped) return false;
  cache.apply(ctx.layer, result);
  const auto t1 = std::chrono::steady_clock::now();
  s.compress_ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
  s.tokens_after = cache.physical_length(ctx.layer);
  s.entries_after = detail::stored_entries(cache, ctx.layer);
  s.bytes_after = cache.bytes_in_use(ctx.layer);
  log::debug("{} {}", press.name(), to_string(s));
  if (stats != nullptr) {
    if (stats->press.empty()) stats->press = press.describe();
    stats->layers.push_back(s);
  }
  return true;
}

namespace detail {
inline std::atomic<uint64_t>& next_model_id() {
  static std::atomic<uint64_t> next{1};
  return next;
}
}  // namespace detail

PIKV_INLINE HookableModel::HookableModel() : id_(detail::next_model_id().fetch_add(1)) {}

PIKV_INLINE HookableModel::Slot& HookableModel::slot() const {
  // Keyed by the model's id, not its address: a model allocated where a destroyed one lived starts
  // empty. Slots of destroyed models stay until the thread ends (one small entry per model used).
  thread_local std::unordered_map<uint64_t, Slot> slots;
  return slots[id_];
}

PIKV_INLINE Press* HookableModel::press() const { return slot().press; }

PIKV_INLINE const CompressionStats& HookableModel::compression_stats() const { return slot().stats; }

PIKV_INLINE Press* HookableModel::exchange_press(Press* press) {
  if (press != nullptr) {
    press->claim_for_this_thread();  // throws when another thread holds this instance
    try {
      press->on_attach(*this);  // may throw: then nothing changed
    } catch (...) {
      press->release_from_this_thread();
      throw;
    }
  }
  Slot& s = slot();
  s.warned_append = false;
  Press* previous = s.press;
  if (previous != nullptr && previous != press) previous->on_detach();
  if (previous != nullptr) previous->release_from_this_thread();
  s.press = press;
  return previous;
}

PIKV_INLINE bool HookableModel::run_press(const AttentionContext& ctx, KVCache& cache) {
  Slot& s = slot();
  if (s.press == nullptr) return false;
  return apply_press(*s.press, ctx, cache, &s.stats);
}

PIKV_INLINE bool HookableModel::run_press(const AttentionLayerView& layer, const at::Tensor& hidden_states, const at::Tensor& keys,
                              const at::Tensor& values, const at::Tensor& weights, bool is_prefill,
                              int64_t position_offset, KVCache& cache, const at::Tensor& query_states,
                              const at::Tensor& key_positions) {
  if (press() == nullptr) return false;
  AttentionContext ctx;
  ctx.layer = layer.layer_index();
  ctx.num_layers = num_layers();
  ctx.hidden_states = hidden_states;
  ctx.keys = keys;
  ctx.values = values;
  if (weights.defined()) ctx.attention_weights = weights;
  ctx.is_prefill = is_prefill;
  ctx.position_offset = position_offset;
  ctx.layer_view = &layer;
  ctx.query_states = query_states;
  ctx.key_positions = key_positions;
  return run_press(ctx, cache);
}

PIKV_INLINE LayerAttention LayerAttention::rotary(const AttentionLayerView& layer, const at::Tensor& hidden_states,
                                                  const at::Tensor& query_states, const at::Tensor& keys,
                                                  const at::Tensor& values, const at::Tensor& positions,
                                                  const at::Tensor& query_index) {
  LayerAttention call;
  call.layer = &layer;
  call.hidden_states = hidden_states;
  call.query_states = query_states;
  call.queries = layer.apply_rope(query_states, positions);
  call.keys = layer.apply_rope(keys, positions);
  call.values = values;
  call.query_index = query_index;
  return call;
}

PIKV_INLINE AttentionResult HookableModel::attention(const LayerAttention& call, KVCache& cache) {
  PIKV_CHECK(call.layer != nullptr, "HookableModel::attention needs the layer's AttentionLayerView");
  const ForwardBinding* forward = current_forward();
  PIKV_CHECK(forward != nullptr && forward->model == this && forward->cache == &cache,
             "HookableModel::attention of layer {} runs outside a forward of this model on this cache: open "
             "`pikv::ForwardScope scope(model, cache);` around the forward (it knows whether the forward is a "
             "prefill and where it starts, and runs the press's lifecycle)",
             call.layer->layer_index());
  const bool is_prefill = forward->is_prefill;
  const int64_t position_offset = forward->position_offset;
  const int64_t l = call.layer->layer_index();
  if (kv_dtype_ && call.keys.scalar_type() != *kv_dtype_) {
    cache.append(l, call.keys.to(*kv_dtype_), call.values.to(*kv_dtype_));
  } else {
    cache.append(l, call.keys, call.values);
  }
  Press* const installed = press();
  const bool pressed = call.pressable && installed != nullptr && !forward->press_waits;
  AttentionParams params = call.params;
  if (pressed && installed->requirements().attention_weights) params.need_weights = true;
  // The one read path: attend() takes the layer's view and reads it as this call needs (a head-wise
  // layer's packed heads in place for one decoding token, its padded copy otherwise).
  AttentionResult r = attend(call.queries, call.query_index, cache.view(l), params, call.key_padding);
  if (call.params.sliding_window && !call.pressable && is_prefill) {
    // A sliding-window layer that presses never see (Gemma 3's local layers): after the prefill no later
    // query looks further back than the window, so only the last `window` tokens are kept, as
    // transformers' sliding-window cache does. Memory really freed, outputs unchanged.
    const int64_t n = cache.physical_length(l), window = *call.params.sliding_window;
    if (n > window && !cache.is_fixed_capacity() && !cache.is_ragged(l)) {
      const at::Tensor& keys = cache.keys(l);
      const at::Tensor& values = cache.values(l);
      CompressedKV last;
      last.keys = keys.narrow(2, n - window, window).clone(at::MemoryFormat::Contiguous);  // not a view:
      last.values = values.narrow(2, n - window, window).clone(at::MemoryFormat::Contiguous);  // frees the rest
      last.indices = at::arange(n - window, n, keys.options().dtype(at::kLong))
                         .view({1, 1, window})
                         .expand({keys.size(0), keys.size(1), window})
                         .contiguous();
      cache.apply(l, last);
    }
  }
  if (pressed) {
    // Whether the press acts on this forward is known before its inputs are gathered (the padded copy
    // of a head-wise layer costs more than a decoding step's attention).
    AttentionContext probe;
    probe.layer = l;
    probe.num_layers = num_layers();
    probe.hidden_states = call.hidden_states;
    probe.query_states = call.query_states;
    probe.is_prefill = is_prefill;
    probe.position_offset = position_offset;
    probe.layer_view = call.layer;
    if (!installed->should_compress(probe)) {
      Slot& s = slot();
      const int64_t tokens = call.queries.size(2);  // the probe may carry no tensor to count them by
      if (!is_prefill && tokens > 1 && !installed->acts_during_decoding() && !s.warned_append) {
        // Looks like a prefill given in pieces without saying so; a question after the context looks
        // the same, hence a note once per installation rather than an error.
        s.warned_append = true;
        log::warn("{} compressed the prefill; this forward's {} tokens are appended uncompressed. A context "
                  "prefilled in chunks needs ForwardOptions().prefill_continues(true) on every chunk but the last "
                  "(or ForwardScope(model, cache, true)), so that the press compresses the whole context",
                  installed->name(), tokens);
      }
      return r;
    }
    const KVCache::Padded kv = cache.padded(l);
    // Presses that act while decoding see where each stored entry sits (compressed layers only).
    at::Tensor positions;
    if (!is_prefill && installed->acts_during_decoding() && !cache.is_contiguous_prefix(l)) {
      positions = cache.token_positions(l).to(kv.keys.device());
    }
    // Presses score in the compute dtype: a narrower cache is widened for them (their result is
    // stored back in the cache's dtype by KVCache::apply).
    const bool widen = kv.keys.scalar_type() != call.keys.scalar_type();
    run_press(*call.layer, call.hidden_states, widen ? kv.keys.to(call.keys.scalar_type()) : kv.keys,
              widen ? kv.values.to(call.keys.scalar_type()) : kv.values, r.weights, is_prefill, position_offset, cache,
              call.query_states, positions);
  }
  return r;
}

PIKV_INLINE void HookableModel::set_kv_dtype(std::optional<at::ScalarType> dtype) {
  PIKV_CHECK(!dtype || *dtype == at::kFloat || *dtype == at::kHalf || *dtype == at::kBFloat16 || *dtype == at::kDouble,
             "KV cache dtype must be float32, float16, bfloat16 or float64, got {}", dtype_name(*dtype));
  kv_dtype_ = dtype;
}

PIKV_INLINE void HookableModel::begin_prefill() {
  Slot& s = slot();
  s.stats.clear();
  if (s.press != nullptr) s.press->on_prefill_begin();
}

PIKV_INLINE void HookableModel::end_prefill() {
  if (Press* p = press()) p->on_prefill_end();
}

PIKV_INLINE void HookableModel::decode_step() {
  if (Press* p = press()) p->on_decode_step();
}

namespace detail {
inline const ForwardBinding*& forward_slot() {
  thread_local const ForwardBinding* slot = nullptr;
  return slot;
}
}  // namespace detail

PIKV_INLINE const ForwardBinding* current_forward() { return detail::forward_slot(); }

PIKV_INLINE ForwardScope::ForwardScope(HookableModel& model, KVCache& cache, bool prefill_continues)
    : previous_(detail::forward_slot()), exceptions_(std::uncaught_exceptions()) {
  PIKV_CHECK(cache.num_layers() == model.num_layers(), "ForwardScope: the cache has {} layers but the model has {}",
             cache.num_layers(), model.num_layers());
  const bool first = cache.empty(0);
  binding_.model = &model;
  binding_.cache = &cache;
  binding_.is_prefill = first || cache.prefill_open_;
  binding_.position_offset = cache.logical_length(0);
  binding_.press_waits = prefill_continues;
  PIKV_CHECK(!prefill_continues || binding_.is_prefill,
             "ForwardOptions::prefill_continues: the prefill of this cache ended with an earlier forward ({} tokens "
             "cached); a chunk can continue only a prefill whose earlier chunks all carried the flag",
             binding_.position_offset);
  cache.prefill_open_ = prefill_continues;
  if (first) model.begin_prefill();
  detail::forward_slot() = &binding_;
}

PIKV_INLINE ForwardScope::~ForwardScope() {
  detail::forward_slot() = previous_;
  if (std::uncaught_exceptions() > exceptions_) return;  // the forward failed: no lifecycle step
  try {
    if (binding_.is_prefill) {
      if (!binding_.press_waits) binding_.model->end_prefill();
    } else {
      binding_.model->decode_step();
    }
  } catch (const std::exception& e) {
    log::error("ForwardScope: the press's end-of-forward hook failed: {}", e.what());
  }
}

PIKV_INLINE PressGuard::PressGuard(HookableModel& model, Press& press)
    : model_(model), installed_(&press), previous_(model.exchange_press(&press)) {
  // Held for the guard's whole scope, also while a nested guard has replaced it on the model.
  press.claim_for_this_thread();
}

PIKV_INLINE PressGuard::~PressGuard() {
  if (model_.press() != installed_) {
    // Guards are scoped, so this means someone swapped presses by hand inside our scope.
    log::warn("PressGuard: the model's press changed inside the guard's scope; restoring the press before it");
  }
  try {
    (void)model_.exchange_press(previous_);  // returns this guard's press
  } catch (const std::exception& e) {
    // A destructor must not throw; the previous press accepted this model before, so this is unexpected.
    log::error("PressGuard: restoring the previous press failed: {}", e.what());
  }
  installed_->release_from_this_thread();
}

}  // namespace pikv
