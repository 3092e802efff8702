#pragma once
// Artefacts that are trained rather than measured, for any model (kvpress downloads them for a few):
// - KVzap's surrogates (kvzap press): per layer, a linear model (ridge regression, closed form) or a
//   two-layer MLP (AdamW) from the attention block's input to each KV head's log KVzip+ score;
// - Fast KVzip's gates (fastkvzip press): per layer, a small query/key gate trained with binary
//   cross-entropy towards each token's KVzip score (momentum SGD);
// - LU-KV's budget curves (lukv press): how much of each layer's heads to prune at every global ratio,
//   from how the wrapped scorer's ranking matches the attention generated answers really pay.
// The targets come from the model itself on calibration text: KVzip's context reconstruction (the
// kvzip press's own scores) and greedy answers to questions about the text.
// `pikv calibrate PRESS` runs them through the recipe table (calibration/recipes.h).

#include <pikv/core/causal_lm.h>
#include <pikv/core/press.h>
#include <pikv/eval/tasks.h>
#include <pikv/pipeline/pipeline.h>
#include <pikv/presses/fastkvzip.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace pikv {

// (done, total) after each sample or training step.
using CalibrationStep = std::function<void(int64_t, int64_t)>;

// ---- KVzip targets ----

struct KVzipTargetOptions {
  bool plus = false;              // KVzip+ (attention / ||h|| x ||W_o v||), what KVzap predicts
  int64_t tokens_per_sample = 256;  // context tokens drawn per sample (the same for every layer)
  int64_t n_sink = 4;             // leading tokens never drawn (KVzip keeps them anyway)
  int64_t chunk_size = 2048;      // KVzip's repeat chunks
  uint64_t seed = 0;
};

struct KVzipTargets {
  std::vector<at::Tensor> inputs;  // per layer, float32 [N, Dm]: the attention block's input of the drawn tokens
  at::Tensor scores;               // float32 [L, N, Hkv]: their KVzip (or KVzip+) scores
  ContextPassesCost cost;          // the repeat forwards, summed
};

// Prefills every context through `pipeline` (its chat template, as the pipeline would) and runs
// KVzip's reconstruction on it; draws tokens of the context text (after the template's prefix and the
// sinks). Throws for an empty list, a context too short to draw from, or a model that exposes no
// hidden states.
[[nodiscard]] KVzipTargets collect_kvzip_targets(CausalLM& model, const Pipeline& pipeline,
                                                 const std::vector<std::string>& contexts,
                                                 const KVzipTargetOptions& options, const CalibrationStep& progress = {});

// ---- KVzap ----

struct KVzapTrainingOptions {
  std::string model_type = "linear";  // linear (ridge) or mlp
  double alpha = 1.0;                 // ridge penalty (scikit-learn's Ridge default; the intercept is free)
  int64_t hidden_dim = 512;           // mlp: hidden units (GELU)
  int64_t epochs = 15, batch_size = 512;
  double learning_rate = 5e-3, weight_decay = 0.01, clip = 1.0;  // AdamW, cosine schedule per epoch
  double validation = 0.05;           // share of rows held out, drawn with seed (both types report on them)
  uint64_t seed = 42;
};

struct SurrogateReport {
  std::vector<double> r2;            // per layer, held-out R^2 of the predicted log scores (KVzap)
  std::vector<double> loss;          // per layer, held-out loss (KVzap: MSE; Fast KVzip: BCE)
  std::vector<double> top_half;      // per layer, held-out share of the target's top half that the prediction
                                     // also ranks in its top half, per KV head (0.5 = chance, 1 = same sets)
  int64_t train_rows = 0, held_out_rows = 0;
  double train_ms = 0;
  std::string markdown() const;
};

struct KVzapModel {
  int64_t input_dim = 0, output_dim = 0, hidden_dim = 0;  // hidden 0: linear
  // Per layer, in the folder's names: linear "weight" [Hkv, Dm], "bias" [Hkv]; mlp "0.weight", "0.bias",
  // "2.weight", "2.bias".
  std::vector<std::map<std::string, at::Tensor>> layers;
  SurrogateReport report;
};

// Fits KVzap's surrogate to log(targets.scores) (collect them with plus = true). Throws for an unknown
// model_type or too few rows.
[[nodiscard]] KVzapModel train_kvzap(const KVzipTargets& targets, const KVzapTrainingOptions& options,
                                     const CalibrationStep& progress = {});
// Writes the folder the kvzap press (kvzap_model=DIR) and kvpress's KVzapModel read.
void write_kvzap_model(const std::string& dir, const KVzapModel& model);

// ---- Fast KVzip ----

struct FastKVzipTrainingOptions {
  int64_t steps = 5000, batch_size = 1000;  // the authors' recipe
  double learning_rate = 0.2, momentum = 0.9;
  int64_t output_dim = 16, sink = 16;
  double held_out = 0.01;                   // every 1/held_out-th row is held out (the authors: every 100th)
  uint64_t seed = 0;
};

struct FastKVzipGates {
  FastKVzipPress::GateShape shape;
  std::vector<std::map<std::string, at::Tensor>> layers;  // names as FastKVzipPress::write_gates takes them
  SurrogateReport report;
};

// Trains one gate per layer towards targets.scores (collect them with plus = false; scores in [0, 1]).
// `group` = query heads per KV head. The loss sums each layer's mean BCE over heads and layers.
[[nodiscard]] FastKVzipGates train_fastkvzip(const KVzipTargets& targets, int64_t group,
                                             const FastKVzipTrainingOptions& options, const CalibrationStep& progress = {});

// ---- LU-KV ----

struct LUKVCurveOptions {
  int64_t new_tokens = 64;   // greedy answer tokens whose attention is the oracle (the authors sample 64 at T=0.7)
  int64_t sink = 4, window = 1;
  bool per_layer = false;    // allocate within each layer (default: across all layers and heads, the authors' --layerwise)
};

// The authors' step 2 for one (context, question): scorer table pred and oracle gt, both [L, Hkv, n]
// (any float) -> prune fractions float64 [99, L, Hkv]. Per head, the middle tokens (after `sink`,
// before the last `window`) ranked by pred (best first) cost their oracle utility, smoothed by the
// lower convex hull of the cumulative cost from the worst rank up; a greedy pass evicts the cheapest
// next token of any head (ties: lower layer, head) until round((i + 1)% of L x Hkv x n) are gone, each
// head keeping at least max(round(1% of n), sink + window).
[[nodiscard]] at::Tensor lukv_budget_curve(const at::Tensor& pred, const at::Tensor& gt, const LUKVCurveOptions& options);

// The whole recipe: for every sample, the scorer's scores of its context prefill and the attention its
// greedy answer (stopping at the tokenizer's end of sequence) pays the context (per decode step, each query head's weights times the normalised
// ||W_o v|| of the token, max over the group and the steps), then lukv_budget_curve, averaged over the
// samples: float64 [99, L, Hkv]. Write it with io::write_npy.
[[nodiscard]] at::Tensor collect_lukv_curve(CausalLM& model, const Pipeline& pipeline, const Tokenizer& tokenizer,
                                            ScorerPress& scorer,
                                            const std::vector<eval::Sample>& samples, const LUKVCurveOptions& options,
                                            const CalibrationStep& progress = {});

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/calibration/detail/learned_scorers-inl.h>
#endif
