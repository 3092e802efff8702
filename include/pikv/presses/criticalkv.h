#pragma once
// CriticalKV and CriticalAdaKV: two-stage selection. The wrapped scorer's top tokens (a
// first_stage_ratio share of the budget) are kept outright; the others are re-scored by
// (score + epsilon) * ||v W_o||_1, the size of their value after the head's slice of the output
// projection (mean over the query group). https://arxiv.org/abs/2502.03805
// CriticalAdaKV does the same with AdaKV's head-wise budgets (memory freed, see adakv.h).
// kvpress warns that ExpectedAttention's own use_vnorm should be off inside these.

#include <pikv/core/press.h>

#include <memory>

namespace pikv {

struct CriticalKVOptions {
  double epsilon = 1e-4;            // added to the first-stage score before weighting, >= 0
  double first_stage_ratio = 0.5;   // share of the budget chosen by the first stage, [0, 1]
};

class CriticalKVPress : public ScorerPress {
 public:
  CriticalKVPress(std::shared_ptr<ScorerPress> press, CriticalKVOptions options = {});
  std::string name() const override { return "criticalkv"; }
  std::string describe() const override;
  PressRequirements requirements() const override;
  // keys/values [B, Hkv, n, d] -> [B, Hkv, n] (first-stage picks get the dtype's largest value)
  at::Tensor score(const AttentionContext& ctx, double ratio) const override;
  const ScorerPress& press() const { return *press_; }

  // ||v W_o||_1 per cached token, mean over each KV head's query group: values [B, Hkv, n, d] and
  // output_weight [Dm, H * d] -> [B, Hkv, n].
  static at::Tensor projected_value_norm(const at::Tensor& values, const at::Tensor& output_weight, int64_t num_heads);

 private:
  std::shared_ptr<ScorerPress> press_;
  CriticalKVOptions options_;
};

struct CriticalAdaKVOptions {
  double alpha_safeguard = 0.20;
  double epsilon = 1e-4;
  double first_stage_ratio = 0.5;
};

class CriticalAdaKVPress : public Press {
 public:
  CriticalAdaKVPress(std::shared_ptr<ScorerPress> press, CriticalAdaKVOptions options = {});
  std::string name() const override { return "criticaladakv"; }
  std::string describe() const override;
  double compression_ratio() const override { return press_->compression_ratio(); }
  PressRequirements requirements() const override;
  bool head_wise() const override { return true; }
  const ScorerPress* scorer() const override { return press_.get(); }
  // keys/values [B, Hkv, n, d] -> head-wise result (see AdaKVPress)
  CompressedKV compress(const AttentionContext& ctx) override;

 private:
  std::shared_ptr<ScorerPress> press_;
  CriticalAdaKVOptions options_;
};

}  // namespace pikv
