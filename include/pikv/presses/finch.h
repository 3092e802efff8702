#pragma once
// Finch (kvpress's FinchPress): question-guided SnapKV. The prefill is the context followed by the
// question (the runner says how many question tokens: set_question_tokens); the question's queries
// score the context tokens by their attention, each query's row multiplied by its position when
// normalize_scores (the number of keys it could see), averaged over the question and each KV head's
// group; the question itself is always kept. With chunk_length the budget is split over chunks of the
// sequence. rerotate_keys re-rotates the kept keys to contiguous positions (as KeyRerotation), so the
// answer continues from the compressed length. Batch 1. https://doi.org/10.1162/tacl_a_00716

#include <pikv/core/press.h>

namespace pikv {

#define PIKV_FINCH_OPTIONS(X)                                                                           \
  PIKV_RATIO_OPTION(X)                                                                                  \
  X(std::optional<int64_t>, chunk_length, std::nullopt, rule::at_least(1), "split the budget over chunks of this length") \
  X(bool, normalize_scores, true, rule::any(), "weigh each question query by the keys it could see")    \
  X(bool, rerotate_keys, true, rule::any(), "re-rotate the kept keys to contiguous positions")

struct FinchOptions {
  PIKV_OPTIONS(FinchOptions, PIKV_FINCH_OPTIONS)
};

class FinchPress : public ScorerPressBase<FinchPress, FinchOptions> {
 public:
  static constexpr const char* kName = "finch";
  using ScorerPressBase::ScorerPressBase;  // (const FinchOptions& = {})
  PressRequirements requirements() const override;
  bool wants_question() const override { return true; }
  void set_question_tokens(int64_t tokens) override { window_ = tokens; }
  // A prefill ending with the question: keys [B, Hkv, n, d] -> float32 [B, Hkv, n] (question: max + 1).
  at::Tensor score(const AttentionContext& ctx, double ratio) const override;
  // The top of the scores (per chunk with chunk_length), re-rotated when rerotate_keys.
  CompressedKV compress(const AttentionContext& ctx) override;

 private:
  int64_t window_ = 0;  // question tokens at the end of the prefill (0: not told)
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/presses/detail/finch-inl.h>
#endif
