#pragma once
// Compression experts for MoERouterPress (docs/routing.md): scoring rules over the cached tokens of
// every (batch row, KV head). The window attention that two experts and the gate need is computed once
// per layer (LayerSignals) and shared. Any ScorerPress can be registered as an expert.

#include <ATen/core/Tensor.h>

#include <pikv/core/press.h>

#include <memory>
#include <string>
#include <vector>

namespace pikv::routing {

// What the router computes once per layer from the prefill, shared by the experts and the gate.
struct LayerSignals {
  int64_t window = 0;           // w: the last w prefill queries observe the cache
  int64_t n_sink = 0;           // leading tokens the streaming expert and gate feature f2 treat as sinks
  at::Tensor attention;         // ā: float32 [B, Hkv, n], the window queries' attention over every cached
                                // token (in-window causal part included), mean over queries and each KV
                                // head's query group, rows summing to 1
  at::Tensor window_scores;     // SnapKV's pooled score a(j) of the tokens before the window: [B, Hkv, n - w]
  at::Tensor key_norms;         // float32 [B, Hkv, n], ||k_j||_2
};

// Computes the signals of one prefill layer. Needs ctx.hidden_states with more than `window` tokens
// and a layer view (or attention weights); throws pikv::Error naming the layer otherwise.
LayerSignals compute_signals(const AttentionContext& ctx, int64_t window, int64_t kernel_size, int64_t n_sink);

class Expert {
 public:
  virtual ~Expert() = default;
  virtual std::string name() const = 0;
  // Higher = keep. ctx.keys [B, Hkv, n, d] -> [B, Hkv, n]. `ratio` is the call's compression ratio.
  virtual at::Tensor score(const AttentionContext& ctx, const LayerSignals& signals, double ratio) const = 0;
  // How many of the last cached positions this expert always keeps (the attention experts' window):
  // the router keeps them whenever the expert is selected.
  virtual int64_t protected_tail(const AttentionContext& ctx, const LayerSignals& signals) const { return 0; }
  // Whether the expert needs the layer signals (window attention): all built-in ones but key_norm.
  virtual PressRequirements requirements() const { return {}; }
};

// The default experts, in the spec's order (expert index e = 0..3).
// streaming: sinks (first n_sink) score 2, other tokens position / n (recent ranks high).
std::shared_ptr<Expert> streaming_expert();
// key_norm: -||k||_2 (Knorm).
std::shared_ptr<Expert> key_norm_expert();
// window_attention: SnapKV's pooled window attention a(j), window protected.
std::shared_ptr<Expert> window_attention_expert();
// value_attention: a(j) * ||v_j||_2, window protected.
std::shared_ptr<Expert> value_attention_expert();
// Any scorer press as an expert (its own options; the router's ratio is passed to score()).
std::shared_ptr<Expert> scorer_expert(std::shared_ptr<ScorerPress> press, std::string name = "");

std::vector<std::shared_ptr<Expert>> default_experts();
// Names of the built-in experts: streaming, key_norm, window_attention, value_attention.
const std::vector<std::string>& builtin_expert_names();
// A built-in expert by name, or a catalogue scorer press by name (default options) as an expert.
// Throws pikv::Error for anything else, listing the choices.
std::shared_ptr<Expert> make_expert(const std::string& name);

// Ascending rank of every score in its row divided by (n - 1), in [0, 1]; ties: the later position
// ranks higher (stable sort). scores [B, Hkv, n] -> float32 [B, Hkv, n] (zeros when n == 1).
at::Tensor normalized_ranks(const at::Tensor& scores);

// What the router ranks by when `expert` is selected alone: its normalised ranks with its protected tail
// set to 2 (above every rank). -> float32 [B, Hkv, n]
at::Tensor solo_keep_scores(const Expert& expert, const AttentionContext& ctx, const LayerSignals& signals,
                            double ratio);

}  // namespace pikv::routing

#ifdef PIKV_HEADER_ONLY
#include <pikv/routing/detail/experts-inl.h>
#endif
