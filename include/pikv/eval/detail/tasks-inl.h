#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/eval/tasks.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <random>
#include <set>

namespace pikv::eval {

PIKV_INLINE const std::vector<std::string>& task_names() {
  static const std::vector<std::string> names = {"passkey", "multikey", "multivalue", "variable_tracking",
                                                 "common_words"};
  return names;
}

PIKV_INLINE Corpus::Corpus(const std::string& text, const Tokenizer& tokenizer) {
  // Sentences end at ". ", "! ", "? " or a line break; blank pieces are dropped.
  std::string current;
  auto flush = [&] {
    size_t a = current.find_first_not_of(" \t\r\n");
    if (a != std::string::npos) {
      const size_t b = current.find_last_not_of(" \t\r\n");
      std::string s = current.substr(a, b - a + 1);
      if (s.size() >= 20) sentences_.push_back(std::move(s));
    }
    current.clear();
  };
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\n') {
      flush();
      continue;
    }
    current.push_back(c);
    if ((c == '.' || c == '!' || c == '?') && (i + 1 == text.size() || text[i + 1] == ' ')) flush();
  }
  flush();
  PIKV_CHECK(sentences_.size() >= 20, "the evaluation corpus has only {} sentences; at least 20 are needed",
             sentences_.size());
  for (const auto& s : sentences_) tokens_.push_back(static_cast<int64_t>(tokenizer.encode(" " + s).size()));
}

namespace detail {

PIKV_INLINE std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// Haystack sentences (random order from the seed) filling `budget` tokens, as a vector so needles can
// be inserted between sentences.
PIKV_INLINE std::vector<std::string> haystack(const Corpus& corpus, int64_t budget, std::mt19937_64& rng) {
  std::vector<std::string> out;
  std::uniform_int_distribution<size_t> pick(0, corpus.size() - 1);
  size_t start = pick(rng);
  int64_t used = 0;
  for (size_t k = 0; used < budget; ++k) {
    const size_t i = (start + k) % corpus.size();
    if (k > 0 && i == start) start = pick(rng);  // wrapped around: continue from a fresh place
    out.push_back(corpus.sentence(i));
    used += corpus.tokens(i);
  }
  return out;
}

PIKV_INLINE std::string join_words(const std::vector<std::string>& parts) {
  std::string s;
  for (const auto& p : parts) {
    if (!s.empty()) s += ' ';
    s += p;
  }
  return s;
}

// Inserts `needles` at evenly spread random depths (sentence boundaries).
PIKV_INLINE void insert(std::vector<std::string>& sentences, const std::vector<std::string>& needles, std::mt19937_64& rng) {
  for (const auto& n : needles) {
    std::uniform_int_distribution<size_t> at(0, sentences.size());
    sentences.insert(sentences.begin() + static_cast<std::ptrdiff_t>(at(rng)), n);
  }
}

PIKV_INLINE std::string number(std::mt19937_64& rng, int digits) {
  std::uniform_int_distribution<int> d(0, 9), first(1, 9);
  std::string s(1, static_cast<char>('0' + first(rng)));
  for (int i = 1; i < digits; ++i) s.push_back(static_cast<char>('0' + d(rng)));
  return s;
}

PIKV_INLINE const std::vector<std::string>& words() {
  static const std::vector<std::string> w = {
      "apple",  "river",  "candle", "mirror", "garden", "pencil", "falcon", "violin", "harbor", "meadow",
      "rocket", "lantern", "pepper", "marble", "willow", "anchor", "cobalt", "saddle", "tunnel", "orchid",
      "velvet", "copper", "glacier", "hammer", "island", "jungle", "kettle", "ladder", "magnet", "nectar",
      "oyster", "parrot", "quartz", "ribbon", "silver", "timber", "umbrella", "vessel", "walnut", "yogurt",
      "zephyr", "basket", "cactus", "dolphin", "engine", "feather", "goblet", "helmet", "igloo", "jacket"};
  return w;
}

}  // namespace detail

PIKV_INLINE Sample make_sample(const std::string& task, int64_t index, int64_t target_tokens, uint64_t seed, const Corpus& corpus,
                   const Tokenizer& tokenizer) {
  const auto& names = task_names();
  PIKV_CHECK(std::find(names.begin(), names.end(), task) != names.end(), "unknown task '{}'; tasks: {}", task,
             fmt::join(names, ", "));
  PIKV_CHECK(target_tokens >= 128, "context length must be at least 128 tokens, got {}", target_tokens);
  // One stream per (task, length, index): adding samples never changes earlier ones.
  uint64_t task_hash = 1469598103934665603ull;  // FNV-1a: the same on every platform (std::hash is not)
  for (unsigned char ch : task) task_hash = (task_hash ^ ch) * 1099511628211ull;
  std::seed_seq seq{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32), static_cast<uint32_t>(task_hash),
                    static_cast<uint32_t>(task_hash >> 32), static_cast<uint32_t>(target_tokens),
                    static_cast<uint32_t>(index)};
  std::mt19937_64 rng(seq);
  Sample s;
  s.task = task;
  s.index = index;
  s.target_tokens = target_tokens;
  std::vector<std::string> body;
  // Token budget left for haystack text: the context minus the needles / lists (~ their size).
  if (task == "passkey") {
    // RULER's niah_single: one needle, a word as its key (the "pass key" phrasing of the original
    // passkey task leaves a 135M-parameter model answering from its own knowledge).
    std::vector<std::string> pool = detail::words();
    const std::string& key = pool[rng() % pool.size()];
    const std::string value = detail::number(rng, 7);
    body = detail::haystack(corpus, target_tokens - 24, rng);
    detail::insert(body, {"One of the special magic numbers for " + key + " is: " + value + "."}, rng);
    s.question = "What is the special magic number for " + key + " mentioned in the provided text?";
    s.answer_prefix = "The special magic number for " + key + " mentioned in the provided text is";
    s.references = {value};
    s.metric = "all";
    s.max_new_tokens = 12;
  } else if (task == "multikey" || task == "multivalue") {
    std::vector<std::string> pool = detail::words();
    std::shuffle(pool.begin(), pool.end(), rng);
    std::vector<std::string> needles;
    if (task == "multikey") {
      // Four keys, one asked: the others are distractors.
      std::string asked_value;
      for (int k = 0; k < 4; ++k) {
        const std::string value = detail::number(rng, 7);
        if (k == 0) asked_value = value;
        needles.push_back("One of the special magic numbers for " + pool[static_cast<size_t>(k)] + " is: " + value + ".");
      }
      s.question = "What is the special magic number for " + pool[0] + " mentioned in the provided text?";
      s.answer_prefix = "The special magic number for " + pool[0] + " mentioned in the provided text is";
      s.references = {asked_value};
      s.max_new_tokens = 12;
    } else {
      for (int k = 0; k < 4; ++k) {
        const std::string value = detail::number(rng, 7);
        s.references.push_back(value);
        needles.push_back("One of the special magic numbers for " + pool[0] + " is: " + value + ".");
      }
      s.question = "What are all the special magic numbers for " + pool[0] + " mentioned in the provided text?";
      s.answer_prefix = "The special magic numbers for " + pool[0] + " mentioned in the provided text are";
      s.max_new_tokens = 40;
    }
    body = detail::haystack(corpus, target_tokens - 25 * static_cast<int64_t>(needles.size()), rng);
    detail::insert(body, needles, rng);
    s.metric = "all";
  } else if (task == "variable_tracking") {
    // A chain of 4 assignments from one value, plus a distracting chain, spread through the text.
    const std::string value = detail::number(rng, 5), other = detail::number(rng, 5);
    std::vector<std::string> names_a, names_b, needles;
    auto var = [&] {
      std::string v;
      for (int i = 0; i < 5; ++i) v.push_back(static_cast<char>('A' + rng() % 26));
      return v;
    };
    for (int i = 0; i < 4; ++i) names_a.push_back(var());
    for (int i = 0; i < 4; ++i) names_b.push_back(var());
    body = detail::haystack(corpus, target_tokens - 100, rng);
    // Chains must appear in order: insert at increasing depths.
    std::vector<size_t> depth_a, depth_b;
    for (int i = 0; i < 4; ++i) {
      depth_a.push_back(rng() % (body.size() + 1));
      depth_b.push_back(rng() % (body.size() + 1));
    }
    std::sort(depth_a.begin(), depth_a.end());
    std::sort(depth_b.begin(), depth_b.end());
    std::vector<std::pair<size_t, std::string>> inserts;
    for (int i = 0; i < 4; ++i) {
      inserts.push_back({depth_a[static_cast<size_t>(i)],
                         "VAR " + names_a[static_cast<size_t>(i)] + " = " +
                             (i == 0 ? value : "VAR " + names_a[static_cast<size_t>(i - 1)]) + "."});
      inserts.push_back({depth_b[static_cast<size_t>(i)],
                         "VAR " + names_b[static_cast<size_t>(i)] + " = " +
                             (i == 0 ? other : "VAR " + names_b[static_cast<size_t>(i - 1)]) + "."});
    }
    // Insert from the back so earlier depths stay valid; stable order keeps each chain in sequence.
    std::stable_sort(inserts.begin(), inserts.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    for (const auto& [at, text] : inserts) body.insert(body.begin() + static_cast<std::ptrdiff_t>(at), text);
    s.question = "Find all variables that are assigned the value " + value + " in the text above.";
    s.answer_prefix = "Answer: According to the chain(s) of variable assignment in the text above, 4 variables are "
                      "assigned the value " + value + ", they are:";
    s.references = names_a;
    s.metric = "all";
    s.max_new_tokens = 30;
  } else {  // common_words
    // A numbered word list: 10 words appear 30 times each, the others 3 times (RULER's cwe).
    std::vector<std::string> pool = detail::words();
    std::shuffle(pool.begin(), pool.end(), rng);
    // A numbered list ("12. apple " ~ 5 tokens an entry) filling most of the context: each of 10 common
    // words appears `common` times, up to 40 rare words once or twice.
    const int64_t entries = std::max<int64_t>(40, (target_tokens - 80) / 5);
    const int64_t rare = std::min<int64_t>(40, entries / 4);
    const int64_t common = std::max<int64_t>(3, (entries - rare) / 10);
    std::vector<std::string> list;
    for (int64_t i = 0; i < 10 + rare; ++i) {
      const int64_t times = i < 10 ? common : 1 + static_cast<int64_t>(rng() % 2);
      for (int64_t k = 0; k < times; ++k) list.push_back(pool[static_cast<size_t>(i)]);
    }
    std::shuffle(list.begin(), list.end(), rng);
    std::string text;
    for (size_t i = 0; i < list.size(); ++i) text += fmt::format("{}. {} ", i + 1, list[i]);
    // Pad with haystack sentences to reach the target length.
    const int64_t list_tokens = static_cast<int64_t>(tokenizer.encode(text).size());
    body = detail::haystack(corpus, std::max<int64_t>(0, target_tokens - list_tokens - 40), rng);
    body.insert(body.begin(), "Below is a numbered list of words. In these words, some appear more often than others.");
    body.push_back(text);
    s.question = "What are the 10 most common words in the above list?";
    s.answer_prefix = "Answer: The top 10 words that appear most often in the list are:";
    s.references.assign(pool.begin(), pool.begin() + 10);
    s.metric = "all";
    s.max_new_tokens = 40;
  }
  s.context = detail::join_words(body);
  // The continuation: sentences that do not occur in this context.
  std::set<std::string> used(body.begin(), body.end());
  std::vector<std::string> cont;
  int64_t cont_tokens = 0;
  for (size_t k = 0, i = rng() % corpus.size(); k < corpus.size() && cont_tokens < 48; ++k, i = (i + 1) % corpus.size()) {
    if (used.count(corpus.sentence(i))) continue;
    cont.push_back(corpus.sentence(i));
    cont_tokens += corpus.tokens(i);
  }
  s.continuation = detail::join_words(cont);
  return s;
}

PIKV_INLINE double score_answer(const Sample& sample, const std::string& answer) {
  if (sample.references.empty()) return 0.0;
  const std::string a = detail::lower(answer);
  int found = 0;
  for (const auto& r : sample.references) found += a.find(detail::lower(r)) != std::string::npos ? 1 : 0;
  if (sample.metric == "any") return found > 0 ? 1.0 : 0.0;
  return static_cast<double>(found) / static_cast<double>(sample.references.size());
}

}  // namespace pikv::eval
