#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/registry.h>
#include <pikv/presses/leverage.h>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

namespace pikv {

PIKV_INLINE PressRequirements LeveragePress::requirements() const {
  PressRequirements r;
  r.layer_view = true;  // the layer's RoPE, to rotate the cached keys back
  return r;
}

PIKV_INLINE std::optional<at::Generator> LeveragePress::layer_generator(const std::optional<uint64_t>& seed,
                                                                         int64_t layer) {
  if (!seed) return std::nullopt;
  return at::detail::createCPUGenerator(*seed + static_cast<uint64_t>(layer));
}

PIKV_INLINE at::Tensor LeveragePress::leverage_scores(const at::Tensor& keys, int64_t k,
                                                       const std::optional<at::Generator>& generator) {
  const int64_t B = keys.size(0), H = keys.size(1), d = keys.size(3);
  // Drawn on the CPU and moved (a seed means one sketch on every device), in the keys' dtype.
  at::Tensor phi = at::randn({B, H, d, k}, generator, keys.options().device(at::kCPU)).to(keys.device()) *
                   (1.0 / std::sqrt(static_cast<double>(k)));
  at::Tensor x = at::matmul(keys - keys.mean(-2, true), phi).to(at::kFloat);  // [B, H, S, k]
  at::Tensor xt = x.transpose(-2, -1);
  at::Tensor g = at::matmul(xt, x);
  g = 0.5 * (g + g.transpose(-2, -1));
  // Cholesky with adaptive jitter: a sketch wider than the keys' rank leaves g singular.
  const at::Tensor eye = at::eye(k, g.options());
  double jitter = 1e-2;
  at::Tensor l;
  for (int attempt = 0;; ++attempt) {
    PIKV_CHECK(attempt < 5, "leverage: the Cholesky factorisation of the sketched keys failed after 5 tries "
               "(non-finite keys?)");
    auto [factor, info] = at::linalg_cholesky_ex(g + jitter * eye, /*upper=*/false);
    if ((info == 0).all().item<bool>()) {
      l = factor;
      break;
    }
    jitter = std::max(1e-8, jitter == 0.0 ? 1e-2 : 10.0 * jitter);
  }
  at::Tensor solved = at::cholesky_solve(xt, l, /*upper=*/false);  // (X^T X)^-1 X^T [B, H, k, S]
  return (x * solved.transpose(-2, -1)).sum(-1).clamp_min(0);
}

PIKV_INLINE at::Tensor LeveragePress::score(const AttentionContext& ctx, double) const {
  const int64_t n = ctx.length();
  PIKV_CHECK(ctx.forward_length() == n,
             "leverage scores a prefill (every cached token is also a query): layer {} has {} queries for {} cached "
             "tokens",
             ctx.layer, ctx.forward_length(), n);
  at::Tensor s = leverage_scores(prerope_keys(ctx, 0, n), options_.sketch_dimension(),
                                 layer_generator(options_.seed(), ctx.layer));
  return (s - s.mean()) / s.std().clamp_min(1e-6);
}

PIKV_REGISTER_PRESS(LeveragePress,
                    options_press<LeveragePress>("statistical leverage of the pre-RoPE keys in a Gaussian sketch "
                                                 "(Compactor's outlier score)"));

}  // namespace pikv
