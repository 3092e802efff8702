#pragma once
// CriticalKV: two-stage selection. The wrapped scorer's top tokens (a first_stage_ratio share of the
// budget) are kept outright; the others are re-scored by (score + epsilon) * ||v W_o||_1, the size of
// their value after the head's slice of the output projection (mean over the query group).
// https://arxiv.org/abs/2502.03805. kvpress warns that ExpectedAttention's own use_vnorm should be off
// inside it. CriticalAdaKV (criticaladakv.h) does the same with AdaKV's head-wise budgets.

#include <pikv/core/press.h>

#include <memory>

namespace pikv {

#define PIKV_CRITICALKV_OPTIONS(X)                                                           \
  X(double, epsilon, 1e-4, rule::at_least(0), "added to the first-stage score")             \
  X(double, first_stage_ratio, 0.5, rule::in(0, 1), "share of the budget chosen by the first stage")

struct CriticalKVOptions {
  PIKV_OPTIONS(CriticalKVOptions, PIKV_CRITICALKV_OPTIONS)
};

class CriticalKVPress : public ScorerWrapperBase<CriticalKVPress, CriticalKVOptions, ScoringWrapper> {
 public:
  static constexpr const char* kName = "criticalkv";
  using ScorerWrapperBase::ScorerWrapperBase;  // (std::shared_ptr<ScorerPress>, const CriticalKVOptions& = {})
  PressRequirements requirements() const override;
  // keys/values [B, Hkv, n, d] -> [B, Hkv, n] (first-stage picks get the dtype's largest value)
  at::Tensor score(const AttentionContext& ctx, double ratio) const override;
  at::Tensor score_for_selection(const AttentionContext& ctx, double ratio) override;
  void observe_selection(const AttentionContext& ctx, double ratio, const at::Tensor& kept) override;

  // ||v W_o||_1 per cached token, mean over each KV head's query group: values [B, Hkv, n, d] and
  // output_weight [Dm, H * d] -> [B, Hkv, n].
  static at::Tensor projected_value_norm(const at::Tensor& values, const at::Tensor& output_weight, int64_t num_heads);

 private:
  // The second stage from the inner scores s [B, Hkv, n].
  at::Tensor rescore(const AttentionContext& ctx, double ratio, const at::Tensor& s) const;
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/presses/detail/criticalkv-inl.h>
#endif
