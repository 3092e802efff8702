#pragma once

#include <pikv/core/config.h>
#include <pikv/core/registry.h>
#include <pikv/presses/lagkv.h>

#include <ATen/ATen.h>

namespace pikv {

namespace detail {

// x: [B, Hkv, P, lag, d] chunks -> [B, Hkv, P - 1, lag]: chunk c normalised per channel by the min/max
// of chunk c + 1, std over channels (unbiased), softmax over the chunk's tokens.
inline at::Tensor lag_scores(const at::Tensor& x) {
  const int64_t P = x.size(2);
  at::Tensor ref = x.narrow(2, 1, P - 1);
  at::Tensor v = x.narrow(2, 0, P - 1);
  at::Tensor lo = std::get<0>(ref.min(-2, /*keepdim=*/true));
  at::Tensor hi = std::get<0>(ref.max(-2, /*keepdim=*/true));
  return ((v - lo) / (hi - lo)).std(-1, /*unbiased=*/true).softmax(-1);
}

}  // namespace detail

PIKV_INLINE at::Tensor LagKVPress::score(const AttentionContext& ctx, double) const {
  const int64_t B = ctx.batch(), Hkv = ctx.kv_heads(), n = ctx.length(), d = ctx.head_dim();
  const int64_t sink = options_.n_sink(), lag = options_.lag_size();
  const auto opts = ctx.keys.options();
  if (n < sink + 2 * lag) {
    // Too short to score against a next chunk: keep the sinks, then prefer the most recent tokens.
    at::Tensor s = at::ones({B, Hkv, n}, opts);
    if (n > sink) {
      s.narrow(2, sink, n - sink)
          .copy_((at::arange(n - sink, opts.dtype(at::kFloat)) / static_cast<double>(n - sink)).to(opts.dtype()));
    }
    return s;
  }
  const int64_t end = sink + ((n - sink) / lag) * lag;
  const int64_t tail = lag + n - end;  // the last full chunk and the remainder are kept
  auto chunks = [&](const at::Tensor& x) { return x.narrow(2, sink, end - sink).reshape({B, Hkv, -1, lag, d}); };
  at::Tensor s = (detail::lag_scores(chunks(ctx.keys)) + detail::lag_scores(chunks(ctx.values))) / 2;  // [B, Hkv, P-1, lag]
  if (!options_.cross_scoring()) {
    // Rank inside the chunk (0 = lowest) / lag.
    s = (s.argsort(/*stable=*/true, -1).argsort(/*stable=*/true, -1).to(at::kFloat) / static_cast<double>(lag)).to(opts.dtype());
  }
  s = s.reshape({B, Hkv, -1});
  return at::cat({at::ones({B, Hkv, sink}, s.options()), s, at::ones({B, Hkv, tail}, s.options())}, 2);
}

PIKV_REGISTER_PRESS(LagKVPress,
                    options_press<LagKVPress>("attention-free: spread of keys/values normalised by the next chunk"));

}  // namespace pikv
