// Presses that compress during decoding: Decoding, CompressionRatioDecoding, PrefillDecoding.
#include <pikv/core/budget.h>
#include <pikv/core/error.h>
#include <pikv/core/log.h>
#include <pikv/presses/decoding.h>

#include <ATen/ATen.h>

#include <cmath>

namespace pikv {

DecodingPress::DecodingPress(std::shared_ptr<ScorerPress> base, DecodingOptions options)
    : base_(std::move(base)), options_(options) {
  PIKV_CHECK(base_ != nullptr, "decoding needs a base scorer press, got none");
  PIKV_CHECK(options.compression_interval >= 1, "DecodingOptions.compression_interval must be >= 1, got {}",
             options.compression_interval);
  PIKV_CHECK(options.target_size >= 1, "DecodingOptions.target_size must be >= 1, got {}", options.target_size);
  PIKV_CHECK(options.hidden_states_buffer_size >= 0, "DecodingOptions.hidden_states_buffer_size must be >= 0, got {}",
             options.hidden_states_buffer_size);
  if (base_->compression_ratio() != 0.0) {
    log::warn("decoding: the base press's compression_ratio ({}) is replaced by the ratio that reaches the target",
              base_->compression_ratio());
  }
}

std::string DecodingPress::describe() const {
  return fmt::format("decoding(base_press={}, compression_interval={}, target_size={}, hidden_states_buffer_size={})",
                     base_->describe(), options_.compression_interval, options_.target_size,
                     options_.hidden_states_buffer_size);
}

double DecodingPress::target_ratio(int64_t n, int64_t target) {
  if (n <= target) return 0.0;
  // kvpress's search, reproduced step for step so both pick the same ratio.
  double ratio = 1.0 - static_cast<double>(target) / static_cast<double>(n);
  double low = 0.0, high = 1.0;
  for (int i = 0; i < 20; ++i) {
    const int64_t kept = n_kept(n, ratio);
    if (kept == target) break;
    if (kept > target) {
      low = ratio;
      ratio = (ratio + high) / 2;
    } else {
      high = ratio;
      ratio = (low + ratio) / 2;
    }
  }
  if (n_kept(n, ratio) != target) {
    log::warn("decoding: no ratio keeps exactly {} of {} tokens; ratio {} keeps {}", target, n, ratio, n_kept(n, ratio));
  }
  return ratio;
}

void DecodingPress::reset() {
  buffers_.clear();
  steps_.clear();
  last_ratio_ = 0.0;
}

CompressedKV DecodingPress::compress(const AttentionContext& ctx) {
  check_context(ctx);
  PIKV_CHECK(ctx.hidden_states.defined(), "decoding buffers the hidden states of decoding forwards; layer {} has none",
             ctx.layer);
  std::vector<at::Tensor>& buffer = buffers_[ctx.layer];
  buffer.push_back(ctx.hidden_states.detach().clone());
  const int64_t steps = ++steps_[ctx.layer];
  const int64_t q = ctx.hidden_states.size(1);
  const int64_t target_tokens = target(ctx);
  CompressedKV out;
  if (steps >= options_.compression_interval || q >= target_tokens) {
    AttentionContext sub = ctx;
    sub.hidden_states = at::cat(buffer, 1);  // the buffered forwards: the cache's most recent tokens
    sub.query_states = at::Tensor();
    sub.position_offset = ctx.position_offset + q - sub.hidden_states.size(1);
    if (sub.attention_weights) sub.attention_weights.reset();
    const double ratio = target_ratio(ctx.length(), target_tokens);
    last_ratio_ = ratio;
    log::debug("decoding: layer {} compresses {} tokens to {} (ratio {})", ctx.layer, ctx.length(), target_tokens, ratio);
    out = base_->compress_at(sub, ratio);
    steps_[ctx.layer] = 0;
    buffer.clear();
  } else {
    out.keys = ctx.keys;
    out.values = ctx.values;
    out.skipped = true;
  }
  const auto keep = static_cast<size_t>(options_.hidden_states_buffer_size);
  if (buffer.size() > keep) buffer.erase(buffer.begin(), buffer.end() - static_cast<std::ptrdiff_t>(keep));
  return out;
}

CompressionRatioDecodingPress::CompressionRatioDecodingPress(std::shared_ptr<ScorerPress> base,
                                                             double target_compression_ratio, DecodingOptions options)
    : DecodingPress(std::move(base), options), ratio_(target_compression_ratio) {
  check_compression_ratio(target_compression_ratio, "compression_ratio_decoding target_compression_ratio");
}

std::string CompressionRatioDecodingPress::describe() const {
  return fmt::format("compression_ratio_decoding(target_compression_ratio={}, {})", ratio_, DecodingPress::describe());
}

int64_t CompressionRatioDecodingPress::target(const AttentionContext& ctx) const {
  const int64_t seen = ctx.position_offset + ctx.hidden_states.size(1);  // last position + 1
  return std::max<int64_t>(1, n_kept(seen, ratio_));
}

// ---- PrefillDecoding ----

PrefillDecodingPress::PrefillDecodingPress(std::shared_ptr<Press> prefilling_press,
                                           std::shared_ptr<DecodingPress> decoding_press)
    : prefill_(std::move(prefilling_press)), decoding_(std::move(decoding_press)) {
  PIKV_CHECK(prefill_ || decoding_, "prefill_decoding needs a prefilling press, a decoding press or both");
  PIKV_CHECK(!(prefill_ && decoding_ && prefill_->head_wise()),
             "prefill_decoding: a head-wise prefilling press ('{}') leaves a ragged cache that a decoding press "
             "cannot compress again",
             prefill_ ? prefill_->name() : "");
}

std::string PrefillDecodingPress::describe() const {
  return fmt::format("prefill_decoding(prefilling_press={}, decoding_press={})",
                     prefill_ ? prefill_->describe() : "none", decoding_ ? decoding_->describe() : "none");
}

double PrefillDecodingPress::compression_ratio() const { return prefill_ ? prefill_->compression_ratio() : 0.0; }

PressRequirements PrefillDecodingPress::requirements() const {
  PressRequirements r;
  for (const Press* p : {static_cast<const Press*>(prefill_.get()), static_cast<const Press*>(decoding_.get())}) {
    if (p == nullptr) continue;
    const PressRequirements q = p->requirements();
    r.hidden_states |= q.hidden_states;
    r.layer_view |= q.layer_view;
    r.attention_weights |= q.attention_weights;
  }
  return r;
}

const ScorerPress* PrefillDecodingPress::scorer() const { return prefill_ ? prefill_->scorer() : nullptr; }

const ScorerPress* PrefillDecodingPress::scorer_for(const AttentionContext& ctx) const {
  if (ctx.is_prefill) return prefill_ ? prefill_->scorer_for(ctx) : nullptr;
  return decoding_ ? decoding_->scorer_for(ctx) : nullptr;
}

bool PrefillDecodingPress::should_compress(const AttentionContext& ctx) const {
  if (ctx.is_prefill) return prefill_ && prefill_->should_compress(ctx);
  return decoding_ && decoding_->should_compress(ctx);
}

CompressedKV PrefillDecodingPress::compress(const AttentionContext& ctx) {
  return ctx.is_prefill ? prefill_->compress(ctx) : decoding_->compress(ctx);
}

void PrefillDecodingPress::on_attach(const HookableModel& model) {
  if (prefill_) prefill_->on_attach(model);
  if (decoding_) decoding_->on_attach(model);
}

void PrefillDecodingPress::on_detach() {
  if (prefill_) prefill_->on_detach();
  if (decoding_) decoding_->on_detach();
}

void PrefillDecodingPress::on_prefill_begin() {
  if (prefill_) prefill_->on_prefill_begin();
  if (decoding_) decoding_->reset();  // a new request
}

void PrefillDecodingPress::on_prefill_end() {
  if (prefill_) prefill_->on_prefill_end();
}

void PrefillDecodingPress::reset() {
  if (prefill_) prefill_->reset();
  if (decoding_) decoding_->reset();
}

}  // namespace pikv
