#pragma once
// KVCompose (kvpress's KVComposePress): after the prefill the context is forwarded a second time,
// appended to its own cache; a token's importance in a query head is how much the second copy attends
// to it (agg_task over the copy's queries: max or mean), aggregated over the query heads of its KV
// head (agg_group), plus the mean over the layer's KV heads (add_mean_across_heads), optionally times
// ||v|| (add_v_norm). Budgets are global: every head ranks its scores; structured (default) averages
// the ranked curves over the heads of a layer (agg_head), so each layer keeps its own count, the same
// in all its heads (a plain cache layout; layer 0 keeps the most, as kvpress forces); unstructured
// lets every head keep its own count (stored ragged: the memory is freed; kvpress masks).
// keep_token_lower_bound: every layer (and head) keeps at least that many. The second copy is dropped
// from the cache; the extra forward (one prefill's worth) is reported as ContextPassesCost. Batch 1.
// https://arxiv.org/abs/2509.05165
//
// Differences from kvpress 0.5.4: unstructured mode there leaves the second copy in the cache
// (unmasked), and add_v_norm multiplies by the norms of both copies (a shape error); here the copy is
// always removed and ||v|| is the context's.

#include <pikv/presses/context_pass.h>

#include <vector>

namespace pikv {

PIKV_ENUM(Aggregation, max, mean)

#define PIKV_KVCOMPOSE_OPTIONS(X)                                                                              \
  X(bool, structured, true, rule::any(), "one count per layer (plain layout); false: one per head (ragged)")  \
  PIKV_RATIO_OPTION(X)                                                                                         \
  X(Aggregation, agg_task, Aggregation::max, rule::any(), "over the second copy's queries: max | mean")        \
  X(Aggregation, agg_group, Aggregation::mean, rule::any(), "over the query heads of a KV head: max | mean")   \
  X(Aggregation, agg_head, Aggregation::mean, rule::any(), "over a layer's ranked head scores: max | mean")    \
  X(bool, add_v_norm, false, rule::any(), "multiply by the value norm")                                        \
  X(bool, add_mean_across_heads, true, rule::any(), "add the layer's mean over KV heads")                      \
  X(int64_t, keep_token_lower_bound, 0, rule::at_least(0), "tokens every layer (and head) keeps at least")

struct KVComposeOptions {
  PIKV_OPTIONS(KVComposeOptions, PIKV_KVCOMPOSE_OPTIONS)
};

class KVComposePress : public ContextPassPress {
 public:
  using Options = KVComposeOptions;
  static constexpr const char* kName = "kvcompose";
  explicit KVComposePress(const KVComposeOptions& options = {});
  std::string name() const override { return kName; }
  std::string describe() const override;
  double compression_ratio() const override { return options_.compression_ratio(); }
  PressRequirements requirements() const override;
  bool head_wise() const override { return !options_.structured(); }
  bool needs_context_passes() const override { return options_.compression_ratio() > 0; }

  // During the second forward: folds the layer's attention to the context into its statistics.
  CompressedKV compress(const AttentionContext& ctx) override;
  // The second forward, then every layer of passes.cache compressed to its budget.
  ContextPassesCost run_context_passes(const ContextPasses& passes) override;

  // Token scores of the last run_context_passes: float32 [L, Hkv, n]; tokens kept per layer and head:
  // int64 [L, Hkv].
  const at::Tensor& scores() const { return scores_; }
  const at::Tensor& kept_counts() const { return counts_; }
  const KVComposeOptions& options() const { return options_; }

 private:
  KVComposeOptions options_;
  int64_t context_ = 0;     // n: the context's tokens (the columns scored)
  std::vector<at::Tensor> task_;  // per layer float32 [Hkv, G, n]: agg_task over the second copy's queries
  at::Tensor scores_, counts_;
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/presses/detail/kvcompose-inl.h>
#endif
