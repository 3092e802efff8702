// Wrappers around a scorer: AdaKV, CriticalKV, CriticalAdaKV (head-wise budgets and value-aware
// re-scoring) and KeyRerotation.
#include <pikv/core/budget.h>
#include <pikv/core/error.h>
#include <pikv/core/tensor_checks.h>
#include <pikv/presses/adakv.h>
#include <pikv/presses/criticalkv.h>
#include <pikv/presses/key_rerotation.h>

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>

#include <limits>

namespace pikv {
namespace {

void check_inner(const std::shared_ptr<ScorerPress>& press, const char* who) {
  PIKV_CHECK(press != nullptr, "{} needs a scorer press to wrap, got none", who);
}

// Marks the top `k` of every row: scores [B, Hkv, n] -> bool [B, Hkv, n] (ties to the lower position).
at::Tensor top_mask(const at::Tensor& scores, int64_t k) {
  at::Tensor keep = at::zeros(scores.sizes(), scores.options().dtype(at::kBool));
  if (k > 0) keep.scatter_(-1, top_k_positions(scores, k), true);
  return keep;
}

// Scores with the dtype's largest finite value at `forced` entries (kvpress's scatter of finfo.max).
at::Tensor force_max(const at::Tensor& scores, const at::Tensor& forced) {
  at::Scalar top;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, scores.scalar_type(), "force_max",
                                  [&] { top = std::numeric_limits<scalar_t>::max(); });
  return scores.masked_fill(forced, top);
}

}  // namespace

// ---- head-wise helpers ----

at::Tensor keep_top_across_heads(const at::Tensor& scores, int64_t total) {
  check_rank(scores, 3, "scores", "[B, Hkv, n]");
  const int64_t B = scores.size(0), Hkv = scores.size(1), n = scores.size(2);
  PIKV_CHECK(total >= 0 && total <= Hkv * n, "cannot keep {} of the {} entries of a layer", total, Hkv * n);
  at::Tensor flat = top_mask(scores.reshape({B, 1, Hkv * n}), total);
  return flat.view({B, Hkv, n});
}

CompressedKV keep_head_wise(const at::Tensor& keys, const at::Tensor& values, const at::Tensor& keep) {
  check_rank(keys, 4, "keys", "[B, Hkv, n, d]");
  PIKV_CHECK(keep.dim() == 3 && keep.sizes() == keys.sizes().slice(0, 3) && keep.scalar_type() == at::kBool,
             "keep must be bool [B, Hkv, n] matching keys {}, got {}", describe_tensor(keys), describe_tensor(keep));
  const int64_t n = keys.size(2);
  auto lopts = keep.options().dtype(at::kLong);
  at::Tensor lengths = keep.sum(-1);  // [B, Hkv]
  const int64_t k_max = lengths.max().item<int64_t>();
  // Kept positions first (ascending), the rest after: sort key = position, + n when dropped.
  at::Tensor pos = at::arange(n, lopts).expand(keep.sizes());
  at::Tensor order = std::get<0>(at::where(keep, pos, pos + n).sort(-1)).narrow(-1, 0, k_max);
  at::Tensor valid = order < n;
  CompressedKV out;
  out.indices = at::where(valid, order, at::full({}, -1, lopts));
  at::Tensor gather_at = at::where(valid, order, order - n);
  at::Tensor vmask = valid.unsqueeze(-1);
  out.keys = gather_tokens(keys, gather_at).masked_fill(vmask.logical_not(), 0.0);
  out.values = gather_tokens(values, gather_at).masked_fill(vmask.logical_not(), 0.0);
  out.head_lengths = lengths;
  return out;
}

// ---- AdaKV ----

AdaKVPress::AdaKVPress(std::shared_ptr<ScorerPress> press, AdaKVOptions options)
    : press_(std::move(press)), options_(options) {
  check_inner(press_, "adakv");
  PIKV_CHECK(options.alpha_safeguard >= 0.0 && options.alpha_safeguard <= 1.0,
             "AdaKVOptions.alpha_safeguard must be in [0, 1], got {}", options.alpha_safeguard);
}

std::string AdaKVPress::describe() const {
  return fmt::format("adakv(press={}, alpha_safeguard={})", press_->describe(), options_.alpha_safeguard);
}

CompressedKV AdaKVPress::compress(const AttentionContext& ctx) {
  const double ratio = compression_ratio();
  if (ratio == 0.0) return press_->compress_at(ctx, 0.0);
  check_context(ctx);
  const int64_t n = ctx.length(), Hkv = ctx.kv_heads();
  const int64_t k = n_kept(n, ratio);
  const auto safe = static_cast<int64_t>(static_cast<double>(k) * options_.alpha_safeguard);
  at::Tensor s = press_->score(ctx, ratio);
  s = force_max(s, top_mask(s, safe));
  return keep_head_wise(ctx.keys, ctx.values, keep_top_across_heads(s, Hkv * k));
}

// ---- CriticalKV ----

at::Tensor CriticalKVPress::projected_value_norm(const at::Tensor& values, const at::Tensor& output_weight,
                                                 int64_t num_heads) {
  check_rank(values, 4, "values", "[B, Hkv, n, d]");
  check_rank(output_weight, 2, "output_weight", "[Dm, H * d]");
  const int64_t B = values.size(0), Hkv = values.size(1), n = values.size(2), d = values.size(3);
  PIKV_CHECK(output_weight.size(1) == num_heads * d && num_heads % Hkv == 0,
             "output_weight {} does not fit {} heads of dimension {} over {} KV heads", describe_tensor(output_weight),
             num_heads, d, Hkv);
  const int64_t G = num_heads / Hkv;
  at::Tensor wo = output_weight.t().reshape({num_heads, d, -1}).to(values.scalar_type());  // [H, d, Dm]
  std::vector<at::Tensor> per_head;
  per_head.reserve(static_cast<size_t>(num_heads));
  // One head at a time: the projected values [B, n, Dm] of all heads at once would be H times larger.
  for (int64_t h = 0; h < num_heads; ++h) {
    at::Tensor v = values.select(1, h / G);  // [B, n, d]
    per_head.push_back(at::matmul(v, wo[h]).abs().sum(-1));  // [B, n]
  }
  return at::stack(per_head, 1).view({B, Hkv, G, n}).mean(2);
}

CriticalKVPress::CriticalKVPress(std::shared_ptr<ScorerPress> press, CriticalKVOptions options)
    : ScorerPress(press ? press->compression_ratio() : 0.0, "criticalkv compression_ratio"),
      press_(std::move(press)),
      options_(options) {
  check_inner(press_, "criticalkv");
  PIKV_CHECK(options.epsilon >= 0.0, "CriticalKVOptions.epsilon must be >= 0, got {}", options.epsilon);
  PIKV_CHECK(options.first_stage_ratio >= 0.0 && options.first_stage_ratio <= 1.0,
             "CriticalKVOptions.first_stage_ratio must be in [0, 1], got {}", options.first_stage_ratio);
}

std::string CriticalKVPress::describe() const {
  return fmt::format("criticalkv(press={}, epsilon={}, first_stage_ratio={})", press_->describe(), options_.epsilon,
                     options_.first_stage_ratio);
}

PressRequirements CriticalKVPress::requirements() const {
  PressRequirements r = press_->requirements();
  r.layer_view = true;  // the output projection
  return r;
}

at::Tensor CriticalKVPress::score(const AttentionContext& ctx, double ratio) const {
  const int64_t n = ctx.length();
  at::Tensor s = press_->score(ctx, ratio);
  // Python's evaluation order: ((1 - ratio) * n) * first_stage_ratio, truncated.
  const auto first = static_cast<int64_t>((1.0 - ratio) * static_cast<double>(n) * options_.first_stage_ratio);
  at::Tensor forced = top_mask(s, first);
  at::Tensor vn = projected_value_norm(ctx.values, ctx.layer_view->output_weight(), ctx.layer_view->num_heads());
  return force_max((s + options_.epsilon) * vn.to(s.scalar_type()), forced);
}

// ---- CriticalAdaKV ----

CriticalAdaKVPress::CriticalAdaKVPress(std::shared_ptr<ScorerPress> press, CriticalAdaKVOptions options)
    : press_(std::move(press)), options_(options) {
  check_inner(press_, "criticaladakv");
  PIKV_CHECK(options.alpha_safeguard >= 0.0 && options.alpha_safeguard <= 1.0,
             "CriticalAdaKVOptions.alpha_safeguard must be in [0, 1], got {}", options.alpha_safeguard);
  PIKV_CHECK(options.epsilon >= 0.0, "CriticalAdaKVOptions.epsilon must be >= 0, got {}", options.epsilon);
  PIKV_CHECK(options.first_stage_ratio >= 0.0 && options.first_stage_ratio <= 1.0,
             "CriticalAdaKVOptions.first_stage_ratio must be in [0, 1], got {}", options.first_stage_ratio);
}

std::string CriticalAdaKVPress::describe() const {
  return fmt::format("criticaladakv(press={}, alpha_safeguard={}, epsilon={}, first_stage_ratio={})",
                     press_->describe(), options_.alpha_safeguard, options_.epsilon, options_.first_stage_ratio);
}

PressRequirements CriticalAdaKVPress::requirements() const {
  PressRequirements r = press_->requirements();
  r.layer_view = true;
  return r;
}

CompressedKV CriticalAdaKVPress::compress(const AttentionContext& ctx) {
  const double ratio = compression_ratio();
  if (ratio == 0.0) return press_->compress_at(ctx, 0.0);
  check_context(ctx);
  const int64_t B = ctx.batch(), Hkv = ctx.kv_heads(), n = ctx.length();
  const int64_t k = n_kept(n, ratio);
  const auto safe = static_cast<int64_t>(static_cast<double>(k) * options_.alpha_safeguard);
  at::Tensor s = press_->score(ctx, ratio);
  // 1. AdaKV's head budgets: each head's safeguard, then the layer-wide top Hkv * k.
  at::Tensor budgets = keep_top_across_heads(force_max(s, top_mask(s, safe)), Hkv * k).sum(-1);  // [B, Hkv]
  // 2. First stage per head: its top int(budget * first_stage_ratio) scores (at least the safeguard)
  //    are kept outright; the rest of its budget goes by (score + eps) * ||v W_o||_1.
  at::Tensor first = (budgets.to(at::kDouble) * options_.first_stage_ratio).to(at::kLong).clamp_min(safe);
  at::Tensor order = std::get<1>(at::sort(s, /*stable=*/true, -1, /*descending=*/true));  // [B, Hkv, n]
  at::Tensor rank = at::empty_like(order).scatter_(-1, order, at::arange(n, order.options()).expand_as(order));
  at::Tensor forced = rank < first.unsqueeze(-1);
  at::Tensor vn = CriticalKVPress::projected_value_norm(ctx.values, ctx.layer_view->output_weight(),
                                                        ctx.layer_view->num_heads());
  at::Tensor second = (s + options_.epsilon) * vn.to(s.scalar_type());
  second = second.masked_fill(forced, std::numeric_limits<double>::infinity());
  // 3. Each head keeps its budget by the second-stage score.
  at::Tensor order2 = std::get<1>(at::sort(second, /*stable=*/true, -1, /*descending=*/true));
  at::Tensor rank2 = at::empty_like(order2).scatter_(-1, order2, at::arange(n, order2.options()).expand_as(order2));
  (void)B;
  return keep_head_wise(ctx.keys, ctx.values, rank2 < budgets.unsqueeze(-1));
}

// ---- KeyRerotation ----

KeyRerotationPress::KeyRerotationPress(std::shared_ptr<ScorerPress> press) : press_(std::move(press)) {
  check_inner(press_, "key_rerotation");
}

std::string KeyRerotationPress::describe() const { return fmt::format("key_rerotation(press={})", press_->describe()); }

PressRequirements KeyRerotationPress::requirements() const {
  PressRequirements r = press_->requirements();
  r.layer_view = true;  // the layer's inverse frequencies
  return r;
}

at::Tensor KeyRerotationPress::rotate(const at::Tensor& keys, const at::Tensor& delta, const at::Tensor& inv_freq) {
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

CompressedKV KeyRerotationPress::compress(const AttentionContext& ctx) {
  const double ratio = compression_ratio();
  if (ratio == 0.0) return press_->compress_at(ctx, 0.0);
  check_context(ctx);
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

}  // namespace pikv
