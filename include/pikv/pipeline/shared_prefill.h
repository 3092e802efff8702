#pragma once
// SharedPrefill: prefill once, compress many ways. A press never changes the outputs of the prefill it
// compresses (it acts after each layer's attention), so the cache a prefill leaves under ANY press can
// be built from one uncompressed prefill: this captures every pressed layer's AttentionContext during
// that prefill and replays the press on it. Evaluation grids and the needle table use it to pay one
// prefill per sample instead of one per (press, ratio).

#include <ATen/core/Tensor.h>

#include <pikv/core/kv_cache.h>
#include <pikv/core/press.h>
#include <pikv/core/stats.h>
#include <pikv/core/causal_lm.h>

#include <map>

namespace pikv {

class SharedPrefill {
 public:
  // Runs the uncompressed prefill of input_ids (int64 [B, T]). With attention_weights the model runs
  // eager attention and keeps every layer's weights [B, H, T, T] (ObservedAttention needs them; memory
  // grows with T^2).
  SharedPrefill(CausalLM& model, const at::Tensor& input_ids, bool attention_weights = false,
                const ForwardOptions& options = {});

  // The cache the prefill leaves under `press` (nullptr: the uncompressed cache), with what the press
  // did in `stats`. Presses that act during decoding are refused (nothing to replay). Throws when the
  // press needs attention weights that were not captured. A press that re-reads its context after the
  // prefill (KVzip) runs its extra forwards on a copy of the cache: it needs `passes` (the model and
  // cache fields are filled here; Pipeline::context_passes gives the rest), and `cost` receives them.
  [[nodiscard]] KVCache compress(Press* press, CompressionStats* stats = nullptr, const ContextPasses* passes = nullptr,
                                 ContextPassesCost* cost = nullptr) const;

  // Logits of the prefill's last position: float [B, V] (the first answer token of a run without a
  // question part).
  const at::Tensor& last_logits() const { return last_logits_; }
  int64_t length() const { return full_.logical_length(0); }
  double prefill_ms() const { return prefill_ms_; }

 private:
  CausalLM& model_;
  KVCache full_;
  std::map<int64_t, AttentionContext> contexts_;  // pressed layers only
  at::Tensor last_logits_;
  bool weights_;
  double prefill_ms_ = 0.0;
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/pipeline/detail/shared_prefill-inl.h>
#endif
