#pragma once
// CAM (kvpress's CAMPress, Cache Merging): a decoding press that merges before it evicts. Every
// decoding forward adds the attention of its last query to a running sum per cached token (mean over
// the query heads of a KV head). Every compression_interval steps, when the cache is longer than
// target_size: the base scorer's scores, averaged over KV heads, keep the same target_size tokens in
// every head; among the evicted tokens the `steps` best-scored (ties: the later one) are merge
// candidates. A candidate's value is spread over the merge_budget kept tokens that follow it, with
// probability clamp(A_i / mean A_window, 0, 1) (A: the running attention), drawn per KV head from a
// Bernoulli; then the cache is pruned. Keys are never changed. seed: layer l draws from a generator
// seeded seed + l at each compression (kvpress draws from torch's global generator).
// https://openreview.net/forum?id=LCTmppB165

#include <pikv/presses/decoding.h>

#include <map>
#include <optional>

namespace pikv {

#define PIKV_CAM_OPTIONS(X)                                                                                          \
  X(int64_t, compression_interval, 512, rule::at_least(1), "decoding steps between compressions")                  \
  X(int64_t, target_size, 2048, rule::at_least(1), "tokens kept per head after a compression")                     \
  X(int64_t, hidden_states_buffer_size, 256, rule::at_least(0), "decoding steps whose hidden states are kept")     \
  X(int64_t, merge_budget, 32, rule::at_least(1), "kept tokens after an evicted one that share its value")         \
  X(std::optional<uint64_t>, seed, std::nullopt, rule::any(), "seed of the merge draws (layer l uses seed + l)")

struct CAMOptions {
  PIKV_OPTIONS(CAMOptions, PIKV_CAM_OPTIONS)
};

class CAMPress : public DecodingPress {
 public:
  using Options = CAMOptions;
  static constexpr const char* kName = "cam";
  explicit CAMPress(std::shared_ptr<ScorerPress> base, const CAMOptions& options = {});
  std::string name() const override { return kName; }
  std::string describe() const override;
  PressRequirements requirements() const override;
  void reset() override;

  // Attention of the forward's last query over the layer's cache, averaged over each KV head's query
  // heads: ctx.keys [B, Hkv, n, d] -> [B, Hkv, n] in the keys' dtype (softmax in float32).
  static at::Tensor last_query_attention(const AttentionContext& ctx);

 protected:
  void observe_step(const AttentionContext& ctx) override;
  bool compression_due(const AttentionContext& ctx, int64_t steps, int64_t target_tokens) const override;
  // keys/values [B, Hkv, n, d] -> [B, Hkv, target, d]: merged values, pruned.
  CompressedKV compress_buffered(const AttentionContext& sub, double ratio, int64_t target_tokens, int64_t steps) override;

 private:
  CAMOptions options_;
  std::map<int64_t, at::Tensor> attention_;  // layer -> running attention [B, Hkv, n]
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/presses/detail/cam-inl.h>
#endif
