#include <pikv/core/error.h>
#include <pikv/core/hookable_model.h>
#include <pikv/core/log.h>
#include <pikv/core/tensor_checks.h>

#include <ATen/ATen.h>

#include <chrono>

namespace pikv {
namespace {

int64_t stored_entries(const KVCache& cache, int64_t layer) {
  return cache.head_lengths(layer).sum().item<int64_t>();  // CPU tensor: no device sync
}

}  // namespace

bool apply_press(Press& press, const AttentionContext& ctx, KVCache& cache, CompressionStats* stats) {
  if (!press.should_compress(ctx)) return false;
  PIKV_CHECK(!cache.is_ragged(ctx.layer) && ctx.keys.defined() && ctx.keys.dim() == 4 &&
                 ctx.keys.size(2) == cache.physical_length(ctx.layer),
             "apply_press: the context of layer {} must carry the layer's whole cache ({} tokens), got keys {}",
             ctx.layer, cache.physical_length(ctx.layer), describe_tensor(ctx.keys));
  LayerCompressionStats s;
  s.layer = ctx.layer;
  s.tokens_before = cache.physical_length(ctx.layer);
  s.entries_before = stored_entries(cache, ctx.layer);
  s.bytes_before = cache.bytes(ctx.layer);
  const auto t0 = std::chrono::steady_clock::now();
  CompressedKV result = press.compress(ctx);
  if (result.skipped) return false;
  cache.apply(ctx.layer, result);
  const auto t1 = std::chrono::steady_clock::now();
  s.compress_ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
  s.tokens_after = cache.physical_length(ctx.layer);
  s.entries_after = stored_entries(cache, ctx.layer);
  s.bytes_after = cache.bytes(ctx.layer);
  log::debug("{} {}", press.name(), s);
  if (stats != nullptr) {
    if (stats->press.empty()) stats->press = press.describe();
    stats->layers.push_back(s);
  }
  return true;
}

Press* HookableModel::exchange_press(Press* press) {
  if (press != nullptr) press->on_attach(*this);  // may throw: then nothing changed
  Press* previous = press_;
  if (previous != nullptr && previous != press) previous->on_detach();
  press_ = press;
  return previous;
}

bool HookableModel::run_press(const AttentionContext& ctx, KVCache& cache) {
  if (press_ == nullptr) return false;
  return apply_press(*press_, ctx, cache, &stats_);
}

bool HookableModel::run_press(const AttentionLayerView& layer, const at::Tensor& hidden_states, const at::Tensor& keys,
                              const at::Tensor& values, const at::Tensor& weights, bool is_prefill,
                              int64_t position_offset, KVCache& cache, const at::Tensor& query_states) {
  if (press_ == nullptr) return false;
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
  return run_press(ctx, cache);
}

void HookableModel::begin_prefill() {
  stats_.clear();
  if (press_ != nullptr) press_->on_prefill_begin();
}

void HookableModel::end_prefill() {
  if (press_ != nullptr) press_->on_prefill_end();
}

void HookableModel::decode_step() {
  if (press_ != nullptr) press_->on_decode_step();
}

PressGuard::PressGuard(HookableModel& model, Press& press)
    : model_(model), installed_(&press), previous_(model.exchange_press(&press)) {}

PressGuard::~PressGuard() {
  if (model_.press() != installed_) {
    // Guards are scoped, so this means someone swapped presses by hand inside our scope.
    log::warn("PressGuard: the model's press changed inside the guard's scope; restoring the press before it");
  }
  try {
    model_.exchange_press(previous_);
  } catch (const std::exception& e) {
    // A destructor must not throw; the previous press accepted this model before, so this is unexpected.
    log::error("PressGuard: restoring the previous press failed: {}", e.what());
  }
}

}  // namespace pikv
