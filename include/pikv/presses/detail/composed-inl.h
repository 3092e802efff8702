#pragma once

#include <pikv/core/config.h>
#include <pikv/core/budget.h>
#include <pikv/core/detail/check.h>
#include <pikv/presses/composed.h>

#include <ATen/ATen.h>

namespace pikv {

PIKV_INLINE ComposedPress::ComposedPress(std::vector<std::shared_ptr<Press>> presses) : presses_(std::move(presses)) {
  PIKV_CHECK(!presses_.empty(), "ComposedPress needs at least one press, got an empty list");
  for (size_t i = 0; i < presses_.size(); ++i) {
    PIKV_CHECK(presses_[i] != nullptr, "ComposedPress: press {} is null", i);
    PIKV_CHECK(!presses_[i]->head_wise(),
               "ComposedPress cannot contain the head-wise press '{}' (position {}): the presses after it would "
               "have to score a ragged cache",
               presses_[i]->name(), i);
  }
}

PIKV_INLINE std::string ComposedPress::describe() const {
  std::vector<std::string> parts;
  for (const auto& p : presses_) parts.push_back(p->describe());
  return fmt::format("composed([{}])", fmt::join(parts, ", "));
}

PIKV_INLINE double ComposedPress::compression_ratio() const {
  std::vector<double> ratios;
  for (const auto& p : presses_) ratios.push_back(p->compression_ratio());
  return composed_ratio(ratios);
}

PIKV_INLINE PressRequirements ComposedPress::requirements() const {
  PressRequirements all;
  for (const auto& p : presses_) all |= p->requirements();
  return all;
}

PIKV_INLINE bool ComposedPress::should_compress(const AttentionContext& ctx) const {
  for (const auto& p : presses_)
    if (p->should_compress(ctx)) return true;
  return false;
}

PIKV_INLINE CompressedKV ComposedPress::compress(const AttentionContext& ctx) {
  ctx.validate();
  AttentionContext current = ctx;
  CompressedKV total;
  total.keys = ctx.keys;
  total.values = ctx.values;
  total.unchanged = true;
  for (const auto& p : presses_) {
    if (!p->should_compress(current)) continue;
    CompressedKV r = p->compress(current);
    PIKV_CHECK(!r.head_lengths, "ComposedPress: press '{}' returned head-wise budgets", p->name());
    if (r.unchanged) continue;
    // Positions compose: the second press indexes the first one's output.
    if (r.indices.defined()) total.indices = total.indices.defined() ? total.indices.gather(2, r.indices) : r.indices;
    total.keys = r.keys;
    total.values = r.values;
    total.unchanged = false;
    current.keys = r.keys;
    current.values = r.values;
    // The model's attention weights describe the uncompressed cache; a later press must not see them.
    current.attention_weights.reset();
  }
  return total;
}

PIKV_INLINE void ComposedPress::on_attach(const HookableModel& model) {
  for (const auto& p : presses_) p->on_attach(model);
}
PIKV_INLINE void ComposedPress::on_detach() {
  for (const auto& p : presses_) p->on_detach();
}
PIKV_INLINE void ComposedPress::on_prefill_begin() {
  for (const auto& p : presses_) p->on_prefill_begin();
}
PIKV_INLINE void ComposedPress::on_prefill_end() {
  for (const auto& p : presses_) p->on_prefill_end();
}
PIKV_INLINE void ComposedPress::on_decode_step() {
  for (const auto& p : presses_) p->on_decode_step();
}
PIKV_INLINE void ComposedPress::reset() {
  for (const auto& p : presses_) p->reset();
}

}  // namespace pikv
