#pragma once

#include <pikv/core/config.h>
#include <pikv/core/registry.h>
#include <pikv/presses/cur.h>
#include <pikv/presses/leverage.h>

#include <ATen/ATen.h>

#include <cmath>

namespace pikv {

PIKV_INLINE at::Tensor CURPress::score(const AttentionContext& ctx, double) const {
  at::Tensor keys = ctx.keys, values = ctx.values;
  if (options_.use_random_leverage()) {
    const int64_t r = 20;
    at::Tensor g = at::randn({keys.size(-1), r}, LeveragePress::layer_generator(options_.seed(), ctx.layer),
                             at::TensorOptions().dtype(at::kFloat)) /
                   std::sqrt(static_cast<double>(r));
    g = g.to(keys.device());
    keys = at::matmul(keys, g.to(keys.scalar_type()));
    values = at::matmul(values, g.to(values.scalar_type()));
  }
  at::Tensor k2 = keys.pow(2).sum(-1), v2 = values.pow(2).sum(-1);  // [B, Hkv, n]
  if (options_.use_local_approximation()) {
    const int64_t B = k2.size(0), H = k2.size(1), n = k2.size(2), w = options_.local_window_size();
    const int64_t pad = (w - n % w) % w;
    auto local = [&](const at::Tensor& x) {
      at::Tensor p = at::constant_pad_nd(x, {0, pad}).view({B, H, -1, w});
      return (p / p.sum(-1, true)).view({B, H, -1}).narrow(-1, 0, n);
    };
    k2 = local(k2);
    v2 = local(v2);
  }
  at::Tensor s;
  switch (options_.leverage_type()) {
    case LeverageType::key: s = k2; break;
    case LeverageType::value: s = v2; break;
    case LeverageType::kv_avg: s = (k2 + v2) / 2; break;
    case LeverageType::kv_product: s = k2 * v2; break;
  }
  s = s / s.sum(-1, true);
  const int64_t sinks = std::min(options_.num_sinks(), s.size(-1));
  if (sinks > 0) s.narrow(-1, 0, sinks).fill_(1.0);
  return s.to(at::kFloat);
}

PIKV_REGISTER_PRESS(CURPress, options_press<CURPress>("key and value leverage by squared norms, normalised in local "
                                                       "windows (CurDKV)"));

}  // namespace pikv
