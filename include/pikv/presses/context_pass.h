#pragma once
// A press that compresses after the prefill by reading its context again with the model: extra
// forwards appended to the prefilled cache (KVzip repeats the context, KVCompose forwards it a second
// time), scored by the press's compress() while they run, then dropped from the cache before the
// press applies its selection to every layer. The runner calls run_context_passes right after the
// prefill, with the press still installed (pikv::Pipeline, SharedPrefill and record_press do).

#include <pikv/core/press.h>

#include <vector>

namespace pikv {

class ContextPassPress : public Press {
 public:
  void on_prefill_begin() override { state_ = State::prefilling; }
  void reset() override { state_ = State::idle; }
  // True while an extra forward runs; throws for a forward after a prefill whose passes were skipped.
  bool should_compress(const AttentionContext& ctx) const override;

 protected:
  enum class State { idle, prefilling, scoring, done };

  // Checks that passes.cache holds exactly the prefilled context, uncompressed, batch 1; returns its
  // length n and the number of KV heads.
  struct Shape {
    int64_t layers = 0, tokens = 0, kv_heads = 0;
    at::TensorOptions options;  // of the cached keys
  };
  Shape check_whole_context(const ContextPasses& passes) const;
  // One extra forward of `ids` [B=1] appended to the cache at positions n.., scored by compress()
  // (state scoring), then truncated back to the n context tokens; counted into `cost`.
  void scoring_forward(const ContextPasses& passes, const std::vector<int64_t>& ids, ContextPassesCost& cost);
  // KVzip's selection, shared by the presses that score every cached entry of every layer: the lowest
  // int(ratio x all entries) of scores [L, 1, Hkv, n] go, counted across all layers and heads (kvpress
  // counts globally, then prunes per layer: layers end with different budgets), or int(ratio x Hkv x n)
  // in every layer (layerwise). Each layer of `cache` is stored head-wise.
  static void prune_lowest(const at::Tensor& scores, double ratio, bool layerwise, KVCache& cache);

  State state_ = State::idle;
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/presses/detail/context_pass-inl.h>
#endif
