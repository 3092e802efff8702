// Attention-free LagKV scores and ThinK's key-channel pruning.
#include <pikv/core/budget.h>
#include <pikv/core/error.h>
#include <pikv/core/tensor_checks.h>
#include <pikv/presses/lagkv.h>
#include <pikv/presses/think.h>

#include <ATen/ATen.h>

namespace pikv {

// ---- LagKV ----

LagKVPress::LagKVPress(const LagKVOptions& options)
    : ScorerPress(options.compression_ratio(), "LagKVOptions.compression_ratio"), options_(options) {
  PIKV_CHECK(options.n_sink() >= 0, "LagKVOptions.n_sink must be >= 0, got {}", options.n_sink());
  PIKV_CHECK(options.lag_size() >= 1, "LagKVOptions.lag_size must be >= 1, got {}", options.lag_size());
}

std::string LagKVPress::describe() const {
  return fmt::format("lagkv(compression_ratio={}, n_sink={}, lag_size={}, cross_scoring={})", compression_ratio(),
                     options_.n_sink(), options_.lag_size(), options_.cross_scoring());
}

namespace {

// x: [B, Hkv, P, lag, d] chunks -> [B, Hkv, P - 1, lag]: chunk c normalised per channel by the min/max
// of chunk c + 1, std over channels (unbiased), softmax over the chunk's tokens.
at::Tensor lag_scores(const at::Tensor& x) {
  const int64_t P = x.size(2);
  at::Tensor ref = x.narrow(2, 1, P - 1);
  at::Tensor v = x.narrow(2, 0, P - 1);
  at::Tensor lo = std::get<0>(ref.min(-2, /*keepdim=*/true));
  at::Tensor hi = std::get<0>(ref.max(-2, /*keepdim=*/true));
  return ((v - lo) / (hi - lo)).std(-1, /*unbiased=*/true).softmax(-1);
}

}  // namespace

at::Tensor LagKVPress::score(const AttentionContext& ctx, double) const {
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
  at::Tensor s = (lag_scores(chunks(ctx.keys)) + lag_scores(chunks(ctx.values))) / 2;  // [B, Hkv, P-1, lag]
  if (!options_.cross_scoring()) {
    // Rank inside the chunk (0 = lowest) / lag.
    s = (s.argsort(/*stable=*/true, -1).argsort(/*stable=*/true, -1).to(at::kFloat) / static_cast<double>(lag)).to(opts.dtype());
  }
  s = s.reshape({B, Hkv, -1});
  return at::cat({at::ones({B, Hkv, sink}, s.options()), s, at::ones({B, Hkv, tail}, s.options())}, 2);
}

// ---- ThinK ----

ThinKPress::ThinKPress(const ThinKOptions& options) : options_(options) {
  check_compression_ratio(options.key_channel_compression_ratio(), "ThinKOptions.key_channel_compression_ratio");
  PIKV_CHECK(options.window_size() >= 1, "ThinKOptions.window_size must be >= 1, got {}", options.window_size());
}

std::string ThinKPress::describe() const {
  return fmt::format("think(key_channel_compression_ratio={}, window_size={})", options_.key_channel_compression_ratio(),
                     options_.window_size());
}

PressRequirements ThinKPress::requirements() const {
  PressRequirements r;
  r.hidden_states = true;
  r.layer_view = true;
  return r;
}

at::Tensor ThinKPress::pruned_channels(const AttentionContext& ctx) const {
  check_context(ctx);
  const int64_t B = ctx.batch(), Hkv = ctx.kv_heads(), d = ctx.head_dim();
  const int64_t q_len = ctx.hidden_states.size(1);
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

CompressedKV ThinKPress::compress(const AttentionContext& ctx) {
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

}  // namespace pikv
