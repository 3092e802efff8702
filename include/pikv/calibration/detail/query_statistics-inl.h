#pragma once

#include <pikv/calibration/query_statistics.h>
#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/hookable_model.h>
#include <pikv/core/kv_cache.h>
#include <pikv/io/files.h>
#include <pikv/io/safetensors.h>
#include <pikv/presses/duo_attention.h>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <map>

namespace pikv {

namespace detail {
// Sums (or, with concatenate, joins along dim 1), per layer, the tensors `measure` returns for every
// prefill layer it sees, and compresses nothing: the collector behind each calibrated artefact.
class LayerSums : public Press {
 public:
  using Measure = std::function<std::vector<at::Tensor>(const AttentionContext&)>;
  LayerSums(std::string name, Measure measure, bool concatenate = false)
      : name_(std::move(name)), measure_(std::move(measure)), concatenate_(concatenate) {}
  std::string name() const override { return name_; }
  double compression_ratio() const override { return 0.0; }
  PressRequirements requirements() const override { return PressRequirements::queries(); }
  CompressedKV compress(const AttentionContext& ctx) override {
    std::vector<at::Tensor> parts = measure_(ctx);
    std::vector<at::Tensor>& sum = sums_[ctx.layer];
    if (sum.empty()) {
      sum = std::move(parts);
    } else {
      for (size_t i = 0; i < sum.size(); ++i) sum[i] = concatenate_ ? at::cat({sum[i], parts[i]}, 1) : sum[i] + parts[i];
    }
    CompressedKV skip;
    skip.skipped = true;
    return skip;
  }
  // The sums of layer l, after checking that all of the model's `layers` were seen.
  const std::vector<at::Tensor>& layer(int64_t l, int64_t layers) const {
    PIKV_CHECK(static_cast<int64_t>(sums_.size()) == layers, "{}: {} of the model's {} layers exposed their queries",
               name_, sums_.size(), layers);
    return sums_.at(l);
  }

 private:
  std::string name_;
  Measure measure_;
  bool concatenate_;
  std::map<int64_t, std::vector<at::Tensor>> sums_;
};

// Runs every sample (batch 1) through the model with `collector` installed.
inline void run_samples(CausalLM& model, Press& collector, const std::vector<std::vector<int64_t>>& samples,
                        int64_t min_tokens, const std::function<void(int64_t, int64_t)>& progress) {
  PIKV_CHECK(!samples.empty(), "{} needs at least one calibration sample", collector.name());
  PressGuard guard(model, collector);
  for (size_t i = 0; i < samples.size(); ++i) {
    const auto& s = samples[i];
    PIKV_CHECK(static_cast<int64_t>(s.size()) >= min_tokens, "calibration sample {} has {} tokens, fewer than {}", i,
               s.size(), min_tokens);
    KVCache cache = model.make_cache(1);
    (void)model.forward(at::tensor(s, at::kLong).unsqueeze(0).to(model.options().device()), cache,
                        ForwardOptions().return_hidden(model.supports_hidden_output()));
    if (progress) progress(static_cast<int64_t>(i) + 1, static_cast<int64_t>(samples.size()));
  }
}
}  // namespace detail

PIKV_INLINE QueryStatistics collect_query_statistics(CausalLM& model, const std::vector<std::vector<int64_t>>& samples,
                                                     int64_t n_sink, const std::function<void(int64_t, int64_t)>& progress) {
  PIKV_CHECK(n_sink >= 0, "n_sink must be >= 0, got {}", n_sink);
  // Per layer: the sum of the queries [H, d] and of their outer products [H, d, d], in float64.
  detail::LayerSums collector("query statistics", [n_sink](const AttentionContext& ctx) {
    at::Tensor q = prerope_queries(ctx, n_sink, ctx.forward_length() - n_sink).to(at::kDouble)[0];  // [H, m, d]
    return std::vector<at::Tensor>{q.sum(1), at::matmul(q.transpose(-1, -2), q)};
  });
  detail::run_samples(model, collector, samples, n_sink + 1, progress);
  int64_t tokens = 0;
  for (const auto& s : samples) tokens += static_cast<int64_t>(s.size()) - n_sink;
  PIKV_CHECK(tokens > 1, "query statistics need at least 2 queries after the sinks, got {}", tokens);
  const int64_t L = model.num_layers();
  std::vector<at::Tensor> means, covs;
  const double N = static_cast<double>(tokens);
  for (int64_t l = 0; l < L; ++l) {
    const std::vector<at::Tensor>& sums = collector.layer(l, L);
    at::Tensor mean = sums[0] / N;  // [H, d]
    // Unbiased covariance from the sums: (sum q q^T - N mu mu^T) / (N - 1), in float64.
    at::Tensor cov = (sums[1] - N * mean.unsqueeze(-1) * mean.unsqueeze(-2)) / (N - 1.0);
    means.push_back(mean);
    covs.push_back(cov);
  }
  QueryStatistics out;
  out.mean = at::stack(means).to(at::kCPU, at::kFloat).contiguous();
  out.cov = at::stack(covs).to(at::kCPU, at::kFloat).contiguous();
  out.tokens = tokens;
  return out;
}

PIKV_INLINE at::Tensor collect_duo_head_scores(CausalLM& model, const std::vector<std::vector<int64_t>>& samples,
                                               int64_t q_len, const std::function<void(int64_t, int64_t)>& progress) {
  PIKV_CHECK(q_len >= 1, "q_len must be >= 1, got {}", q_len);
  detail::LayerSums collector("duo head scores", [q_len](const AttentionContext& ctx) {
    const int64_t T = ctx.forward_length();
    return std::vector<at::Tensor>{DuoAttentionPress::layer_head_scores(prerope_queries(ctx, 0, T),
                                                                        prerope_keys(ctx, 0, T), *ctx.layer_view, q_len)
                                       .to(at::kCPU, at::kDouble)};
  });
  detail::run_samples(model, collector, samples, 1, progress);
  const int64_t L = model.num_layers();
  std::vector<at::Tensor> rows;
  for (int64_t l = 0; l < L; ++l) rows.push_back(collector.layer(l, L)[0] / static_cast<double>(samples.size()));
  return at::stack(rows).to(at::kFloat).contiguous();
}

PIKV_INLINE at::Tensor collect_qfilters(CausalLM& model, const std::vector<std::vector<int64_t>>& samples,
                                        int64_t max_queries, uint64_t seed,
                                        const std::function<void(int64_t, int64_t)>& progress) {
  PIKV_CHECK(max_queries >= 2, "qfilter calibration needs max_queries >= 2, got {}", max_queries);
  PIKV_CHECK(!samples.empty(), "qfilter calibration needs at least one calibration sample");
  const ModelShape shape = model.shape();
  PIKV_CHECK(shape.num_heads > 0 && shape.num_kv_heads > 0 && shape.num_heads % shape.num_kv_heads == 0,
             "qfilter calibration needs the model's query and KV head counts, got {} and {}", shape.num_heads,
             shape.num_kv_heads);
  // The query rows: every token, or max_queries of them drawn once and shared by all heads.
  std::vector<int64_t> offsets = {0};
  for (const auto& s : samples) offsets.push_back(offsets.back() + static_cast<int64_t>(s.size()));
  const int64_t total = offsets.back();
  at::Tensor chosen = at::arange(total, at::kLong);
  if (total > max_queries) {
    at::Generator gen = at::detail::createCPUGenerator(seed);
    chosen = std::get<0>(at::randperm(total, gen, at::kLong).narrow(0, 0, max_queries).sort());
  }
  const at::Device device = model.options().device();
  at::Tensor rows_of_sample;  // positions of the current sample's chosen rows (set before each forward)
  detail::LayerSums collector(
      "qfilter calibration",
      [&rows_of_sample](const AttentionContext& ctx) {
        at::Tensor q = rotated_queries(ctx, 0, ctx.forward_length())[0];  // [H, T, d] post-RoPE
        return std::vector<at::Tensor>{q.index_select(1, rows_of_sample).to(at::kCPU, at::kDouble)};
      },
      /*concatenate=*/true);
  for (size_t i = 0; i < samples.size(); ++i) {
    const int64_t lo = offsets[i], hi = offsets[i + 1];
    at::Tensor mine = chosen.masked_select((chosen >= lo) & (chosen < hi)) - lo;
    if (mine.numel() == 0) continue;
    rows_of_sample = mine.to(device);
    detail::run_samples(model, collector, {samples[i]}, 1, {});
    if (progress) progress(static_cast<int64_t>(i) + 1, static_cast<int64_t>(samples.size()));
  }
  const int64_t L = model.num_layers(), Hkv = shape.num_kv_heads, G = shape.num_heads / shape.num_kv_heads;
  std::vector<at::Tensor> filters;
  for (int64_t l = 0; l < L; ++l) {
    const at::Tensor X = collector.layer(l, L)[0];  // [H, N, d] float64
    PIKV_CHECK(X.size(0) == shape.num_heads, "qfilter calibration: layer {} exposed {} query heads, expected {}", l,
               X.size(0), shape.num_heads);
    // The top right singular vector of X is the top eigenvector of X^T X (eigh sorts ascending).
    const at::Tensor v0 = std::get<1>(at::linalg_eigh(at::matmul(X.transpose(1, 2), X))).select(-1, -1);  // [H, d]
    // Orient it toward the majority of queries (Q-Filters: the share of rows with u0 > 0 against 0.5).
    // At an exact tie the authors' result follows the SVD's arbitrary sign of v0; we take the sign of
    // the summed projections instead, so the filter does not depend on the solver.
    const at::Tensor proj = at::matmul(X, v0.unsqueeze(-1)).squeeze(-1);  // [H, N]
    const at::Tensor positive = (proj > 0).to(at::kDouble).mean(1);       // [H]
    const at::Tensor tie_sign = at::where(proj.sum(1) > 0, at::ones_like(positive), -at::ones_like(positive));
    const at::Tensor sign = at::where(positive > 0.5, at::ones_like(positive),
                                      at::where(positive < 0.5, -at::ones_like(positive), tie_sign));
    const at::Tensor f = -sign.unsqueeze(-1) * v0;  // [H, d]
    filters.push_back(f.view({Hkv, G, f.size(-1)}).mean(1));
  }
  return at::stack(filters).to(at::kFloat).contiguous();
}

PIKV_INLINE void save_query_statistics(const std::string& dir, const QueryStatistics& stats,
                                       const QueryStatisticsInfo& info) {
  PIKV_CHECK(stats.mean.defined() && stats.mean.dim() == 3, "save_query_statistics: mean must be [L, H, d]");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  PIKV_CHECK(!ec, "cannot create the statistics folder '{}': {}", dir, ec.message());
  const nlohmann::json config = {{"num_layers", stats.mean.size(0)},     {"num_heads", stats.mean.size(1)},
                                 {"head_dim", stats.mean.size(2)},       {"dataset_name", info.dataset_name},
                                 {"model_name", info.model_name},        {"num_samples", info.num_samples},
                                 {"sample_seq_len", info.sample_seq_len}, {"n_sink", info.n_sink}};
  io::save_safetensors(dir + "/model.safetensors", {{"query_mean", stats.mean}, {"query_cov", stats.cov}});
  io::write_file_atomically(dir + "/config.json", config.dump(2) + "\n", "statistics config");
}

}  // namespace pikv
