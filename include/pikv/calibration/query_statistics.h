#pragma once
// Statistics of a model's queries that presses load as artefacts, computed for any model and text
// (kvpress computes them from BookSum chapters and ships them for a few models):
// - expected_attention_with_stats: the mean and covariance of every layer's pre-RoPE queries (after
//   q/k-norm where the model has one), the first n_sink tokens of each sample left out (outliers);
// - duo_attention: its on-the-fly head scores averaged over samples (a head pattern);
// - qfilter: the dominant direction of every head's post-RoPE queries (Q-Filters).

#include <pikv/core/causal_lm.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace pikv {

struct QueryStatistics {
  at::Tensor mean;     // float32 [L, H, d]
  at::Tensor cov;      // float32 [L, H, d, d], unbiased (divided by tokens - 1)
  int64_t tokens = 0;  // queries per head that went into them
};

// Runs `model` on every sample (token ids, each longer than n_sink) and accumulates its queries in
// float64. progress(done, total) after each sample.
[[nodiscard]] QueryStatistics collect_query_statistics(CausalLM& model, const std::vector<std::vector<int64_t>>& samples,
                                                       int64_t n_sink,
                                                       const std::function<void(int64_t, int64_t)>& progress = {});

// What kvpress's loader records beside the tensors (config.json).
struct QueryStatisticsInfo {
  std::string model_name, dataset_name;
  int64_t num_samples = 0, sample_seq_len = 0, n_sink = 4;
};

// Writes DIR/config.json and DIR/model.safetensors (query_mean, query_cov): the folder
// expected_attention_with_stats (stats_folder=DIR) and kvpress's ExpectedAttentionStats.from_pretrained read.
void save_query_statistics(const std::string& dir, const QueryStatistics& stats, const QueryStatisticsInfo& info);

// DuoAttention's on-the-fly head scores (DuoAttentionPress::layer_head_scores) of every layer, averaged
// over the samples: float32 [L, Hkv]. Write them with DuoAttentionPress::write_pattern.
[[nodiscard]] at::Tensor collect_duo_head_scores(CausalLM& model, const std::vector<std::vector<int64_t>>& samples,
                                                 int64_t q_len,
                                                 const std::function<void(int64_t, int64_t)>& progress = {});

// Q-Filters (the qfilter press): per layer and query head, the dominant direction v0 of the post-RoPE
// queries (top right singular vector of the sampled query rows, not centred), oriented so that most
// queries project positively (at an exact tie: the summed projection decides), negated (the press
// scores -(f . k)), then averaged over each KV head's query group: float32 [L, Hkv, d]. At most
// max_queries rows, the same rows for every head, drawn with `seed` from all tokens of all samples;
// every token when there are fewer. Write them with QFilterPress::write_filters.
[[nodiscard]] at::Tensor collect_qfilters(CausalLM& model, const std::vector<std::vector<int64_t>>& samples,
                                          int64_t max_queries = 3000, uint64_t seed = 0,
                                          const std::function<void(int64_t, int64_t)>& progress = {});

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/calibration/detail/query_statistics-inl.h>
#endif
