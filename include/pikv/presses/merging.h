#pragma once
// Merging (kvpress's MergingPress): evicts by the wrapped scorer's top-k like any scorer, but folds
// each evicted token's value into its most similar survivor instead of dropping it. Per KV head:
//   target_e = argmax_k cos(key_e, key_k) over the kept keys
//   w_e      = max(cos, 0) * ||v_e|| / (||v_e|| + ||v_target|| + 1e-6), when cos >= similarity_threshold
//              and cos is among the merge_fraction most similar evicted tokens
//   v_k     <- (v_k + sum_e w_e v_e) / (1 + sum_e w_e)   for every survivor that received a merge
// Keys are never changed (so RoPE stays consistent). Token Merging / D2O style.

#include <pikv/core/press.h>

#include <memory>

namespace pikv {

#define PIKV_MERGING_OPTIONS(X)                                                                           \
  X(double, similarity_threshold, 0.0, rule::in(0.0, 1.0), "minimum cosine similarity for a merge") \
  X(double, merge_fraction, 1.0, rule::in(0.0, 1.0, true, false),                                  \
    "fraction of the evicted tokens (the most similar) that are merged, in (0, 1]")

struct MergingOptions {
  PIKV_OPTIONS(MergingOptions, PIKV_MERGING_OPTIONS)
};

class MergingPress : public ScorerWrapperBase<MergingPress, MergingOptions> {
 public:
  static constexpr const char* kName = "merging";
  using ScorerWrapperBase::ScorerWrapperBase;  // (std::shared_ptr<ScorerPress>, const MergingOptions& = {})

  // The kept values after the merge: keys/values [B, Hkv, n, d], kept int64 [B, Hkv, k] (ascending)
  // -> values [B, Hkv, k, d] in values' dtype (accumulated in float32).
  static at::Tensor merge(const at::Tensor& keys, const at::Tensor& values, const at::Tensor& kept,
                          const MergingOptions& options);

 protected:
  // keys/values [B, Hkv, n, d] -> the inner press's kept keys and the merged values [B, Hkv, k, d].
  CompressedKV compress_wrapped(const AttentionContext& ctx, double ratio) override;
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/presses/detail/merging-inl.h>
#endif
