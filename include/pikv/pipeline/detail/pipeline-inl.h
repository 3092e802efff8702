#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/clock.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/hookable_model.h>
#include <pikv/core/kv_cache.h>
#include <pikv/core/detail/logging.h>
#include <pikv/pipeline/pipeline.h>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <optional>
#include <chrono>

namespace pikv {
namespace detail {

}  // namespace detail

PIKV_INLINE Pipeline::Pipeline(CausalLM& model, const Tokenizer& tokenizer, std::optional<ChatTemplate> chat_template,
                   bool use_model_template)
    : model_(model), tokenizer_(tokenizer), template_(std::move(chat_template)) {
  if (!template_ && use_model_template && !tokenizer.chat_template().empty()) {
    const std::string bos = tokenizer.bos_id() ? tokenizer.token(*tokenizer.bos_id()) : std::string();
    template_ = ChatTemplate::detect(tokenizer.chat_template(), bos);
  }
}

// The context part of one user message (kvpress: the message rendered with a separator after the
// context, cut at the separator); without a template, BOS + context.
PIKV_INLINE std::vector<int64_t> Pipeline::context_ids(const std::string& context) const {
  if (template_) return tokenizer_.encode(template_->split_around(context).first);
  std::vector<int64_t> ids;
  if (tokenizer_.bos_id()) ids.push_back(*tokenizer_.bos_id());
  const auto rest = tokenizer_.encode(context);
  ids.insert(ids.end(), rest.begin(), rest.end());
  return ids;
}

PIKV_INLINE ContextPasses Pipeline::context_passes(const std::vector<int64_t>& context_ids, KVCache* cache) const {
  ContextPasses p;
  p.model = &model_;
  p.cache = cache;
  p.context_ids = context_ids;
  // kvpress's split of the template around a user message: the prefix before it, the turn after it.
  p.prefix_length = template_ ? static_cast<int64_t>(tokenizer_.encode(template_->split_around("").first).size()) : 0;
  p.suffix_ids = tokenizer_.encode(template_ ? template_->split_around("").second : std::string("\n"));
  const Tokenizer* tok = &tokenizer_;
  p.encode = [tok](const std::string& text) { return tok->encode(text); };
  return p;
}

PIKV_INLINE std::vector<int64_t> Pipeline::question_ids(const std::string& question, const std::string& answer_prefix) const {
  const std::string suffix = template_ ? template_->split_around("").second : std::string("\n");
  return tokenizer_.encode(question + suffix + answer_prefix);
}

PIKV_INLINE std::vector<std::string> Pipeline::answer(const std::string& context, const std::vector<std::string>& questions,
                                          Press* press, const PipelineOptions& options, PipelineStats* stats,
                                          const TokenCallback& on_token) const {
  PIKV_CHECK(!context.empty(), "the context is empty");
  PIKV_CHECK(!questions.empty(), "no question given");
  for (size_t i = 0; i < questions.size(); ++i) {
    PIKV_CHECK(!questions[i].empty(), "question {} is empty", i + 1);
    check_utf8(questions[i], fmt::format("question {}", i + 1));
  }
  check_utf8(context, "the context");
  PIKV_CHECK(options.max_new_tokens() >= 1, "max_new_tokens must be >= 1, got {}", options.max_new_tokens());
  PIKV_CHECK(options.max_context_length() >= 0, "max_context_length must be >= 0, got {}", options.max_context_length());
  const bool finch = press != nullptr && press->wants_question();
  if (!options.query_aware() && !finch) return answer_prefilled(context_ids(context), questions, press, options, stats, on_token);
  // Query-aware: a prefill per question, the question compressed with its context. A press that wants
  // the question (Finch) gets it tokenized apart from the context (kvpress puts a delimiter token
  // between them) and is told its length.
  std::vector<std::string> answers;
  PipelineStats total;
  double generate_s = 0.0;
  PipelineOptions inner = options;
  inner.query_aware(true);
  for (size_t i = 0; i < questions.size(); ++i) {
    PipelineStats one;
    const TokenCallback forward = on_token ? TokenCallback([&, i](size_t, const std::string& piece) { on_token(i, piece); })
                                           : TokenCallback();
    std::vector<int64_t> ids = context_ids(finch ? context : context + questions[i]);
    if (finch) {
      const std::vector<int64_t> q = tokenizer_.encode(questions[i]);
      ids.insert(ids.end(), q.begin(), q.end());
      press->set_question_tokens(static_cast<int64_t>(q.size()));
    }
    answers.push_back(answer_prefilled(ids, {""}, press, inner, &one, forward).front());
    const double prefill = total.prefill_ms + one.prefill_ms, compression = total.compression_ms + one.compression_ms;
    const int64_t generated = total.generated_tokens + one.generated_tokens;
    if (one.decode_tokens_per_s > 0) generate_s += static_cast<double>(one.generated_tokens) / one.decode_tokens_per_s;
    total = one;
    total.prefill_ms = prefill;
    total.compression_ms = compression;
    total.generated_tokens = generated;
    total.decode_tokens_per_s = generate_s > 0 ? static_cast<double>(generated) / generate_s : 0.0;
  }
  if (stats != nullptr) *stats = total;
  return answers;
}

PIKV_INLINE std::vector<std::string> Pipeline::answer_prefilled(std::vector<int64_t> ctx,
                                                                const std::vector<std::string>& questions, Press* press,
                                                                const PipelineOptions& options, PipelineStats* stats,
                                                                const TokenCallback& on_token) const {
  c10::InferenceMode inference;

  std::vector<std::vector<int64_t>> qs;
  int64_t longest_question = 0;
  for (const auto& q : questions) {
    qs.push_back(question_ids(q, options.answer_prefix()));
    longest_question = std::max<int64_t>(longest_question, static_cast<int64_t>(qs.back().size()));
  }
  // Keep room for the question and the answer inside the model's positions.
  const int64_t model_limit = model_.position_limit() - longest_question - options.max_new_tokens();
  PIKV_CHECK(model_limit > 0, "the model supports {} positions, too few for a {}-token question and {} new tokens",
             model_.position_limit(), longest_question, options.max_new_tokens());
  int64_t limit = model_limit;
  if (options.max_context_length() > 0) limit = std::min(limit, options.max_context_length());
  if (static_cast<int64_t>(ctx.size()) > limit) {
    log::warn("the context has {} tokens; truncated to {} (max_context_length / model limit)", ctx.size(), limit);
    ctx.resize(static_cast<size_t>(limit));
  }

  const at::TensorOptions ids_opts = at::TensorOptions().dtype(at::kLong);
  KVCache cache = model_.make_cache();
  ContextPassesCost passes;
  int64_t passes_bytes_before = -1;
  auto t0 = std::chrono::steady_clock::now();
  {
    std::optional<PressGuard> guard;
    if (press != nullptr) guard.emplace(model_, *press);
    model_.forward(at::tensor(ctx, ids_opts).unsqueeze(0), cache,
                   ForwardOptions().return_hidden(model_.supports_hidden_output()).on_layer(options.on_prefill_progress()));
    if (press != nullptr && press->needs_context_passes()) {
      passes_bytes_before = cache.bytes_in_use();
      passes = press->run_context_passes(context_passes(ctx, &cache));
    }
  }
  const double prefill_ms = detail::ms_since(t0);
  if (stats != nullptr) {
    *stats = PipelineStats();
    stats->context_tokens = static_cast<int64_t>(ctx.size());  // what was prefilled (re-rotation resets positions)
    stats->prefill_ms = prefill_ms;
    for (int64_t l = 0; l < model_.num_layers(); ++l) stats->kept_tokens.push_back(cache.physical_length(l));
    // What the stored tokens take (a fixed-capacity cache keeps its buffers allocated: bytes_in_use).
    stats->kv_bytes_after = cache.bytes_in_use();
    // Before = what the whole cache held before the press: layers it skipped (Gemma3 sliding) count too.
    stats->kv_bytes_before = stats->kv_bytes_after;
    if (press != nullptr) {
      const CompressionStats& cs = model_.compression_stats();
      stats->kv_bytes_before += cs.bytes_saved();
      stats->compression_ms = cs.compress_ms();
    }
    if (passes_bytes_before >= 0) {
      // Compressed after the prefill by the press's own forwards (KVzip): nothing in the per-layer stats.
      stats->kv_bytes_before = passes_bytes_before;
      stats->compression_ms += passes.ms;
      stats->context_passes = passes;
    }
  }

  if (stats != nullptr) {
    PipelineStats gen;
    auto answers = answer_cached(cache, questions, options, &gen, on_token, press);
    stats->generated_tokens = gen.generated_tokens;
    stats->decode_tokens_per_s = gen.decode_tokens_per_s;
    return answers;
  }
  return answer_cached(cache, questions, options, nullptr, on_token, press);
}

PIKV_INLINE std::vector<std::string> Pipeline::answer_cached(KVCache& cache, const std::vector<std::string>& questions,
                                                 const PipelineOptions& options, PipelineStats* stats,
                                                 const TokenCallback& on_token, Press* press) const {
  PIKV_CHECK(!cache.empty(0), "answer_cached needs a prefilled context cache");
  c10::InferenceMode inference;
  const at::TensorOptions ids_opts = at::TensorOptions().dtype(at::kLong);
  const int64_t context_length = cache.logical_length(0);
  // Presses that compress while decoding change the context cache itself: every question then starts
  // from a snapshot, and the press from a fresh state.
  const bool decoding = press != nullptr && press->acts_during_decoding();
  std::optional<PressGuard> guard;
  if (decoding) guard.emplace(model_, *press);
  const std::vector<int64_t>& stops = tokenizer_.stop_ids();
  std::vector<std::string> answers;
  int64_t generated = 0;
  double generate_ms = 0.0;
  for (size_t qi = 0; qi < questions.size(); ++qi) {
    // Query-aware: the question was prefilled with the context; only the assistant turn follows.
    PIKV_CHECK(!questions[qi].empty() || options.query_aware(), "question {} is empty", qi + 1);
    const std::vector<int64_t> q = question_ids(questions[qi], options.answer_prefix());
    PIKV_CHECK(context_length + static_cast<int64_t>(q.size()) + options.max_new_tokens() <=
                   model_.position_limit(),
               "question {} ({} tokens) and {} new tokens do not fit after a {}-token context in the model's {} "
               "positions",
               qi + 1, q.size(), options.max_new_tokens(), context_length, model_.position_limit());
    std::optional<KVCache> snapshot;
    if (decoding) {
      snapshot.emplace(cache.clone());
      press->reset();
    }
    cache.reserve(static_cast<int64_t>(q.size()) + options.max_new_tokens());
    auto t0 = std::chrono::steady_clock::now();
    at::Tensor logits = model_.forward(at::tensor(q, ids_opts).unsqueeze(0), cache);
    std::vector<int64_t> out;
    std::string shown;
    for (int64_t step = 0; step < options.max_new_tokens(); ++step) {
      const int64_t next = logits.select(1, logits.size(1) - 1).argmax(-1).item<int64_t>();
      out.push_back(next);
      if (std::find(stops.begin(), stops.end(), next) != stops.end()) break;
      if (on_token) {
        // Stream whole characters only: a token may end inside a multi-byte UTF-8 sequence.
        const std::string text = tokenizer_.decode(out, /*skip_special=*/true);
        if (text.size() > shown.size() && text.compare(0, shown.size(), shown) == 0) {
          std::string piece = text.substr(shown.size());
          try {
            check_utf8(piece, "piece");
            on_token(qi, piece);
            shown = text;
          } catch (const Error&) {
          }
        }
      }
      if (step + 1 < options.max_new_tokens()) {
        logits = model_.forward(at::full({1, 1}, next, ids_opts), cache);
      }
    }
    generate_ms += detail::ms_since(t0);
    generated += static_cast<int64_t>(out.size());
    std::string text = tokenizer_.decode(out, /*skip_special=*/true);
    if (on_token && text.size() > shown.size()) on_token(qi, text.substr(shown.size()));
    answers.push_back(std::move(text));
    if (snapshot) {
      cache = std::move(*snapshot);
    } else {
      cache.truncate(context_length);
    }
  }
  if (stats != nullptr) {
    stats->generated_tokens = generated;
    stats->decode_tokens_per_s = generate_ms > 0 ? 1000.0 * static_cast<double>(generated) / generate_ms : 0.0;
  }
  return answers;
}

PIKV_INLINE std::vector<std::string> Pipeline::answer_cached_batch(KVCache& cache, const std::string& question,
                                                       const PipelineOptions& options) const {
  PIKV_CHECK(!cache.empty(0), "answer_cached_batch needs a prefilled context cache");
  PIKV_CHECK(!question.empty() || options.query_aware(), "the question is empty");
  c10::InferenceMode inference;
  const at::TensorOptions ids_opts = at::TensorOptions().dtype(at::kLong);
  const int64_t B = cache.batch_size(0), context_length = cache.logical_length(0);
  const std::vector<int64_t> q = question_ids(question, options.answer_prefix());
  PIKV_CHECK(context_length + static_cast<int64_t>(q.size()) + options.max_new_tokens() <=
                 model_.position_limit(),
             "the question ({} tokens) and {} new tokens do not fit after a {}-token context", q.size(),
             options.max_new_tokens(), context_length);
  const std::vector<int64_t>& stops = tokenizer_.stop_ids();
  cache.reserve(static_cast<int64_t>(q.size()) + options.max_new_tokens());
  at::Tensor logits = model_.forward(at::tensor(q, ids_opts).unsqueeze(0).expand({B, -1}).contiguous(), cache);
  std::vector<std::vector<int64_t>> out(static_cast<size_t>(B));
  std::vector<bool> stopped(static_cast<size_t>(B), false);
  for (int64_t step = 0; step < options.max_new_tokens(); ++step) {
    const at::Tensor next = logits.select(1, logits.size(1) - 1).argmax(-1).to(at::kCPU);  // [B]
    bool all = true;
    for (int64_t b = 0; b < B; ++b) {
      if (stopped[static_cast<size_t>(b)]) continue;
      const int64_t t = next[b].item<int64_t>();
      out[static_cast<size_t>(b)].push_back(t);
      if (std::find(stops.begin(), stops.end(), t) != stops.end()) stopped[static_cast<size_t>(b)] = true;
      all = all && stopped[static_cast<size_t>(b)];
    }
    if (all || step + 1 == options.max_new_tokens()) break;
    // Rows that stopped keep decoding (their tokens are ignored): the batch stays rectangular.
    logits = model_.forward(next.to(at::kLong).view({B, 1}), cache);
  }
  cache.truncate(context_length);
  std::vector<std::string> answers;
  for (const auto& ids : out) answers.push_back(tokenizer_.decode(ids, /*skip_special=*/true));
  return answers;
}

}  // namespace pikv
