#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/registry.h>
#include <pikv/presses/prefill_decoding.h>

namespace pikv {

PIKV_INLINE PrefillDecodingPress::PrefillDecodingPress(std::shared_ptr<Press> prefilling_press,
                                           std::shared_ptr<DecodingPress> decoding_press)
    : prefill_(std::move(prefilling_press)), decoding_(std::move(decoding_press)) {
  PIKV_CHECK(prefill_ || decoding_, "prefill_decoding needs a prefilling press, a decoding press or both");
  PIKV_CHECK(!(prefill_ && decoding_ && prefill_->head_wise()),
             "prefill_decoding: a head-wise prefilling press ('{}') leaves a ragged cache that a decoding press "
             "cannot compress again",
             prefill_ ? prefill_->name() : "");
}

PIKV_INLINE std::string PrefillDecodingPress::describe() const {
  return fmt::format("prefill_decoding(prefilling_press={}, decoding_press={})",
                     prefill_ ? prefill_->describe() : "none", decoding_ ? decoding_->describe() : "none");
}

PIKV_INLINE double PrefillDecodingPress::compression_ratio() const { return prefill_ ? prefill_->compression_ratio() : 0.0; }

PIKV_INLINE PressRequirements PrefillDecodingPress::requirements() const {
  PressRequirements r;
  if (prefill_) r |= prefill_->requirements();
  if (decoding_) r |= decoding_->requirements();
  return r;
}

PIKV_INLINE std::map<std::string, at::Tensor> PrefillDecodingPress::layer_record(const AttentionContext& ctx) const {
  if (ctx.is_prefill) return prefill_ ? prefill_->layer_record(ctx) : std::map<std::string, at::Tensor>{};
  return decoding_ ? decoding_->layer_record(ctx) : std::map<std::string, at::Tensor>{};
}

PIKV_INLINE const ScorerPress* PrefillDecodingPress::scorer() const { return prefill_ ? prefill_->scorer() : nullptr; }

PIKV_INLINE const ScorerPress* PrefillDecodingPress::scorer_for(const AttentionContext& ctx) const {
  if (ctx.is_prefill) return prefill_ ? prefill_->scorer_for(ctx) : nullptr;
  return decoding_ ? decoding_->scorer_for(ctx) : nullptr;
}

PIKV_INLINE bool PrefillDecodingPress::should_compress(const AttentionContext& ctx) const {
  if (ctx.is_prefill) return prefill_ && prefill_->should_compress(ctx);
  return decoding_ && decoding_->should_compress(ctx);
}

PIKV_INLINE CompressedKV PrefillDecodingPress::compress(const AttentionContext& ctx) {
  return ctx.is_prefill ? prefill_->compress(ctx) : decoding_->compress(ctx);
}

PIKV_INLINE void PrefillDecodingPress::on_attach(const HookableModel& model) {
  if (prefill_) prefill_->on_attach(model);
  if (decoding_) decoding_->on_attach(model);
}

PIKV_INLINE void PrefillDecodingPress::on_detach() {
  if (prefill_) prefill_->on_detach();
  if (decoding_) decoding_->on_detach();
}

PIKV_INLINE void PrefillDecodingPress::on_prefill_begin() {
  if (prefill_) prefill_->on_prefill_begin();
  if (decoding_) decoding_->reset();  // a new request
}

PIKV_INLINE void PrefillDecodingPress::on_prefill_end() {
  if (prefill_) prefill_->on_prefill_end();
}

PIKV_INLINE void PrefillDecodingPress::reset() {
  if (prefill_) prefill_->reset();
  if (decoding_) decoding_->reset();
}

namespace detail {

inline PressFactory prefill_decoding_factory() {
  PressInfo info{PrefillDecodingPress::kName, "one press for the prefill, a decoding press afterwards", PressKind::decoding,
                 {{"prefilling_press", "text", "", "press used during the prefill (optional)"},
                  {"prefilling.KEY", "", "", "an option of the prefilling press"},
                  {"decoding_press", "text", "", "decoding or compression_ratio_decoding (optional)"},
                  {"decoding.KEY", "", "", "an option of the decoding press"}}};
  return {info, [](OptionReader& r) -> std::shared_ptr<Press> {
            std::shared_ptr<Press> prefill;
            std::shared_ptr<DecodingPress> decoding;
            if (const std::string* p = r.raw("prefilling_press")) prefill = make_press(*p, r.with_prefix("prefilling."));
            if (const std::string* d = r.raw("decoding_press")) {
              decoding = std::dynamic_pointer_cast<DecodingPress>(make_press(*d, r.with_prefix("decoding.")));
              PIKV_CHECK(decoding != nullptr, "prefill_decoding: decoding_press must be a decoding press, got '{}'", *d);
            }
            return std::make_shared<PrefillDecodingPress>(prefill, decoding);
          }};
}

}  // namespace detail

PIKV_REGISTER_PRESS(PrefillDecodingPress, detail::prefill_decoding_factory());

}  // namespace pikv
