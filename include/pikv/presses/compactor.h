#pragma once
// Compactor (kvpress's CompactorPress): blends leverage (outlier geometry of the pre-RoPE keys) and
// non-causal chunked attention, blending * leverage + attention, both z-scored over the tokens between
// the first sink_size_start and the last sink_size_end, which are always kept. blending defaults to the
// compression ratio. Prefill only. https://arxiv.org/abs/2507.08143

#include <pikv/core/press.h>

namespace pikv {

#define PIKV_COMPACTOR_OPTIONS(X)                                                                          \
  PIKV_RATIO_OPTION(X)                                                                                     \
  X(int64_t, sink_size_start, 8, rule::at_least(0), "leading tokens always kept")                          \
  X(int64_t, sink_size_end, 4, rule::at_least(0), "most recent tokens always kept")                        \
  X(int64_t, chunk_size, 256, rule::at_least(1), "tokens per chunk of the non-causal attention")           \
  X(int64_t, sketch_dimension, 48, rule::at_least(1), "columns of the leverage sketch")                    \
  X(std::optional<double>, blending, std::nullopt, rule::finite_at_least(0), "weight of leverage (default: the ratio)") \
  X(std::optional<uint64_t>, seed, std::nullopt, rule::any(), "seed of the leverage sketch (layer l: seed + l)")

struct CompactorOptions {
  PIKV_OPTIONS(CompactorOptions, PIKV_COMPACTOR_OPTIONS)
};

class CompactorPress : public ScorerPressBase<CompactorPress, CompactorOptions> {
 public:
  static constexpr const char* kName = "compactor";
  using ScorerPressBase::ScorerPressBase;  // (const CompactorOptions& = {})
  PressRequirements requirements() const override;
  // A prefill: keys/values [B, Hkv, n, d] with its queries -> float32 [B, Hkv, n]
  at::Tensor score(const AttentionContext& ctx, double ratio) const override;
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/presses/detail/compactor-inl.h>
#endif
