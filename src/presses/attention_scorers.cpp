// Scorers that look at queries: TOVA, ObservedAttention, ExpectedAttention, and PyramidKV's budgets.
#include <pikv/core/budget.h>
#include <pikv/core/error.h>
#include <pikv/core/tensor_checks.h>
#include <pikv/presses/expected_attention.h>
#include <pikv/presses/observed_attention.h>
#include <pikv/presses/pyramidkv.h>
#include <pikv/presses/tova.h>

#include <ATen/ATen.h>

#include <cmath>

namespace pikv {

// ---- TOVA ----

TOVAPress::TOVAPress(const TOVAOptions& options)
    : ScorerPress(options.compression_ratio(), "TOVAOptions.compression_ratio"), options_(options) {}

PressRequirements TOVAPress::requirements() const {
  PressRequirements r;
  r.hidden_states = true;
  r.layer_view = true;
  return r;
}

at::Tensor TOVAPress::score(const AttentionContext& ctx, double) const {
  const int64_t n = ctx.length();
  PIKV_CHECK(n >= 2, "tova needs at least 2 cached tokens, layer {} has {}", ctx.layer, n);
  at::Tensor attn = SnapKVPress::window_attention(ctx, 1);                       // [B, H, 1, n - 1]
  at::Tensor s = attn.mean(1);                                                   // [B, 1, n - 1], all heads
  s = s.expand({ctx.batch(), ctx.kv_heads(), n - 1});
  return append_protected(s, 1);  // the last token stays
}

// ---- ObservedAttention ----

ObservedAttentionPress::ObservedAttentionPress(const ObservedAttentionOptions& options)
    : ScorerPress(options.compression_ratio(), "ObservedAttentionOptions.compression_ratio"), options_(options) {}

PressRequirements ObservedAttentionPress::requirements() const {
  PressRequirements r;
  r.attention_weights = true;
  return r;
}

at::Tensor ObservedAttentionPress::score(const AttentionContext& ctx, double) const {
  const at::Tensor& w = *ctx.attention_weights;  // check_context guarantees it
  const int64_t n = ctx.length();
  PIKV_CHECK(w.size(2) == n,
             "observed_attention scores a prefill (every cached token is also a query): layer {} has {} queries "
             "for {} cached tokens",
             ctx.layer, w.size(2), n);
  // Token j is seen by the n - j queries at or after it.
  at::Tensor seen = at::arange(n, 0, -1, w.options());
  at::Tensor s = w.sum(2) / seen;  // [B, H, n]
  return s.view({ctx.batch(), ctx.kv_heads(), -1, n}).mean(2);
}

// ---- ExpectedAttention ----

ExpectedAttentionPress::ExpectedAttentionPress(const ExpectedAttentionOptions& options)
    : ScorerPress(options.compression_ratio(), "ExpectedAttentionOptions.compression_ratio"), options_(options) {
  PIKV_CHECK(options.n_future_positions() >= 1, "ExpectedAttentionOptions.n_future_positions must be >= 1, got {}",
             options.n_future_positions());
  PIKV_CHECK(options.n_sink() >= 0, "ExpectedAttentionOptions.n_sink must be >= 0, got {}", options.n_sink());
  PIKV_CHECK(options.epsilon() >= 0 && std::isfinite(options.epsilon()),
             "ExpectedAttentionOptions.epsilon must be finite and >= 0, got {}", options.epsilon());
}

std::string ExpectedAttentionPress::describe() const {
  const auto& o = options_;
  return fmt::format(
      "expected_attention(compression_ratio={}, n_future_positions={}, n_sink={}, use_covariance={}, use_vnorm={}, "
      "epsilon={})",
      compression_ratio(), o.n_future_positions(), o.n_sink(), o.use_covariance(), o.use_vnorm(), o.epsilon());
}

PressRequirements ExpectedAttentionPress::requirements() const {
  PressRequirements r;
  r.hidden_states = true;
  r.layer_view = true;
  return r;
}

at::Tensor ExpectedAttentionPress::average_rotation(const AttentionLayerView& view, int64_t first, int64_t count,
                                                    const at::TensorOptions& options) {
  const int64_t d = view.head_dim();
  // Rotate every basis vector at every future position: x[0, i, t] = e_i at position first + t, so
  // out[0, i, t] = R_t e_i (column i of R_t). Works for any rotary variant the view implements.
  at::Tensor basis = at::eye(d, options).unsqueeze(1).expand({d, count, d}).unsqueeze(0);  // [1, d, count, d]
  at::Tensor pos = at::arange(first, first + count, options.dtype(at::kLong));
  at::Tensor cols = view.apply_rope(basis.contiguous(), pos).mean(2)[0];  // [d(i), d]: row i = mean_t R_t e_i
  return cols.t().contiguous();                                            // R[:, i] = mean_t R_t e_i
}

at::Tensor ExpectedAttentionPress::score(const AttentionContext& ctx, double) const {
  const auto& o = options_;
  const int64_t n = ctx.length(), sink = o.n_sink(), q_len = ctx.hidden_states.size(1);
  PIKV_CHECK(n > sink, "expected_attention needs more cached tokens than n_sink={}, layer {} has n={}", sink,
             ctx.layer, n);
  PIKV_CHECK(q_len > sink,
             "expected_attention estimates query statistics from the forward's tokens after the n_sink={} sinks; "
             "layer {} saw only {} tokens",
             sink, ctx.layer, q_len);
  const AttentionLayerView& view = *ctx.layer_view;
  const int64_t B = ctx.batch(), Hkv = ctx.kv_heads(), d = ctx.head_dim();
  const int64_t G = view.num_heads() / Hkv;
  const int64_t m = q_len - sink;

  // Query statistics (float32 at least: a covariance in bf16 loses the small directions).
  const auto stat_type = at::promote_types(ctx.keys.scalar_type(), at::kFloat);
  at::Tensor q = prerope_queries(ctx, sink, m).to(stat_type);  // [B, H, m, d]
  at::Tensor mu = q.mean(2);                                   // [B, H, d]
  // Future queries start right after this forward (kvpress: at q_len during a prefill).
  at::Tensor R = average_rotation(view, ctx.position_offset + q_len, o.n_future_positions(), q.options());
  at::Tensor mu_r = at::matmul(mu, R.t());  // [B, H, d]

  at::Tensor k = ctx.keys.narrow(2, sink, n - sink).to(stat_type);  // [B, Hkv, n', d]
  at::Tensor kg = k.unsqueeze(2);                                     // [B, Hkv, 1, n', d]
  // mu' . k / sqrt(d), one row per query head of the group: [B, Hkv, G, n']
  at::Tensor s = at::matmul(mu_r.view({B, Hkv, G, 1, d}), kg.transpose(-1, -2)).squeeze(-2) / std::sqrt(double(d));
  if (o.use_covariance()) {
    at::Tensor c = q - mu.unsqueeze(2);
    at::Tensor cov = at::matmul(c.transpose(-1, -2), c) / static_cast<double>(m);  // [B, H, d, d], biased
    cov = at::matmul(R, at::matmul(cov, R.t()));
    // k^T Sigma' k per (query head, key): ((k Sigma'^T) * k).sum(d); Sigma' is symmetric.
    at::Tensor kS = at::matmul(kg, cov.view({B, Hkv, G, d, d}));  // [B, Hkv, G, n', d]
    s = s + (kS * kg).sum(-1) / static_cast<double>(d) / 2.0;
  }
  s = at::softmax(s.to(ctx.keys.scalar_type()), -1).mean(2);  // [B, Hkv, n'], softmax in the input dtype
  if (o.use_vnorm()) {
    at::Tensor vn = at::linalg_vector_norm(ctx.values.narrow(2, sink, n - sink), 2, at::IntArrayRef{-1});
    s = (s + o.epsilon()) * vn;
  }
  return at::cat({protected_score(s).expand({B, Hkv, sink}), s}, 2);  // sinks always stay
}

// ---- PyramidKV ----

namespace {
SnapKVOptions snap_options(const PyramidKVOptions& o) {
  return SnapKVOptions().compression_ratio(o.compression_ratio()).window_size(o.window_size()).kernel_size(o.kernel_size());
}
}  // namespace

PyramidKVPress::PyramidKVPress(const PyramidKVOptions& options) : SnapKVPress(snap_options(options)), pyramid_(options) {
  PIKV_CHECK(options.beta() >= 1, "PyramidKVOptions.beta must be >= 1, got {}", options.beta());
}

std::string PyramidKVPress::describe() const {
  return fmt::format("pyramidkv(compression_ratio={}, window_size={}, kernel_size={}, beta={})", compression_ratio(),
                     pyramid_.window_size(), pyramid_.kernel_size(), pyramid_.beta());
}

int64_t PyramidKVPress::layer_budget(int64_t n, double ratio, int64_t window_size, int64_t beta, int64_t layer,
                                     int64_t num_layers) {
  PIKV_CHECK(num_layers >= 1 && layer >= 0 && layer < num_layers, "pyramidkv: layer {} of {} layers", layer,
             num_layers);
  const double w = static_cast<double>(window_size), nd = static_cast<double>(n);
  const double max_cap = w + nd * (1.0 - ratio);
  double min_num = (max_cap - w) / static_cast<double>(beta);
  double max_num = (max_cap - w) * 2.0 - min_num;
  if (max_num >= nd - w) {
    max_num = nd - w;
    min_num = (max_cap - w) * 2.0 - max_num;
  }
  const double uniform = round_half_even(nd * (1.0 - ratio));
  if (!(nd >= max_num && max_num >= min_num && min_num >= w) || num_layers == 1) {
    return static_cast<int64_t>(uniform);
  }
  const double steps = (max_num - min_num) / static_cast<double>(num_layers - 1);
  return static_cast<int64_t>(round_half_even(max_num - static_cast<double>(layer) * steps));
}

CompressedKV PyramidKVPress::compress(const AttentionContext& ctx) {
  if (compression_ratio() == 0.0) return compress_at(ctx, 0.0);
  check_context(ctx);
  const int64_t n = ctx.length();
  const int64_t k = layer_budget(n, compression_ratio(), pyramid_.window_size(), pyramid_.beta(), ctx.layer,
                                 ctx.num_layers);
  PIKV_CHECK(k >= 0 && k <= n, "pyramidkv: layer {} budget {} outside [0, {}]", ctx.layer, k, n);
  return keep_top_k(ctx.keys, ctx.values, score(ctx, compression_ratio()), k);
}

}  // namespace pikv
