#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/registry.h>
#include <pikv/core/tensor_checks.h>
#include <pikv/presses/key_rerotation.h>

#include <ATen/ATen.h>

namespace pikv {

PIKV_INLINE PressRequirements KeyRerotationPress::requirements() const {
  PressRequirements r = press_->requirements();
  r.layer_view = true;  // the layer's inverse frequencies
  return r;
}

PIKV_INLINE at::Tensor KeyRerotationPress::rotate(const at::Tensor& keys, const at::Tensor& delta, const at::Tensor& inv_freq) {
  check_rank(keys, 4, "keys", "[B, Hkv, k, d]");
  const int64_t half = inv_freq.size(0), rot = 2 * half;
  PIKV_CHECK(rot <= keys.size(3), "inv_freq has {} frequencies, too many for head_dim {}", half, keys.size(3));
  // Angles in float32 whatever the cache dtype (kvpress disables autocast for the same reason).
  at::Tensor freqs = delta.to(at::kFloat).unsqueeze(-1) * inv_freq.to(delta.device(), at::kFloat);  // [B, Hkv, k, half]
  at::Tensor emb = at::cat({freqs, freqs}, -1);
  at::Tensor cos = emb.cos().to(keys.scalar_type()), sin = emb.sin().to(keys.scalar_type());
  at::Tensor x = keys.narrow(-1, 0, rot);
  at::Tensor rotated_half = at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  at::Tensor out = x * cos + rotated_half * sin;
  if (rot == keys.size(3)) return out;
  return at::cat({out, keys.narrow(-1, rot, keys.size(3) - rot)}, -1);
}

PIKV_INLINE CompressedKV KeyRerotationPress::compress_wrapped(const AttentionContext& ctx, double ratio) {
  at::Tensor inv_freq = ctx.layer_view->inv_freq();
  PIKV_CHECK(inv_freq.defined(), "key_rerotation needs a model with rotary position embeddings; layer {} has none",
             ctx.layer);
  CompressedKV out = press_->compress_at(ctx, ratio);  // kept positions ascending
  const int64_t k = out.kept();
  at::Tensor slots = at::arange(k, out.indices.options()).expand_as(out.indices);
  out.keys = rotate(out.keys, slots - out.indices, inv_freq);
  out.positions_reset = true;
  return out;
}

PIKV_REGISTER_PRESS(KeyRerotationPress,
                    wrapper_press<KeyRerotationPress>("a scorer whose kept keys are re-rotated to contiguous positions"));

}  // namespace pikv
