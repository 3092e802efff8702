#include <pikv/core/budget.h>
#include <pikv/core/error.h>
#include <pikv/core/press.h>
#include <pikv/core/tensor_checks.h>

#include <ATen/ATen.h>

namespace pikv {

std::string Press::describe() const {
  return fmt::format("{}(compression_ratio={})", name(), compression_ratio());
}

void Press::check_context(const AttentionContext& ctx) const {
  ctx.validate();
  const PressRequirements req = requirements();
  PIKV_CHECK(!req.hidden_states || ctx.hidden_states.defined(),
             "press '{}' needs the attention input hidden_states [B, q, Dm] (layer {}), but the context has none",
             name(), ctx.layer);
  PIKV_CHECK(!req.layer_view || ctx.layer_view != nullptr,
             "press '{}' recomputes queries and needs an AttentionLayerView for layer {}, but the context has none "
             "(implement AttentionLayerView in the model or runner)",
             name(), ctx.layer);
  PIKV_CHECK(!req.attention_weights || ctx.attention_weights.has_value(),
             "press '{}' needs the attention weights [B, H, q, n] of layer {}, but the model did not materialise "
             "them (run the model with eager attention / output_attentions)",
             name(), ctx.layer);
}

ScorerPress::ScorerPress(double compression_ratio, const char* what) : compression_ratio_(compression_ratio) {
  check_compression_ratio(compression_ratio, what);
}

void ScorerPress::set_compression_ratio(double ratio) {
  check_compression_ratio(ratio, fmt::format("{} compression ratio", name()));
  compression_ratio_ = ratio;
}

CompressedKV ScorerPress::compress_at(const AttentionContext& ctx, double ratio) const {
  check_compression_ratio(ratio, fmt::format("{} compression ratio", name()), /*allow_one=*/true);
  if (ratio == 0.0) {
    ctx.validate();
    CompressedKV out;
    out.keys = ctx.keys;
    out.values = ctx.values;
    out.unchanged = true;
    return out;
  }
  check_context(ctx);
  const int64_t k = n_kept(ctx.length(), ratio);
  at::Tensor scores = score(ctx, ratio);
  PIKV_CHECK(scores.defined() && scores.dim() == 3 && scores.size(0) == ctx.batch() &&
                 scores.size(1) == ctx.kv_heads() && scores.size(2) == ctx.length(),
             "press '{}' returned scores {} for keys {}; expected [B, Hkv, n] = [{}, {}, {}]", name(),
             describe_tensor(scores), describe_tensor(ctx.keys), ctx.batch(), ctx.kv_heads(), ctx.length());
  return keep_top_k(ctx.keys, ctx.values, scores, k);
}

at::Tensor top_k_positions(const at::Tensor& scores, int64_t k) {
  check_rank(scores, 3, "scores", "[B, Hkv, n]");
  const int64_t n = scores.size(2);
  PIKV_CHECK(k >= 0 && k <= n, "cannot keep k={} of n={} tokens", k, n);
  auto idx_opts = scores.options().dtype(at::kLong);
  if (k == n) return at::arange(n, idx_opts).expand({scores.size(0), scores.size(1), n}).contiguous();
  if (k == 0) return at::empty({scores.size(0), scores.size(1), 0}, idx_opts);
  // A stable descending sort puts equal scores in position order, so ties go to the lower position on
  // every device; at::topk gives no such guarantee.
  at::Tensor order = std::get<1>(at::sort(scores, /*stable=*/true, /*dim=*/-1, /*descending=*/true));
  at::Tensor kept = order.narrow(-1, 0, k);
  return std::get<0>(at::sort(kept, /*stable=*/false, /*dim=*/-1, /*descending=*/false));
}

at::Tensor gather_tokens(const at::Tensor& x, const at::Tensor& positions) {
  check_rank(x, 4, "x", "[B, Hkv, n, d]");
  check_rank(positions, 3, "positions", "[B, Hkv, k]");
  return x.gather(2, positions.unsqueeze(-1).expand({-1, -1, -1, x.size(3)}));
}

CompressedKV keep_top_k(const at::Tensor& keys, const at::Tensor& values, const at::Tensor& scores, int64_t k) {
  CompressedKV out;
  out.indices = top_k_positions(scores, k);
  out.keys = gather_tokens(keys, out.indices);
  out.values = gather_tokens(values, out.indices);
  return out;
}

at::Tensor protected_score(const at::Tensor& scores) {
  return (scores.max().to(at::kDouble) + 1.0).to(scores.scalar_type());
}

at::Tensor append_protected(const at::Tensor& scores, int64_t count) {
  return at::cat({scores, protected_score(scores).expand({scores.size(0), scores.size(1), count})}, 2);
}

}  // namespace pikv
