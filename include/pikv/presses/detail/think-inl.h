#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/registry.h>
#include <pikv/presses/think.h>

#include <ATen/ATen.h>

namespace pikv {

PIKV_INLINE ThinKPress::ThinKPress(const ThinKOptions& options) : options_(options) { validate_options(options_); }

PIKV_INLINE std::string ThinKPress::describe() const { return name() + "(" + describe_options(options_) + ")"; }

PIKV_INLINE PressRequirements ThinKPress::requirements() const { return PressRequirements::queries(); }

PIKV_INLINE std::map<std::string, at::Tensor> ThinKPress::layer_record(const AttentionContext& ctx) const {
  return {{"pruned_channels", pruned_channels(ctx)}};
}

PIKV_INLINE at::Tensor ThinKPress::pruned_channels(const AttentionContext& ctx) const {
  check_context(ctx);
  const int64_t B = ctx.batch(), Hkv = ctx.kv_heads(), d = ctx.head_dim();
  const int64_t q_len = ctx.forward_length();
  const int64_t w = std::min(options_.window_size(), q_len);
  const int64_t G = ctx.layer_view->num_heads() / Hkv;
  at::Tensor q = rotated_queries(ctx, q_len - w, w);                        // [B, H, w, d]
  at::Tensor qn = q.pow(2).mean(2).view({B, Hkv, G, d}).mean(2);           // [B, Hkv, d]
  at::Tensor kn = ctx.keys.pow(2).mean(2);                                  // [B, Hkv, d]
  const auto pruned = static_cast<int64_t>(static_cast<double>(d) * options_.key_channel_compression_ratio());
  // Lowest qn * kn first; a stable sort makes ties go to the lower channel.
  at::Tensor order = std::get<1>((qn * kn).sort(/*stable=*/true, -1, /*descending=*/false));
  return std::get<0>(order.narrow(-1, 0, pruned).sort(-1));
}

PIKV_INLINE CompressedKV ThinKPress::compress(const AttentionContext& ctx) {
  CompressedKV out;
  out.values = ctx.values;
  if (options_.key_channel_compression_ratio() == 0.0) {
    ctx.validate();
    out.keys = ctx.keys;
    out.unchanged = true;
    return out;
  }
  at::Tensor channels = pruned_channels(ctx);  // [B, Hkv, p]
  at::Tensor keep = at::ones({ctx.batch(), ctx.kv_heads(), ctx.head_dim()}, ctx.keys.options());
  keep.scatter_(-1, channels, 0.0);
  out.keys = ctx.keys * keep.unsqueeze(2);  // a copy: the context's tensors stay untouched
  return out;
}

PIKV_REGISTER_PRESS(ThinKPress, options_press<ThinKPress>(
                                    "zero the least useful key channels (no tokens removed; reported ratio = kccr / 2)",
                                    PressKind::channels));

}  // namespace pikv
