#pragma once
// Synthetic long-context tasks in the style of RULER (https://arxiv.org/abs/2404.06654), generated in
// C++ from a seed over a haystack corpus: single needle (passkey), multi-key needle, multi-value
// needle, variable tracking and common-words extraction. Scoring as RULER: the fraction of references
// found in the answer ("all") or whether any is ("any").

#include <pikv/io/tokenizer.h>

#include <cstdint>
#include <string>
#include <vector>

namespace pikv::eval {

struct Sample {
  std::string task;                     // one of task_names()
  int64_t index = 0;                    // sample number inside (task, length)
  int64_t target_tokens = 0;            // requested context length in tokens
  std::string context;                  // the long input
  std::string question;
  std::string answer_prefix;            // makes a small model state the answer directly
  std::vector<std::string> references;  // strings the answer must contain
  std::string metric;                   // "all" (fraction found) or "any"
  std::string continuation;             // held-out text that follows the context (the KL metric)
  int64_t max_new_tokens = 16;
};

// passkey, multikey, multivalue, variable_tracking, common_words
const std::vector<std::string>& task_names();

// The corpus, pre-split into sentences with their token counts (tokenised once).
class Corpus {
 public:
  // Throws when the text has fewer than 20 sentences.
  Corpus(const std::string& text, const Tokenizer& tokenizer);
  size_t size() const { return sentences_.size(); }
  const std::string& sentence(size_t i) const { return sentences_[i]; }
  int64_t tokens(size_t i) const { return tokens_[i]; }

 private:
  std::vector<std::string> sentences_;
  std::vector<int64_t> tokens_;
};

// Deterministic in (task, index, target_tokens, seed). Throws for an unknown task (listing the valid
// ones) and for target_tokens < 128.
Sample make_sample(const std::string& task, int64_t index, int64_t target_tokens, uint64_t seed, const Corpus& corpus,
                   const Tokenizer& tokenizer);

// RULER's string match: "all" = mean over references of (reference occurs in answer, case-insensitive),
// "any" = 1 if one occurs. In [0, 1].
double score_answer(const Sample& sample, const std::string& answer);

}  // namespace pikv::eval

#ifdef PIKV_HEADER_ONLY
#include <pikv/eval/detail/tasks-inl.h>
#endif
