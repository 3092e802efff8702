#pragma once
// DuoAttention (kvpress's DuoAttentionPress): a fraction of the KV heads become streaming heads that
// keep only the first sink_size and the last recent_size tokens; the other (retrieval) heads keep
// everything. Which heads stream is decided globally (across layers) by a per-head score: the heads
// whose attention is most local go first. Stored ragged per head, so the memory is really freed
// (kvpress masks).
//
// Head scores, on the fly (kvpress's experimental on_the_fly_scoring): per layer, the mean pre-RoPE
// query and key of a text, each repeated over q_len positions and rotated there; a head's score is the
// area under the cumulative attention curve of the last query over those keys (averaged over the query
// heads of a KV head). kvpress averages 50 BookSum chapters, downloaded; here the text is the prefill
// itself (no download, no extra forward: the scores are taken during the prefill and the heads pruned
// right after it, as a context pass of zero forwards).
//
// Head patterns (attention_pattern=DIR): DuoAttention's published layout, config.json (sink_size,
// recent_size, which then replace the options) and full_attention_heads.tsv (one row per layer, one
// tab-separated score per KV head, clipped to [0, 1]). The authors publish trained patterns for six
// large checkpoints; `pikv calibrate duo_attention` writes one for any model with the on-the-fly
// recipe averaged over calibration samples (kvpress's recipe over BookSum). One of the two sources is
// required. https://arxiv.org/abs/2410.10819

#include <pikv/presses/context_pass.h>

#include <vector>

namespace pikv {

#define PIKV_DUO_ATTENTION_OPTIONS(X)                                                                         \
  X(double, head_compression_ratio, 0.0, rule::ratio(), "fraction of KV heads turned into streaming heads")    \
  X(bool, on_the_fly_scoring, false, rule::any(), "score the heads from the prefill (required: see pikv presses)") \
  X(int64_t, sink_size, 128, rule::at_least(0), "first tokens a streaming head keeps")                        \
  X(int64_t, recent_size, 256, rule::at_least(0), "last tokens a streaming head keeps")                       \
  X(int64_t, q_len, 500, rule::at_least(1), "positions of the on-the-fly attention estimate")                  \
  X(std::string, attention_pattern, "", rule::any(), "folder with config.json + full_attention_heads.tsv")

struct DuoAttentionOptions {
  PIKV_OPTIONS(DuoAttentionOptions, PIKV_DUO_ATTENTION_OPTIONS)
};

class DuoAttentionPress : public ContextPassPress {
 public:
  using Options = DuoAttentionOptions;
  static constexpr const char* kName = "duo_attention";
  // Loads options.attention_pattern when given (throws naming the file and line of a malformed one).
  explicit DuoAttentionPress(const DuoAttentionOptions& options = {});
  std::string name() const override { return kName; }
  std::string describe() const override;
  // The fraction of streaming heads (what is removed is that times (1 - (sink + recent) / n)).
  double compression_ratio() const override { return options_.head_compression_ratio(); }
  PressRequirements requirements() const override;
  bool head_wise() const override { return true; }
  bool needs_context_passes() const override { return options_.head_compression_ratio() > 0; }

  // During the prefill: scores the layer's heads from its queries and keys; compresses nothing yet.
  bool should_compress(const AttentionContext& ctx) const override;
  CompressedKV compress(const AttentionContext& ctx) override;
  // No forward: ranks all heads, then every streaming head of passes.cache keeps sinks + recent tokens.
  ContextPassesCost run_context_passes(const ContextPasses& passes) override;

  // Head scores: the pattern's, else those of the last prefill: float32 [L, Hkv] (higher = more
  // global); streaming heads of the last compression: bool [L, Hkv].
  at::Tensor head_scores() const;
  const at::Tensor& streaming() const { return streaming_; }
  const DuoAttentionOptions& options() const { return options_; }

  // One layer's on-the-fly head scores from its pre-RoPE queries [1, H, T, d] and keys [1, Hkv, T, d],
  // rotated by `view` at positions 0..q_len-1 -> float32 [Hkv].
  static at::Tensor layer_head_scores(const at::Tensor& queries, const at::Tensor& keys, const AttentionLayerView& view,
                                      int64_t q_len);
  // Reads a pattern folder: scores float32 [L, Hkv] in [0, 1], sink_size, recent_size.
  struct Pattern {
    at::Tensor scores;
    int64_t sink_size = 0, recent_size = 0;
  };
  static Pattern read_pattern(const std::string& dir);
  // Writes one (scores [L, Hkv]).
  static void write_pattern(const std::string& dir, const at::Tensor& scores, int64_t sink_size, int64_t recent_size);

 private:
  DuoAttentionOptions options_;
  std::vector<at::Tensor> scores_;  // per layer [Hkv], on the fly
  at::Tensor pattern_;              // [L, Hkv] from attention_pattern
  int64_t sink_ = 0, recent_ = 0;   // what streaming heads keep (the pattern's or the options')
  at::Tensor streaming_;
  double scoring_ms_ = 0.0;  // head scoring during the last prefill
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/presses/detail/duo_attention-inl.h>
#endif
