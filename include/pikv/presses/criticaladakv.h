#pragma once
// CriticalAdaKV: CriticalKV's two-stage selection (criticalkv.h) inside AdaKV's head-wise budgets
// (adakv.h): budgets come from the inner scores across heads; each head keeps its first-stage share
// outright and fills the rest by (score + epsilon) * ||v W_o||_1. Stored ragged: the memory is freed.
// https://arxiv.org/abs/2502.03805

#include <pikv/core/press.h>

#include <memory>

namespace pikv {

#define PIKV_CRITICALADAKV_OPTIONS(X)                                                                     \
  X(double, alpha_safeguard, 0.2, rule::in(0, 1), "share of each head's uniform budget it always keeps") \
  X(double, epsilon, 1e-4, rule::at_least(0), "added to the first-stage score")                          \
  X(double, first_stage_ratio, 0.5, rule::in(0, 1), "share of each head's budget chosen by the first stage")

struct CriticalAdaKVOptions {
  PIKV_OPTIONS(CriticalAdaKVOptions, PIKV_CRITICALADAKV_OPTIONS)
};

class CriticalAdaKVPress : public ScorerWrapperBase<CriticalAdaKVPress, CriticalAdaKVOptions> {
 public:
  static constexpr const char* kName = "criticaladakv";
  using ScorerWrapperBase::ScorerWrapperBase;  // (std::shared_ptr<ScorerPress>, const CriticalAdaKVOptions& = {})
  PressRequirements requirements() const override;
  bool head_wise() const override { return true; }

 protected:
  // keys/values [B, Hkv, n, d] -> head-wise result (see AdaKVPress)
  CompressedKV compress_wrapped(const AttentionContext& ctx, double ratio) override;
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/presses/detail/criticaladakv-inl.h>
#endif
