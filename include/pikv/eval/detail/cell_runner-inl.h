#pragma once
// Running the cells of one sample on a model: its shared prefill and KL reference, compressing the cells
// of one ratio, and answering a batch of them (one decode for caches of the same shape).

#include <pikv/core/causal_lm.h>
#include <pikv/core/config.h>
#include <pikv/core/detail/clock.h>
#include <pikv/core/kv_cache.h>
#include <pikv/eval/detail/grid_planner-inl.h>
#include <pikv/eval/evaluator.h>
#include <pikv/pipeline/pipeline.h>
#include <pikv/pipeline/shared_prefill.h>

#include <ATen/ATen.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace pikv::eval::detail {

// A cell being run: its record, its compressed cache until it is answered, and the batch it joins.
struct Cell {
  Record r;
  std::optional<KVCache> cache;
  BatchKey batch;
};

// The batches of one ratio's cells: indices into `cells` by BatchKey, in the order they are answered.
PIKV_INLINE std::map<BatchKey, std::vector<size_t>> batches(const std::vector<Cell>& cells) {
  std::map<BatchKey, std::vector<size_t>> groups;
  for (size_t k = 0; k < cells.size(); ++k) groups[cells[k].batch].push_back(k);
  return groups;
}

// One sample of the grid on a model: generated and prefilled once; every cell replays that prefill.
class SampleRunner {
 public:
  // Generates the sample, prefills its context and runs the KL reference (the continuation on the full
  // cache).
  SampleRunner(CausalLM& model, const Tokenizer& tokenizer, const Corpus& corpus, const Pipeline& pipeline,
               const GridConfig& config, const PendingSample& pending, bool need_weights);
  double prefill_ms() const { return prefill_ms_; }
  // The cells of `specs` at `ratio`, compressed: records with the context's size and the compression's
  // cost, and the caches.
  std::vector<Cell> compress(double ratio, const std::vector<std::string>& specs);
  // Answers cells[members], caches of one shape, as one batch (a lone cell on its own cache): fills their
  // records' KL, answer, score and answer_ms (the batch's time, shared equally).
  void answer(std::vector<Cell>& cells, const std::vector<size_t>& members);

 private:
  at::Tensor continuation_logprobs(KVCache& cache);

  CausalLM& model_;
  const Pipeline& pipeline_;
  const GridConfig& config_;
  const PendingSample& pending_;
  const Sample s_;
  const std::vector<int64_t> ctx_;
  const std::string question_;
  const PipelineOptions options_;
  double prefill_ms_ = 0.0;
  std::optional<SharedPrefill> shared_;
  at::Tensor cont_ids_, full_lp_;
};

PIKV_INLINE SampleRunner::SampleRunner(CausalLM& model, const Tokenizer& tokenizer, const Corpus& corpus,
                                       const Pipeline& pipeline, const GridConfig& c, const PendingSample& pending,
                                       bool need_weights)
    : model_(model),
      pipeline_(pipeline),
      config_(c),
      pending_(pending),
      s_(make_sample(pending.task, pending.sample, pending.length, c.seed, corpus, tokenizer)),
      // Query-aware: the question is part of the compressed prefill; "" is asked after it.
      ctx_(pipeline.context_ids(c.query_aware ? s_.context + s_.question : s_.context)),
      question_(c.query_aware ? std::string() : s_.question),
      options_(PipelineOptions()
                   .max_new_tokens(s_.max_new_tokens)
                   .answer_prefix(s_.answer_prefix)
                   .query_aware(c.query_aware)) {
  const at::TensorOptions ids = at::TensorOptions().dtype(at::kLong);
  auto t0 = std::chrono::steady_clock::now();
  shared_.emplace(model_, at::tensor(ctx_, ids).unsqueeze(0), need_weights);
  prefill_ms_ = ::pikv::detail::ms_since(t0);
  // KL reference: the continuation on the full cache.
  std::vector<int64_t> cont = tokenizer.encode(" " + s_.continuation);
  if (static_cast<int64_t>(cont.size()) > c.continuation_tokens) cont.resize(static_cast<size_t>(c.continuation_tokens));
  cont_ids_ = at::tensor(cont, ids).unsqueeze(0);
  {
    KVCache full = shared_->compress(nullptr);
    full_lp_ = continuation_logprobs(full);
  }
}

PIKV_INLINE at::Tensor SampleRunner::continuation_logprobs(KVCache& cache) {
  const int64_t before = cache.logical_length(0);
  at::Tensor lp = at::log_softmax(model_.forward(cont_ids_, cache).to(at::kDouble), -1);
  cache.truncate(before);
  return lp;  // [1, m, V]
}

PIKV_INLINE std::vector<Cell> SampleRunner::compress(double ratio, const std::vector<std::string>& specs) {
  std::vector<Cell> cells;
  for (const auto& spec : specs) {
    Cell cell;
    cell.r = cell_record(pending_.task, pending_.length, pending_.sample, spec, ratio);
    cell.r.context_tokens = static_cast<int64_t>(ctx_.size());
    std::shared_ptr<Press> press = spec == "none" ? nullptr : press_at(spec, ratio);
    CompressionStats stats;
    ContextPassesCost passes;
    const ContextPasses context = pipeline_.context_passes(ctx_);
    cell.cache.emplace(shared_->compress(press.get(), &stats, &context, &passes));
    const KVCache& cc = *cell.cache;
    cell.r.compress_ms = stats.compress_ms() + passes.ms;  // KVzip's extra forwards included
    cell.r.kv_bytes = cc.bytes();
    cell.batch = batch_key(spec, cc, config_.batch_cells);
    cells.push_back(std::move(cell));
  }
  return cells;
}

PIKV_INLINE void SampleRunner::answer(std::vector<Cell>& cells, const std::vector<size_t>& members) {
  auto g0 = std::chrono::steady_clock::now();
  std::vector<double> kl(members.size());
  std::vector<std::string> answers;
  if (members.size() == 1) {
    KVCache& cache = *cells[members[0]].cache;
    const at::Tensor lp = continuation_logprobs(cache);
    kl[0] = (full_lp_.exp() * (full_lp_ - lp)).sum(-1).mean().item<double>();
    answers = pipeline_.answer_cached(cache, {question_}, options_);
  } else {
    std::vector<const KVCache*> parts;
    for (size_t m : members) parts.push_back(&*cells[m].cache);
    KVCache batch = KVCache::concat_batch(parts);
    for (size_t m : members) cells[m].cache.reset();  // free the singles
    const int64_t B = static_cast<int64_t>(members.size());
    const int64_t before = batch.logical_length(0);
    at::Tensor lp = at::log_softmax(
        model_.forward(cont_ids_.expand({B, -1}).contiguous(), batch).to(at::kDouble), -1);  // [B, m, V]
    batch.truncate(before);
    const at::Tensor per_row = (full_lp_.exp() * (full_lp_ - lp)).sum(-1).mean(-1);  // [B]
    for (int64_t b = 0; b < B; ++b) kl[static_cast<size_t>(b)] = per_row[b].item<double>();
    answers = pipeline_.answer_cached_batch(batch, question_, options_);
  }
  const double each_ms = ::pikv::detail::ms_since(g0) / static_cast<double>(members.size());
  for (size_t k = 0; k < members.size(); ++k) {
    Record& r = cells[members[k]].r;
    r.kl = kl[k];
    r.answer = answers[k];
    r.answer_ms = each_ms;
    r.score = score_answer(s_, r.answer);
  }
}

}  // namespace pikv::eval::detail
