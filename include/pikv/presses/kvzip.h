#pragma once
// KVzip (kvpress's KVzipPress): query-agnostic importance by context reconstruction. After the prefill
// the model is asked to repeat its context, chunk by chunk (2048 tokens): "\n\nRepeat the previous
// context exactly." (later chunks: "... exactly, starting with" + the previous chunk's last 8 tokens),
// the chat template's assistant turn, then the chunk itself, appended to the cache. A token's score is
// the most attention any repeat query (of its KV head's group) pays it, over the sinks, the chunk and
// the repeat itself; the repeat is dropped from the cache after each chunk. Then the lowest scores go:
// across all layers and heads (default; layers end with different budgets) or per layer (layerwise).
// The first n_sink tokens are always kept; template tokens before the context score 0 and go first.
// Stored head-wise (ragged: the memory is freed; kvpress masks). Costs about 2x a prefill in extra
// forwards, reported as ContextPassesCost. kvzip_plus_normalization (KVzip+): attention divided by
// the query's hidden-state norm and multiplied by ||W_o v||. Batch 1. https://arxiv.org/abs/2505.23416
//
// It compresses in run_context_passes, which the runner calls after the prefill (pikv::Pipeline and
// SharedPrefill do); a forward after a prefill without it is an error.

#include <pikv/presses/context_pass.h>

namespace pikv {

#define PIKV_KVZIP_OPTIONS(X)                                                                           \
  PIKV_RATIO_OPTION(X)                                                                                  \
  X(bool, layerwise, false, rule::any(), "the same ratio in every layer (default: one budget for all)") \
  X(int64_t, n_sink, 4, rule::at_least(0), "leading tokens always kept")                                \
  X(bool, kvzip_plus_normalization, false, rule::any(), "KVzip+: weigh by 1/||h|| and ||W_o v||")        \
  X(int64_t, chunk_size, 2048, rule::at_least(1), "context tokens repeated per extra forward")

struct KVzipOptions {
  PIKV_OPTIONS(KVzipOptions, PIKV_KVZIP_OPTIONS)
};

class KVzipPress : public ContextPassPress {
 public:
  using Options = KVzipOptions;
  static constexpr const char* kName = "kvzip";
  explicit KVzipPress(const KVzipOptions& options = {});
  std::string name() const override { return kName; }
  std::string describe() const override;
  double compression_ratio() const override { return options_.compression_ratio(); }
  PressRequirements requirements() const override;
  bool head_wise() const override { return true; }
  bool needs_context_passes() const override { return options_.compression_ratio() > 0; }

  // During a repeat forward: records the layer's scores of the chunk and keeps the cache as it is.
  CompressedKV compress(const AttentionContext& ctx) override;
  // The repeat forwards, then the head-wise selection applied to every layer of passes.cache.
  ContextPassesCost run_context_passes(const ContextPasses& passes) override;

  // Scores of the last run_context_passes: float32 [L, 1, Hkv, n] (for records and tests).
  const at::Tensor& scores() const { return scores_; }
  at::Tensor context_pass_scores() const override { return scores_; }
  const KVzipOptions& options() const { return options_; }

 private:
  KVzipOptions options_;
  int64_t start_ = 0, end_ = 0;  // the chunk being repeated, in cache positions
  at::Tensor scores_;
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/presses/detail/kvzip-inl.h>
#endif
