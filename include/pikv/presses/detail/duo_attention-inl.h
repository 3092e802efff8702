#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/detail/clock.h>
#include <pikv/core/kv_cache.h>
#include <pikv/core/registry.h>
#include <pikv/io/files.h>
#include <pikv/presses/duo_attention.h>

#include <ATen/ATen.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <sstream>

namespace pikv {

PIKV_INLINE DuoAttentionPress::DuoAttentionPress(const DuoAttentionOptions& options) : options_(options) {
  validate_options(options_);
  sink_ = options_.sink_size();
  recent_ = options_.recent_size();
  if (options_.attention_pattern().empty()) return;
  PIKV_CHECK(!options_.on_the_fly_scoring(),
             "duo_attention: on_the_fly_scoring=true and attention_pattern={} both give head scores; choose one",
             options_.attention_pattern());
  Pattern p = read_pattern(options_.attention_pattern());
  pattern_ = p.scores;
  sink_ = p.sink_size;
  recent_ = p.recent_size;
}

PIKV_INLINE DuoAttentionPress::Pattern DuoAttentionPress::read_pattern(const std::string& dir) {
  Pattern p;
  const std::string config_path = dir + "/config.json", tsv_path = dir + "/full_attention_heads.tsv";
  nlohmann::json config;
  try {
    config = nlohmann::json::parse(io::read_text_file(config_path, "DuoAttention pattern config"));
    // An integer check first: get<int64_t>() of a JSON float outside int64's range is undefined
    // behaviour (found by the fuzzer with sink_size 8.2e36).
    const auto integer = [&](const char* key) {
      const nlohmann::json& v = config.at(key);
      PIKV_CHECK(v.is_number_integer(), "DuoAttention pattern config '{}': {} must be an integer, got {}", config_path,
                 key, v.dump());
      return v.get<int64_t>();
    };
    p.sink_size = integer("sink_size");
    p.recent_size = integer("recent_size");
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("DuoAttention pattern config '{}': {} (expected integers sink_size and recent_size)",
                            config_path, e.what()));
  }
  PIKV_CHECK(p.sink_size >= 0 && p.recent_size >= 0 && p.sink_size <= (int64_t{1} << 40) && p.recent_size <= (int64_t{1} << 40),
             "DuoAttention pattern config '{}': sink_size {} and recent_size {} must be >= 0", config_path, p.sink_size,
             p.recent_size);
  std::istringstream lines(io::read_text_file(tsv_path, "DuoAttention head pattern"));
  std::vector<float> values;
  int64_t rows = 0, cols = -1;
  std::string line;
  for (int64_t number = 1; std::getline(lines, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    std::istringstream cells(line);
    std::string cell;
    int64_t n = 0;
    while (std::getline(cells, cell, '\t')) {
      char* end = nullptr;
      const double v = std::strtod(cell.c_str(), &end);
      PIKV_CHECK(end != cell.c_str() && std::isfinite(v) && std::string(end).find_first_not_of(" \r") == std::string::npos,
                 "DuoAttention head pattern '{}' line {}: '{}' is not a number", tsv_path, number, cell);
      values.push_back(static_cast<float>(std::clamp(v, 0.0, 1.0)));  // kvpress clips to [0, 1]
      ++n;
    }
    PIKV_CHECK(cols < 0 || n == cols, "DuoAttention head pattern '{}' line {}: {} heads, earlier lines have {}", tsv_path,
               number, n, cols);
    cols = n;
    ++rows;
  }
  PIKV_CHECK(rows > 0 && cols > 0, "DuoAttention head pattern '{}' has no scores", tsv_path);
  p.scores = at::tensor(values, at::kFloat).view({rows, cols});
  return p;
}

PIKV_INLINE void DuoAttentionPress::write_pattern(const std::string& dir, const at::Tensor& scores, int64_t sink_size,
                                                  int64_t recent_size) {
  PIKV_CHECK(scores.dim() == 2, "a DuoAttention head pattern is [layers, KV heads], got {} dimensions", scores.dim());
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  PIKV_CHECK(!ec, "cannot create the pattern folder '{}': {}", dir, ec.message());
  const at::Tensor s = scores.to(at::kCPU, at::kDouble).contiguous();
  std::string tsv;
  for (int64_t l = 0; l < s.size(0); ++l) {
    for (int64_t h = 0; h < s.size(1); ++h) tsv += fmt::format("{}{:.9g}", h ? "\t" : "", s[l][h].item<double>());
    tsv += "\n";
  }
  io::write_file_atomically(dir + "/full_attention_heads.tsv", tsv, "DuoAttention head pattern");
  const nlohmann::json config = {{"sink_size", sink_size}, {"recent_size", recent_size}};
  io::write_file_atomically(dir + "/config.json", config.dump(2) + "\n", "DuoAttention pattern config");
}

PIKV_INLINE std::string DuoAttentionPress::describe() const { return name() + "(" + describe_options(options_) + ")"; }

PIKV_INLINE PressRequirements DuoAttentionPress::requirements() const {
  PressRequirements r = PressRequirements::queries();
  r.layer_view = true;  // the layer's projections and RoPE
  return r;
}

PIKV_INLINE bool DuoAttentionPress::should_compress(const AttentionContext& ctx) const {
  if (!needs_context_passes()) return false;
  PIKV_CHECK(options_.on_the_fly_scoring() || pattern_.defined(),
             "duo_attention needs head scores: attention_pattern=DIR (DuoAttention's published patterns, or one from "
             "`pikv calibrate duo_attention`) or on_the_fly_scoring=true to score the heads from the prefill");
  if (state_ == State::prefilling && ctx.is_prefill && !pattern_.defined()) return true;
  return ContextPassPress::should_compress(ctx);
}

PIKV_INLINE at::Tensor DuoAttentionPress::layer_head_scores(const at::Tensor& queries, const at::Tensor& keys,
                                                            const AttentionLayerView& view, int64_t q_len) {
  const int64_t H = queries.size(1), Hkv = keys.size(1), d = queries.size(3), G = H / Hkv;
  at::Tensor pos = at::arange(q_len, queries.options().dtype(at::kLong));
  // The mean query at the last position, the mean key at every position: [1, H, 1, d], [1, H, P, d].
  at::Tensor q = view.apply_rope(queries.mean(2, true).expand({1, H, q_len, d}).contiguous(), pos).narrow(2, q_len - 1, 1);
  at::Tensor k = view.apply_rope(keys.mean(2, true).expand({1, Hkv, q_len, d}).contiguous(), pos).repeat_interleave(G, 1);
  at::Tensor w = at::softmax(at::matmul(q, k.transpose(-1, -2)) / std::sqrt(static_cast<double>(d)), -1, at::kFloat);
  at::Tensor area = w.view({H, q_len}).cumsum(1).mean(1);  // [H]: near 1 for local heads, lower for global ones
  return area.view({Hkv, G}).mean(1);
}

PIKV_INLINE CompressedKV DuoAttentionPress::compress(const AttentionContext& ctx) {
  check_context(ctx);
  PIKV_CHECK(ctx.batch() == 1, "duo_attention scores heads from a batch of 1 (as kvpress), got {}", ctx.batch());
  const auto t0 = std::chrono::steady_clock::now();
  if (ctx.layer == 0) scoring_ms_ = 0.0;
  const int64_t T = ctx.forward_length();
  if (scores_.size() != static_cast<size_t>(ctx.num_layers)) scores_.assign(static_cast<size_t>(ctx.num_layers), at::Tensor());
  scores_[ctx.layer] = layer_head_scores(prerope_queries(ctx, 0, T), prerope_keys(ctx, ctx.length() - T, T),
                                         *ctx.layer_view, options_.q_len())
                           .to(at::kCPU);
  scoring_ms_ += detail::ms_since(t0);
  CompressedKV skip;
  skip.skipped = true;
  return skip;
}

PIKV_INLINE at::Tensor DuoAttentionPress::head_scores() const {
  if (pattern_.defined()) return pattern_;
  for (const auto& s : scores_) PIKV_CHECK(s.defined(), "duo_attention: no head scores yet (run a prefill first)");
  PIKV_CHECK(!scores_.empty(), "duo_attention: no head scores yet (run a prefill first)");
  return at::stack(scores_);
}

PIKV_INLINE ContextPassesCost DuoAttentionPress::run_context_passes(const ContextPasses& p) {
  ContextPassesCost cost;
  state_ = State::done;
  if (!needs_context_passes()) return cost;
  const auto t0 = std::chrono::steady_clock::now();
  const Shape shape = check_whole_context(p);
  const at::Tensor scores = head_scores();  // [L, Hkv]
  PIKV_CHECK(scores.size(0) == shape.layers && scores.size(1) == shape.kv_heads,
             "duo_attention: head scores {}x{} for a model of {} layers x {} KV heads{}", scores.size(0), scores.size(1),
             shape.layers, shape.kv_heads,
             pattern_.defined() ? fmt::format(" (pattern {}: another model's?)", options_.attention_pattern()) : "");
  // The lowest scores stream (kvpress: round(L * Hkv * ratio), Python's round-half-even).
  const int64_t pruned = static_cast<int64_t>(std::nearbyint(static_cast<double>(scores.numel()) *
                                                             options_.head_compression_ratio()));
  streaming_ = at::zeros({shape.layers * shape.kv_heads}, at::kBool);
  if (pruned > 0) streaming_.index_fill_(0, std::get<1>(scores.reshape(-1).sort(/*stable=*/std::optional<bool>(true), 0)).narrow(0, 0, pruned), true);
  streaming_ = streaming_.view({shape.layers, shape.kv_heads});

  const int64_t n = shape.tokens, sink = sink_, recent = recent_;
  KVCache& cache = *p.cache;
  at::Tensor pos = at::arange(n, at::kLong);
  // A context no longer than sinks + window stays whole in every head.
  at::Tensor local = n - recent <= sink ? at::ones({n}, at::kBool) : (pos < sink).logical_or(pos >= n - recent);
  for (int64_t l = 0; l < shape.layers; ++l) {
    // Streaming heads keep the sinks and the recent window; retrieval heads keep every token.
    at::Tensor keep = at::where(streaming_[l].unsqueeze(-1), local.unsqueeze(0), at::ones({1, n}, at::kBool));
    const KVCache::Padded kv = cache.padded(l);
    cache.apply(l, keep_head_wise(kv.keys, kv.values, keep.unsqueeze(0).to(kv.keys.device())));
  }
  cost.ms = detail::ms_since(t0) + (pattern_.defined() ? 0.0 : scoring_ms_);  // the scoring during the prefill is part of the cost
  return cost;
}

PIKV_REGISTER_PRESS(DuoAttentionPress, options_press<DuoAttentionPress>("streaming heads keep sinks + recent tokens, "
                                                                        "retrieval heads everything (heads scored "
                                                                        "on the fly; head-wise)",
                                                                        PressKind::head_wise));

}  // namespace pikv
