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

#define PIKV_ADAKV_OPTIONS(X) \
  X(double, alpha_safeguard, 0.2, rule::in(0, 1), "share of each head's uniform budget it always keeps")

struct AdaKVOptions {
  PIKV_OPTIONS(AdaKVOptions, PIKV_ADAKV_OPTIONS)
};

class AdaKVPress : public ScorerWrapperBase<AdaKVPress, AdaKVOptions> {
 public:
  static constexpr const char* kName = "adakv";
  // Throws for a null press or alpha_safeguard outside [0, 1].
  using ScorerWrapperBase::ScorerWrapperBase;  // (std::shared_ptr<ScorerPress>, const AdaKVOptions& = {})
  bool head_wise() const override { return true; }

 protected:
  // keys/values [B, Hkv, n, d] -> head-wise result: [B, Hkv, k_max, d], head_lengths [B, Hkv].
  CompressedKV compress_wrapped(const AttentionContext& ctx, double ratio) override;
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/presses/detail/adakv-inl.h>
#endif
