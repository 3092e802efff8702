#pragma once

#include <pikv/core/budget.h>
#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/registry.h>
#include <pikv/presses/finch.h>
#include <pikv/presses/key_rerotation.h>
#include <pikv/presses/snapkv.h>

#include <ATen/ATen.h>

namespace pikv {

PIKV_INLINE PressRequirements FinchPress::requirements() const { return PressRequirements::queries(); }

PIKV_INLINE at::Tensor FinchPress::score(const AttentionContext& ctx, double) const {
  const int64_t n = ctx.length(), w = window_;
  PIKV_CHECK(w > 0, "finch selects for a question: prefill the context followed by the question and call "
                    "set_question_tokens (pikv::Pipeline does; pikv generate --press finch)");
  PIKV_CHECK(w < n && ctx.forward_length() == n,
             "finch: layer {} has {} question tokens in a prefill of {} (it needs a context before the question)",
             ctx.layer, w, n);
  const int64_t B = ctx.batch(), Hkv = ctx.kv_heads();
  at::Tensor a = SnapKVPress::window_attention_full(ctx, w).narrow(-1, 0, n - w);  // [B, H, w, n - w]
  if (options_.normalize_scores()) {
    a = a * at::arange(n - w, n, a.options()).view({1, 1, w, 1});  // keys each question query could see
  }
  at::Tensor s = a.mean(-2).view({B, Hkv, -1, n - w}).mean(2);  // [B, Hkv, n - w]
  return at::constant_pad_nd(s, {0, w}, s.max().item<double>() + 1).to(at::kFloat);
}

PIKV_INLINE CompressedKV FinchPress::compress(const AttentionContext& ctx) {
  const double ratio = compression_ratio();
  if (ratio == 0.0) return compress_at(ctx, 0.0);
  check_context(ctx);
  const at::Tensor s = score_for_selection(ctx, ratio);
  const int64_t n = ctx.length();
  at::Tensor kept;
  if (!options_.chunk_length()) {
    kept = top_k_positions(s, n_kept(n, ratio));
  } else {
    const int64_t c = *options_.chunk_length();
    PIKV_CHECK(static_cast<double>(c) > static_cast<double>(window_) / (1.0 - ratio),
               "finch: chunk_length {} must exceed question tokens / (1 - ratio) = {:.1f}", c,
               static_cast<double>(window_) / (1.0 - ratio));
    std::vector<at::Tensor> parts;
    for (int64_t i = 0; i < n; i += c) {
      const int64_t len = std::min(c, n - i);
      const int64_t k = std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(len) * (1.0 - ratio)));
      parts.push_back(top_k_positions(s.narrow(-1, i, len), k) + i);
    }
    kept = at::cat(parts, -1);
  }
  observe_selection(ctx, ratio, kept);
  CompressedKV out = keep_positions(ctx.keys, ctx.values, kept);
  if (options_.rerotate_keys()) {
    const at::Tensor inv_freq = ctx.layer_view->inv_freq();
    PIKV_CHECK(inv_freq.defined(), "finch: rerotate_keys needs rotary position embeddings; layer {} has none",
               ctx.layer);
    const at::Tensor slots = at::arange(out.kept(), out.indices.options()).expand_as(out.indices);
    out.keys = KeyRerotationPress::rotate(out.keys, slots - (out.indices + ctx.position_offset), inv_freq);
    out.positions_reset = true;
  }
  return out;
}

PIKV_REGISTER_PRESS(FinchPress, options_press<FinchPress>("question-guided SnapKV: the question's attention over the "
                                                          "context, keys re-rotated (needs the question)"));

}  // namespace pikv
