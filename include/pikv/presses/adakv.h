#pragma once
// AdaKV: head-wise budgets inside a layer. The wrapped scorer's scores are compared across all KV
// heads of a layer (per batch row): each head first keeps its top int(n_kept * alpha_safeguard)
// tokens, then the Hkv * (n - n_kept) globally lowest scores are removed, so heads end with different
// lengths. https://arxiv.org/abs/2407.11550
//
// kvpress masks the removed entries and keeps the full cache; here the result is head-wise
// (CompressedKV::head_lengths) and KVCache stores it ragged, so the memory is really freed.

#include <pikv/core/press.h>

#include <memory>

namespace pikv {

struct AdaKVOptions {
  double alpha_safeguard = 0.20;  // fraction of each head's uniform budget it always keeps, [0, 1]
};

class AdaKVPress : public Press {
 public:
  // Throws for a null press or alpha_safeguard outside [0, 1].
  AdaKVPress(std::shared_ptr<ScorerPress> press, AdaKVOptions options = {});
  std::string name() const override { return "adakv"; }
  std::string describe() const override;
  double compression_ratio() const override { return press_->compression_ratio(); }
  PressRequirements requirements() const override { return press_->requirements(); }
  bool head_wise() const override { return true; }
  const ScorerPress* scorer() const override { return press_.get(); }
  // keys/values [B, Hkv, n, d] -> head-wise result: [B, Hkv, k_max, d], head_lengths [B, Hkv].
  CompressedKV compress(const AttentionContext& ctx) override;

  const ScorerPress& press() const { return *press_; }
  const AdaKVOptions& options() const { return options_; }

 private:
  std::shared_ptr<ScorerPress> press_;
  AdaKVOptions options_;
};

// Builds a head-wise result from a keep mask: keys/values [B, Hkv, n, d], keep bool [B, Hkv, n] ->
// keys/values [B, Hkv, k_max, d] (each head's kept tokens first, ascending, then zero padding),
// indices [B, Hkv, k_max] (-1 on padding), head_lengths [B, Hkv].
CompressedKV keep_head_wise(const at::Tensor& keys, const at::Tensor& values, const at::Tensor& keep);

// Per batch row, keeps the `total` highest entries of scores [B, Hkv, n] across all heads (ties to
// the lower head, then the lower position): bool [B, Hkv, n].
at::Tensor keep_top_across_heads(const at::Tensor& scores, int64_t total);

}  // namespace pikv
