#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/selection.h>
#include <pikv/core/tensor_checks.h>

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>

#include <limits>

namespace pikv {

PIKV_INLINE at::Tensor top_k_positions(const at::Tensor& scores, int64_t k) {
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

PIKV_INLINE at::Tensor top_k_mask(const at::Tensor& scores, int64_t k) {
  at::Tensor keep = at::zeros(scores.sizes(), scores.options().dtype(at::kBool));
  if (k > 0) keep.scatter_(-1, top_k_positions(scores, k), true);
  return keep;
}

PIKV_INLINE at::Tensor gather_tokens(const at::Tensor& x, const at::Tensor& positions) {
  check_rank(x, 4, "x", "[B, Hkv, n, d]");
  check_rank(positions, 3, "positions", "[B, Hkv, k]");
  return x.gather(2, positions.unsqueeze(-1).expand({-1, -1, -1, x.size(3)}));
}

PIKV_INLINE CompressedKV keep_positions(const at::Tensor& keys, const at::Tensor& values, const at::Tensor& positions) {
  CompressedKV out;
  out.indices = positions;
  out.keys = gather_tokens(keys, positions);
  out.values = gather_tokens(values, positions);
  return out;
}

PIKV_INLINE CompressedKV keep_top_k(const at::Tensor& keys, const at::Tensor& values, const at::Tensor& scores,
                                    int64_t k) {
  return keep_positions(keys, values, top_k_positions(scores, k));
}

PIKV_INLINE at::Tensor protected_score(const at::Tensor& scores) {
  return (scores.max().to(at::kDouble) + 1.0).to(scores.scalar_type());
}

PIKV_INLINE at::Tensor append_protected(const at::Tensor& scores, int64_t count) {
  return at::cat({scores, protected_score(scores).expand({scores.size(0), scores.size(1), count})}, 2);
}

PIKV_INLINE at::Tensor force_max(const at::Tensor& scores, const at::Tensor& forced) {
  at::Scalar top;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, scores.scalar_type(), "force_max",
                                  [&] { top = std::numeric_limits<scalar_t>::max(); });
  return scores.masked_fill(forced, top);
}

PIKV_INLINE at::Tensor keep_top_across_heads(const at::Tensor& scores, int64_t total) {
  check_rank(scores, 3, "scores", "[B, Hkv, n]");
  const int64_t B = scores.size(0), Hkv = scores.size(1), n = scores.size(2);
  PIKV_CHECK(total >= 0 && total <= Hkv * n, "cannot keep {} of the {} entries of a layer", total, Hkv * n);
  at::Tensor flat = top_k_mask(scores.reshape({B, 1, Hkv * n}), total);
  return flat.view({B, Hkv, n});
}

PIKV_INLINE CompressedKV keep_head_wise(const at::Tensor& keys, const at::Tensor& values, const at::Tensor& keep) {
  check_rank(keys, 4, "keys", "[B, Hkv, n, d]");
  PIKV_CHECK(keep.dim() == 3 && keep.sizes() == keys.sizes().slice(0, 3) && keep.scalar_type() == at::kBool,
             "keep must be bool [B, Hkv, n] matching keys {}, got {}", describe_tensor(keys), describe_tensor(keep));
  const int64_t n = keys.size(2);
  auto lopts = keep.options().dtype(at::kLong);
  at::Tensor lengths = keep.sum(-1);  // [B, Hkv]
  // The longest head sizes the padded result: one host read per layer, inherent to a ragged result.
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

}  // namespace pikv
