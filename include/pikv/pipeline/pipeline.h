#pragma once
// Pipeline: a context and one or many questions -> greedy answers, with kvpress's semantics. The
// context is prefilled under the press; each question is appended to the compressed cache (never
// compressed), positions continuing from the original context length, and answered greedily; the
// cache is then truncated back to the compressed context for the next question.
//
// Deliberate difference from kvpress: the first generated token is checked for end-of-sequence too.

#include <torch/arg.h>

#include <pikv/core/kv_cache.h>
#include <pikv/core/press.h>
#include <pikv/io/tokenizer.h>
#include <pikv/core/causal_lm.h>
#include <pikv/pipeline/chat_template.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace pikv {

struct PipelineOptions {
  TORCH_ARG(int64_t, max_new_tokens) = 50;     // tokens generated per answer, >= 1
  TORCH_ARG(std::string, answer_prefix) = "";  // appended after each question (e.g. "Answer:")
  // Context tokens kept at most (longer contexts are cut with a warning); 0 = the model's limit.
  TORCH_ARG(int64_t, max_context_length) = 0;
  // Prefill progress: (layers done, layers in all), called after each layer of the context forward.
  TORCH_ARG(std::function<void(int64_t, int64_t)>, on_prefill_progress);
  // Query-aware compression (kvpress's evaluation `query_aware`): each question is appended to the
  // context and compressed with it, one prefill per question; what follows the compressed cache is
  // only the chat template's assistant turn and the answer prefix. The press sees the question
  // (SnapKV's window, for one, is then the question's last tokens); the question's own tokens may be
  // pruned like any other.
  TORCH_ARG(bool, query_aware) = false;
};

struct PipelineStats {
  int64_t context_tokens = 0;               // after truncation
  std::vector<int64_t> kept_tokens;         // per layer, after compression (longest head)
  int64_t kv_bytes_before = 0;              // context cache before compression (bytes of the stored tokens)
  int64_t kv_bytes_after = 0;               // and after
  double prefill_ms = 0.0;                  // context forward incl. compression
  double compression_ms = 0.0;              // part of prefill_ms spent in the press (context passes included)
  // Presses that run extra forwards after the prefill (KVzip): their count, tokens and time (part of
  // prefill_ms and compression_ms).
  ContextPassesCost context_passes;
  int64_t generated_tokens = 0;             // over all questions
  double decode_tokens_per_s = 0.0;         // generated tokens / time spent generating
  std::optional<int64_t> peak_memory_bytes;  // where the device reports it (CUDA)
};

// Streams each answer as it is generated: (question index, new text piece).
using TokenCallback = std::function<void(size_t, const std::string&)>;

class Pipeline {
 public:
  // Without a template argument the model's own chat template is used when the tokenizer has one
  // (an unrecognised one is an error); with none, the context gets BOS and questions end with "\n".
  Pipeline(CausalLM& model, const Tokenizer& tokenizer, std::optional<ChatTemplate> chat_template = std::nullopt,
           bool use_model_template = true);

  // Answers every question about `context`. `press` may be null (no compression).
  // Throws pikv::Error for an empty context or question and for invalid UTF-8.
  // With options.query_aware, or a press that wants the question (Finch), each question is prefilled
  // with the context (see PipelineOptions); the stats then sum prefill and generation over the
  // questions and describe the last cache.
  std::vector<std::string> answer(const std::string& context, const std::vector<std::string>& questions,
                                  Press* press = nullptr, const PipelineOptions& options = {},
                                  PipelineStats* stats = nullptr, const TokenCallback& on_token = {}) const;

  // Answers every question from an already prefilled context cache (a prefill through this pipeline's
  // context_ids, e.g. SharedPrefill::compress): each question is appended, answered greedily, and the
  // cache restored to the context afterwards. `press` matters only when it acts during decoding
  // (Decoding presses): it is then installed while answering, and every question starts from the same
  // cache and a reset press. stats (may be null) receives the generation figures.
  std::vector<std::string> answer_cached(KVCache& cache, const std::vector<std::string>& questions,
                                         const PipelineOptions& options = {}, PipelineStats* stats = nullptr,
                                         const TokenCallback& on_token = {}, Press* press = nullptr) const;

  // One question for every row of a batched context cache (e.g. KVCache::concat_batch of several
  // compressed versions of one context): greedy answers per row, each stopping at its own
  // end-of-sequence; the cache is restored to the context afterwards. Prefill presses only.
  std::vector<std::string> answer_cached_batch(KVCache& cache, const std::string& question,
                                               const PipelineOptions& options = {}) const;

  // The token ids the pipeline feeds: the context part and each question part.
  std::vector<int64_t> context_ids(const std::string& context) const;
  // What a press that re-reads its context (Press::needs_context_passes) gets for `cache` (may be null:
  // SharedPrefill fills it), prefilled with `context_ids`: this pipeline's model, chat template split
  // and tokenizer.
  ContextPasses context_passes(const std::vector<int64_t>& context_ids, KVCache* cache = nullptr) const;
  std::vector<int64_t> question_ids(const std::string& question, const std::string& answer_prefix) const;

  const std::optional<ChatTemplate>& chat_template() const { return template_; }

 private:
  // answer() after validation: one prefill of `context_ids`, then `questions` ("" in query-aware mode).
  std::vector<std::string> answer_prefilled(std::vector<int64_t> context_ids, const std::vector<std::string>& questions,
                                            Press* press, const PipelineOptions& options, PipelineStats* stats,
                                            const TokenCallback& on_token) const;

  CausalLM& model_;
  const Tokenizer& tokenizer_;
  std::optional<ChatTemplate> template_;
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/pipeline/detail/pipeline-inl.h>
#endif
