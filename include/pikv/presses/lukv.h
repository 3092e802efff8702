#pragma once
// LU-KV (kvpress's LUKVPress, https://arxiv.org/abs/2602.08585): head-wise budgets read from a
// precomputed budget curve around a scorer. The curve [99, L, Hkv] holds, for each global ratio
// (i + 1) / 100, the fraction of every layer's KV head to prune; it is computed offline by comparing the
// scorer's ranking with the attention that generated answers really pay (`pikv calibrate lukv` writes
// one for any model). At ratio r the row round(100 r) - 1 applies: each head keeps its share of the
// layer's tokens (rounded so the layer total is kept, the remainder to the largest fractions), its
// top-scoring tokens by a stable sort; the first `sink` and last `window` tokens rank first.
// kvpress downloads the one curve it knows (Llama-3.1-8B-Instruct with ExpectedAttention); this press
// reads curve=FILE.npy. kvpress masks the pruned entries; here the layer is stored head-wise (ragged:
// the memory is freed). The default scorer is kvpress's: expected_attention with epsilon 0.02.

#include <pikv/core/press.h>

#include <memory>
#include <string>

namespace pikv {

#define PIKV_LUKV_OPTIONS(X)                                                                                        \
  X(std::string, curve, "", rule::any(), "budget curves .npy [99, L, Hkv] (required; pikv calibrate lukv writes one)") \
  X(int64_t, sink, 4, rule::at_least(0), "leading tokens always kept")                                              \
  X(int64_t, window, 1, rule::at_least(0), "most recent tokens always kept")

struct LUKVOptions {
  PIKV_OPTIONS(LUKVOptions, PIKV_LUKV_OPTIONS)
};

class LUKVPress : public ScorerWrapperBase<LUKVPress, LUKVOptions> {
 public:
  static constexpr const char* kName = "lukv";
  // Loads options.curve (throws naming the file for a missing file or a shape other than [99, L, Hkv]);
  // a press built without a curve throws when it first compresses at a ratio above 0.
  LUKVPress(std::shared_ptr<ScorerPress> press, const LUKVOptions& options = {});
  bool head_wise() const override { return true; }
  // Checks the curve's L against the model.
  void on_attach(const HookableModel& model) override;

  // The curve: float64 [99, L, Hkv] (undefined without one).
  const at::Tensor& curve() const { return curve_; }

 protected:
  // keys/values [B, Hkv, n, d] -> head-wise result: [B, Hkv, k_max, d], head_lengths [B, Hkv].
  CompressedKV compress_wrapped(const AttentionContext& ctx, double ratio) override;

 private:
  at::Tensor curve_;
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/presses/detail/lukv-inl.h>
#endif
