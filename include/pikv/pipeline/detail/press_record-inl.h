#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/hookable_model.h>
#include <pikv/core/kv_cache.h>
#include <pikv/core/tensor_checks.h>
#include <pikv/pipeline/press_record.h>

#include <ATen/ATen.h>

#include <limits>
#include <vector>

namespace pikv {
namespace detail {

// Forwards everything to the recorded press and keeps, per layer, what its compress() saw and did.
class RecordingPress : public Press {
 public:
  explicit RecordingPress(Press& inner) : inner_(inner) {}

  std::string name() const override { return inner_.name(); }
  std::string describe() const override { return inner_.describe(); }
  double compression_ratio() const override { return inner_.compression_ratio(); }
  PressRequirements requirements() const override { return inner_.requirements(); }
  bool head_wise() const override { return inner_.head_wise(); }
  bool acts_during_decoding() const override { return inner_.acts_during_decoding(); }
  const ScorerPress* scorer() const override { return inner_.scorer(); }
  const ScorerPress* scorer_for(const AttentionContext& ctx) const override { return inner_.scorer_for(ctx); }
  bool should_compress(const AttentionContext& ctx) const override { return inner_.should_compress(ctx); }
  void on_attach(const HookableModel& model) override { inner_.on_attach(model); }
  void on_detach() override { inner_.on_detach(); }
  void on_prefill_begin() override { inner_.on_prefill_begin(); }
  void on_prefill_end() override { inner_.on_prefill_end(); }
  void on_decode_step() override { inner_.on_decode_step(); }
  void reset() override { inner_.reset(); }
  bool needs_context_passes() const override { return inner_.needs_context_passes(); }
  ContextPassesCost run_context_passes(const ContextPasses& passes) override {
    ContextPassesCost cost = inner_.run_context_passes(passes);
    if (const at::Tensor s = inner_.context_pass_scores(); s.defined()) {
      for (int64_t l = 0; l < s.size(0); ++l) scores_[l] = s[l];
    }
    return cost;
  }
  at::Tensor context_pass_scores() const override { return inner_.context_pass_scores(); }

  CompressedKV compress(const AttentionContext& ctx) override {
    CompressedKV out = inner_.compress(ctx);
    if (out.skipped) return out;
    // Scores are recomputed once more for the record (a scorer is deterministic; Random needs a seed
    // for the record to match what was kept).
    if (const ScorerPress* s = inner_.scorer_for(ctx); s != nullptr && !out.unchanged) {
      const double ratio = inner_.compression_ratio();
      scores_[ctx.layer] = s->score(ctx, ratio > 0 && ratio < 1 ? ratio : s->compression_ratio()).to(at::kFloat);
    }
    if (!out.unchanged) {
      for (auto& [name, t] : inner_.layer_record(ctx)) extra_[ctx.layer][name] = t;
    }
    if (out.positions_reset) reset_positions_[ctx.layer] = out.indices;
    return out;
  }

  std::map<int64_t, at::Tensor> scores_, reset_positions_;
  std::map<int64_t, std::map<std::string, at::Tensor>> extra_;  // layer -> Press::layer_record

 private:
  Press& inner_;
};

// Ascending positions with -1 padding last: positions int64 [B, Hkv, n] (-1 = no token).
PIKV_INLINE at::Tensor compact(const at::Tensor& positions) {
  const auto big = std::numeric_limits<int64_t>::max();
  at::Tensor key = at::where(positions < 0, at::full({}, big, positions.options()), positions);
  at::Tensor sorted = std::get<0>(key.sort(-1));
  const int64_t longest = (positions >= 0).sum(-1).max().item<int64_t>();
  sorted = sorted.narrow(-1, 0, longest);
  return at::where(sorted == big, at::full({}, -1, positions.options()), sorted).contiguous();
}

}  // namespace detail

PIKV_INLINE std::map<std::string, at::Tensor> record_press(CausalLM& model, const at::Tensor& input_ids, Press* press,
                                               const PressRecordOptions& options) {
  check_rank(input_ids, 2, "input_ids", "[B, T]");
  const at::Tensor& decode = options.decode_tokens;
  if (decode.defined()) {
    check_rank(decode, 2, "decode_tokens", "[B, s]");
    PIKV_CHECK(decode.size(0) == input_ids.size(0), "decode_tokens has batch {} but input_ids has batch {}",
               decode.size(0), input_ids.size(0));
  }
  KVCache cache = model.make_cache(input_ids.size(0));
  std::unique_ptr<detail::RecordingPress> recorder;
  std::vector<at::Tensor> logits;
  CompressionStats prefill_stats;
  std::map<int64_t, std::pair<int64_t, int64_t>> out_bytes;  // layer -> KV bytes before / after compression
  {
    std::unique_ptr<PressGuard> guard;
    if (press != nullptr) {
      recorder = std::make_unique<detail::RecordingPress>(*press);
      guard = std::make_unique<PressGuard>(model, *recorder);
    }
    model.forward(input_ids, cache);
    if (recorder && recorder->needs_context_passes()) {
      // Presses that read the context again (KVCompose) get it as token ids; without a tokenizer, those
      // that write prompts of their own (KVzip) say so.
      ContextPasses passes;
      passes.model = &model;
      passes.cache = &cache;
      const at::Tensor ids = input_ids[0].to(at::kCPU, at::kLong).contiguous();
      passes.context_ids.assign(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + ids.numel());
      std::vector<int64_t> before;
      for (int64_t l = 0; l < model.num_layers(); ++l) before.push_back(cache.bytes_in_use(l));
      (void)recorder->run_context_passes(passes);
      for (int64_t l = 0; l < model.num_layers(); ++l) {
        out_bytes[l] = {before[static_cast<size_t>(l)], cache.bytes_in_use(l)};
      }
    }
    prefill_stats = model.compression_stats();
    if (decode.defined()) {
      for (int64_t t = 0; t < decode.size(1); ++t) {
        at::Tensor l = model.forward(decode.narrow(1, t, 1), cache);
        if (options.return_logits) logits.push_back(l.to(at::kCPU, at::kFloat));
      }
    }
  }
  std::map<std::string, at::Tensor> out;
  if (!logits.empty()) out["logits"] = at::cat(logits, 1).contiguous();
  for (const LayerCompressionStats& s : prefill_stats.layers) out_bytes[s.layer] = {s.bytes_before, s.bytes_after};
  for (const auto& [l, b] : out_bytes) {
    out[fmt::format("layer{}.bytes", l)] = at::tensor(std::vector<int64_t>{b.first, b.second}, at::kLong);
  }
  for (int64_t l = 0; l < model.num_layers(); ++l) {
    const std::string prefix = fmt::format("layer{}.", l);
    at::Tensor kept;
    if (recorder && recorder->reset_positions_.count(l) != 0) {
      kept = recorder->reset_positions_.at(l);
      if (cache.physical_length(l) > kept.size(2)) {
        // Tokens appended after a re-rotation continue from the compressed length; report them after
        // the last original position.
        const int64_t extra = cache.physical_length(l) - kept.size(2);
        const int64_t last = input_ids.size(1);
        kept = at::cat({kept, at::arange(last, last + extra, kept.options()).expand({kept.size(0), kept.size(1), extra})}, 2);
      }
    } else {
      kept = detail::compact(cache.token_positions(l));
    }
    out[prefix + "kept"] = kept.to(at::kCPU).contiguous();
    if (recorder && recorder->scores_.count(l) != 0) out[prefix + "scores"] = recorder->scores_.at(l).to(at::kCPU).contiguous();
    if (recorder && recorder->extra_.count(l) != 0) {
      for (const auto& [name, t] : recorder->extra_.at(l)) out[prefix + name] = t.to(at::kCPU).contiguous();
    }
    if (options.save_kv) {
      KVCache::Padded p = cache.padded(l);
      at::Tensor k = p.keys, v = p.values;
      if (p.valid.defined()) {
        k = k.masked_fill(p.valid.unsqueeze(-1).logical_not(), 0.0);
        v = v.masked_fill(p.valid.unsqueeze(-1).logical_not(), 0.0);
      }
      out[prefix + "keys"] = k.to(at::kCPU, at::kFloat).contiguous();
      out[prefix + "values"] = v.to(at::kCPU, at::kFloat).contiguous();
    }
  }
  return out;
}

}  // namespace pikv
