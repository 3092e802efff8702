#pragma once
// The Tokenizer loaders: from a GGUF file's tokenizer.ggml.* metadata, from a Hugging Face
// tokenizer.json (+ tokenizer_config.json), and load(), which picks one by the model path.

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/io/detail/bpe_model-inl.h>
#include <pikv/io/detail/json.h>
#include <pikv/io/detail/spm_model-inl.h>
#include <pikv/io/detail/tokenizer_model.h>
#include <pikv/io/files.h>
#include <pikv/io/gguf.h>
#include <pikv/io/tokenizer.h>

#include <nlohmann/json.hpp>

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

namespace pikv {

namespace detail {

// The largest vocabulary a tokenizer may have (config_limits::kMaxVocab): ids beyond it are corrupt.
PIKV_INLINE constexpr int64_t kMaxVocabSize = int64_t{1} << 24;

// Splits a merge rule "a b" (llama.cpp: the first space after the first character) into its two tokens.
PIKV_INLINE bool split_merge(const std::string& rule, std::string* a, std::string* b) {
  const size_t sp = rule.size() > 1 ? rule.find(' ', 1) : std::string::npos;
  if (sp == std::string::npos) return false;
  *a = rule.substr(0, sp);
  *b = rule.substr(sp + 1);
  return !a->empty() && !b->empty();
}

}  // namespace detail

PIKV_INLINE std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const io::GGUFFile& f) {
  auto t = std::make_unique<Impl>();
  const auto& md = f.metadata();
  auto strings = [&](const std::string& key) -> const std::vector<std::string>& {
    auto it = md.find(key);
    PIKV_CHECK(it != md.end(), "GGUF file '{}' has no tokenizer ('{}' is missing)", f.path(), key);
    const auto* v = std::get_if<std::vector<std::string>>(&it->second);
    PIKV_CHECK(v != nullptr, "GGUF file '{}': '{}' must be an array of strings", f.path(), key);
    return *v;
  };
  const std::string model = f.has("tokenizer.ggml.model") ? f.get_string("tokenizer.ggml.model") : std::string();
  t->vocab.tokens = strings("tokenizer.ggml.tokens");
  PIKV_CHECK(!t->vocab.tokens.empty(), "GGUF file '{}': the tokenizer vocabulary is empty", f.path());
  PIKV_CHECK(static_cast<int64_t>(t->vocab.tokens.size()) <= detail::kMaxVocabSize,
             "GGUF file '{}': tokenizer.ggml.tokens has {} entries, more than the {} a vocabulary may have", f.path(),
             t->vocab.tokens.size(), detail::kMaxVocabSize);
  std::vector<int64_t> types(t->vocab.tokens.size(), 1);
  if (auto it = md.find("tokenizer.ggml.token_type"); it != md.end()) {
    const auto* v = std::get_if<std::vector<int64_t>>(&it->second);
    PIKV_CHECK(v != nullptr && v->size() == t->vocab.tokens.size(),
               "GGUF file '{}': token_type must have one entry per token", f.path());
    types = *v;
  }
  t->vocab.special.assign(t->vocab.tokens.size(), false);
  for (size_t i = 0; i < types.size(); ++i) {
    if (types[i] == 3) t->vocab.special[i] = true;  // control
    if ((types[i] == 3 || types[i] == 4) && !t->vocab.tokens[i].empty()) {  // control, user-defined
      t->vocab.matchable.emplace_back(t->vocab.tokens[i], static_cast<int64_t>(i));
    }
  }
  // Empty entries are kept (ids must not shift) but never matched: index() leaves them out.
  t->vocab.index();
  if (model == "gpt2") {
    const auto& merges = strings("tokenizer.ggml.merges");
    std::unordered_map<std::string, int> merge_rank;
    std::string a, b;
    for (size_t r = 0; r < merges.size(); ++r) {
      PIKV_CHECK(detail::split_merge(merges[r], &a, &b),
                 "GGUF file '{}': tokenizer.ggml.merges[{}] is '{}', not two tokens separated by a space", f.path(), r,
                 merges[r]);
      PIKV_CHECK(t->vocab.ids.count(a) && t->vocab.ids.count(b),
                 "GGUF file '{}': tokenizer.ggml.merges[{}] '{}' merges '{}', which is not in the vocabulary", f.path(),
                 r, merges[r], t->vocab.ids.count(a) ? b : a);
      PIKV_CHECK(r <= static_cast<size_t>(std::numeric_limits<int>::max()), "GGUF file '{}': too many merges",
                 f.path());
      merge_rank.emplace(merges[r], static_cast<int>(r));
    }
    t->model = std::make_unique<detail::BpeModel>(
        std::move(merge_rank), f.has("tokenizer.ggml.pre") ? f.get_string("tokenizer.ggml.pre") : "gpt2");
  } else if (model == "llama") {
    std::vector<float> scores;
    if (auto it = md.find("tokenizer.ggml.scores"); it != md.end()) {
      const auto* v = std::get_if<std::vector<double>>(&it->second);
      PIKV_CHECK(v != nullptr && v->size() == t->vocab.tokens.size(),
                 "GGUF file '{}': scores must have one entry per token", f.path());
      for (size_t i = 0; i < v->size(); ++i) {
        PIKV_CHECK(std::isfinite((*v)[i]), "GGUF file '{}': tokenizer.ggml.scores[{}] (token '{}') is {}, not finite",
                   f.path(), i, t->vocab.tokens[i], (*v)[i]);
      }
      scores.assign(v->begin(), v->end());
    }
    const bool add_space_prefix = f.find_int("tokenizer.ggml.add_space_prefix").value_or(1) != 0;
    t->model = std::make_unique<detail::SpmModel>(std::move(scores), add_space_prefix);
  } else {
    PIKV_FAIL("GGUF file '{}': tokenizer model '{}' is not supported (supported: gpt2 = byte-level BPE, llama = "
              "SentencePiece BPE)", f.path(), model.empty() ? std::string("(none)") : model);
  }
  const int64_t n = static_cast<int64_t>(t->vocab.tokens.size());
  auto id = [&](const char* key) -> std::optional<int64_t> {
    auto v = f.find_int(key);
    PIKV_CHECK(!v || (*v >= 0 && *v < n), "GGUF file '{}': {} is {}, outside the vocabulary [0, {})", f.path(), key,
               v.value_or(0), n);
    return v;
  };
  t->bos = id("tokenizer.ggml.bos_token_id");
  t->eos = id("tokenizer.ggml.eos_token_id");
  t->vocab.unk = id("tokenizer.ggml.unknown_token_id");
  t->add_bos = f.find_int("tokenizer.ggml.add_bos_token").value_or(model == "llama" ? 1 : 0) != 0;
  if (f.has("tokenizer.chat_template")) {
    t->chat_template = f.get_string("tokenizer.chat_template");
  } else if (f.has("general.architecture") && f.get_string("general.architecture").rfind("gemma", 0) == 0 &&
             t->vocab.ids.count("<start_of_turn>") && t->vocab.ids.count("<end_of_turn>")) {
    // Gemma GGUF files often ship without their template (llama.cpp then falls back to the Gemma
    // format by these markers too): the turn format of Gemma's own tokenizer_config.json.
    t->chat_template =
        "{{ bos_token }}{% for message in messages %}<start_of_turn>{{ 'model' if message['role'] == 'assistant' "
        "else message['role'] }}\n{{ message['content'] | trim }}<end_of_turn>\n{% endfor %}"
        "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}";
  }
  t->collect_stops();
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(t)));
}

namespace detail {

PIKV_INLINE nlohmann::json read_json(const std::string& path, const char* what) {
  const std::string text = io::read_text_file(path, what);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    PIKV_FAIL("'{}' is not valid JSON ({})", path, e.what());
  }
}


// A token id from tokenizer.json: an integer in [0, kMaxVocabSize). `field` names it in errors.
PIKV_INLINE int64_t token_id_of(const nlohmann::json& v, const std::string& path, const std::string& field) {
  const bool ok = (v.is_number_unsigned() && v.get<uint64_t>() < static_cast<uint64_t>(kMaxVocabSize)) ||
                  (v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() < kMaxVocabSize);
  PIKV_CHECK(ok, "'{}': {} is {}, not a token id in [0, {})", path, field, detail::shown_json(v), kMaxVocabSize);
  return v.get<int64_t>();
}

// The pre-tokenizer of a tokenizer.json as one of our names, by the regex it uses.
PIKV_INLINE std::string pre_name_of(const nlohmann::json& pre, bool* byte_level) {
  std::vector<nlohmann::json> steps;
  if (pre.is_object() && pre.value("type", "") == "Sequence") {
    PIKV_CHECK(pre.contains("pretokenizers") && pre.at("pretokenizers").is_array(),
               "tokenizer.json: pre_tokenizer.pretokenizers must be a list");
    for (const auto& s : pre.at("pretokenizers")) steps.push_back(s);
  } else if (pre.is_object()) {
    steps.push_back(pre);
  }
  bool digits = false;
  std::string regex;
  for (const auto& s : steps) {
    PIKV_CHECK(s.is_object(), "tokenizer.json: a pre-tokenizer must be an object, got {}", detail::shown_json(s));
    const std::string type = s.value("type", "");
    if (type == "ByteLevel") {
      *byte_level = true;
      if (s.value("use_regex", true) && regex.empty()) regex = kGpt2Regex;
    } else if (type == "Digits") {
      digits = s.value("individual_digits", false);
    } else if (type == "Split") {
      regex = s.at("pattern").contains("Regex") ? s.at("pattern").at("Regex").get<std::string>()
                                                 : s.at("pattern").at("String").get<std::string>();
    } else if (type == "Metaspace") {
      return "spm";
    } else {
      PIKV_FAIL("tokenizer.json: pre-tokenizer '{}' is not supported", type);
    }
  }
  if (regex == kGpt2Regex) return digits ? "smollm" : "gpt2";
  if (regex == kLlama3Regex) return "llama-bpe";
  if (regex == kQwen2Regex) return "qwen2";
  if (regex.empty()) return "spm";
  PIKV_FAIL("tokenizer.json: the split regex '{}' is not one PiKVPress knows (GPT-2, Llama-3, Qwen2)", regex);
}

}  // namespace detail

PIKV_INLINE std::unique_ptr<Tokenizer> Tokenizer::from_json(const std::string& path, const std::string& config_path) {
  const nlohmann::json j = detail::read_json(path, "tokenizer.json");
  auto t = std::make_unique<Impl>();
  try {
    PIKV_CHECK(j.is_object() && j.contains("model") && j.at("model").is_object(),
               "'{}': a tokenizer.json must be an object with a 'model' object", path);
    const auto& model = j.at("model");
    PIKV_CHECK(model.value("type", "") == "BPE", "'{}': tokenizer model '{}' is not supported (BPE only)", path,
               model.value("type", std::string("?")));
    PIKV_CHECK(model.contains("vocab") && model.at("vocab").is_object(), "'{}': model.vocab must be an object", path);
    const auto& vocab = model.at("vocab");
    const nlohmann::json added = j.contains("added_tokens") && !j.at("added_tokens").is_null() ? j.at("added_tokens")
                                                                                                : nlohmann::json::array();
    PIKV_CHECK(added.is_array(), "'{}': added_tokens must be a list, got {}", path, detail::shown_json(added));
    // Ids first, checked before anything is sized by them: in range, unique.
    std::vector<std::pair<std::string, int64_t>> entries;
    int64_t size = 0;
    for (const auto& [tok, id] : vocab.items()) {
      const int64_t i = detail::token_id_of(id, path, fmt::format("model.vocab['{}']", tok));
      entries.emplace_back(tok, i);
      size = std::max(size, i + 1);
    }
    std::vector<std::tuple<std::string, int64_t, bool>> added_entries;
    for (size_t k = 0; k < added.size(); ++k) {
      const auto& a = added[k];
      PIKV_CHECK(a.is_object() && a.contains("id") && a.contains("content") && a.at("content").is_string(),
                 "'{}': added_tokens[{}] must be an object with an integer 'id' and a string 'content', got {}", path, k,
                 detail::shown_json(a));
      const int64_t i = detail::token_id_of(a.at("id"), path, fmt::format("added_tokens[{}].id", k));
      const std::string content = a.at("content").get<std::string>();
      PIKV_CHECK(!content.empty(), "'{}': added_tokens[{}] (id {}) has an empty 'content'", path, k, i);
      const bool special = a.contains("special") && a.at("special").is_boolean() && a.at("special").get<bool>();
      added_entries.emplace_back(content, i, special);
      size = std::max(size, i + 1);
    }
    const int64_t assigned = static_cast<int64_t>(entries.size() + added_entries.size());
    PIKV_CHECK(size <= 2 * assigned + 1024,
               "'{}': token id {} leaves most of the ids [0, {}) without a token ({} tokens in all): the ids are corrupt",
               path, size - 1, size, assigned);
    t->vocab.tokens.assign(static_cast<size_t>(size), std::string());
    std::vector<bool> taken(static_cast<size_t>(size), false);
    for (const auto& [tok, i] : entries) {
      const size_t k = static_cast<size_t>(i);
      PIKV_CHECK(!taken[k], "'{}': model.vocab gives id {} to both '{}' and '{}'", path, i, t->vocab.tokens[k], tok);
      taken[k] = true;
      t->vocab.tokens[k] = tok;
    }
    t->vocab.special.assign(t->vocab.tokens.size(), false);
    std::vector<bool> added_taken(static_cast<size_t>(size), false);
    for (const auto& [content, i, special] : added_entries) {
      const size_t k = static_cast<size_t>(i);
      PIKV_CHECK(!added_taken[k], "'{}': added_tokens gives id {} to both '{}' and '{}'", path, i, t->vocab.tokens[k],
                 content);
      added_taken[k] = true;
      t->vocab.tokens[k] = content;
      t->vocab.special[k] = special;
      t->vocab.matchable.emplace_back(content, i);
    }
    t->vocab.index();
    std::unordered_map<std::string, int> merge_rank;  // "a b" -> rank
    const nlohmann::json merges = model.contains("merges") && !model.at("merges").is_null() ? model.at("merges")
                                                                                              : nlohmann::json::array();
    PIKV_CHECK(merges.is_array(), "'{}': model.merges must be a list, got {}", path, detail::shown_json(merges));
    for (size_t r = 0; r < merges.size(); ++r) {
      const auto& m = merges[r];
      std::string a, b;
      if (m.is_string()) {
        PIKV_CHECK(detail::split_merge(m.get<std::string>(), &a, &b),
                   "'{}': model.merges[{}] is {}, not two tokens separated by a space", path, r, detail::shown_json(m));
      } else {
        PIKV_CHECK(m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string(),
                   "'{}': model.merges[{}] is {}, not a pair of tokens", path, r, detail::shown_json(m));
        a = m[0].get<std::string>();
        b = m[1].get<std::string>();
        PIKV_CHECK(!a.empty() && !b.empty(), "'{}': model.merges[{}] is {}, a pair with an empty token", path, r,
                   detail::shown_json(m));
      }
      PIKV_CHECK(t->vocab.ids.count(a) && t->vocab.ids.count(b),
                 "'{}': model.merges[{}] merges '{}', which is not in the vocabulary", path, r,
                 t->vocab.ids.count(a) ? b : a);
      PIKV_CHECK(r <= static_cast<size_t>(std::numeric_limits<int>::max()), "'{}': too many merges", path);
      merge_rank.emplace(a + " " + b, static_cast<int>(r));
    }
    PIKV_CHECK(!model.contains("ignore_merges") || model.at("ignore_merges").is_boolean(),
               "'{}': model.ignore_merges must be true or false, got {}", path, detail::shown_json(model.at("ignore_merges")));
    const bool ignore_merges = model.value("ignore_merges", false);
    bool byte_level = false;
    const std::string pre = detail::pre_name_of(j.value("pre_tokenizer", nlohmann::json()), &byte_level);
    if (j.contains("decoder") && j.at("decoder").is_object() && j.at("decoder").value("type", "") == "ByteLevel") {
      byte_level = true;
    }
    if (byte_level) {
      auto bpe = std::make_unique<detail::BpeModel>(std::move(merge_rank), pre == "spm" ? "gpt2" : pre);
      bpe->set_ignore_merges(ignore_merges);
      t->model = std::move(bpe);
    } else {
      // Merge ranks stand in for scores: an earlier merge wins, as in the BPE model.
      std::vector<float> scores(t->vocab.tokens.size(), -1e9f);
      for (const auto& [key, r] : merge_rank) {
        const auto sp = key.find(' ');
        auto it = t->vocab.ids.find(key.substr(0, sp) + key.substr(sp + 1));
        if (it != t->vocab.ids.end()) scores[static_cast<size_t>(it->second)] = -static_cast<float>(r);
      }
      t->model = std::make_unique<detail::SpmModel>(std::move(scores), /*add_space_prefix=*/true);
    }
    if (model.contains("unk_token") && model.at("unk_token").is_string()) {
      auto it = t->vocab.ids.find(model.at("unk_token").get<std::string>());
      if (it != t->vocab.ids.end()) t->vocab.unk = it->second;
    }
  } catch (const nlohmann::json::exception& e) {
    PIKV_FAIL("'{}': unexpected tokenizer.json structure ({})", path, e.what());
  }
  if (!config_path.empty()) {
    const nlohmann::json c = detail::read_json(config_path, "tokenizer_config.json");
    try {
      PIKV_CHECK(c.is_object(), "'{}': tokenizer_config.json must be a JSON object", config_path);
      auto name = [&](const char* key) -> std::optional<std::string> {
        if (!c.contains(key) || c.at(key).is_null()) return std::nullopt;
        const auto& v = c.at(key);
        if (v.is_string()) return v.get<std::string>();
        PIKV_CHECK(v.is_object() && v.contains("content") && v.at("content").is_string(),
                   "'{}': {} must be a token string or an object with a string 'content', got {}", config_path, key,
                   detail::shown_json(v));
        return v.at("content").get<std::string>();
      };
      if (auto b = name("bos_token"); b && t->vocab.ids.count(*b)) t->bos = t->vocab.ids.at(*b);
      if (auto e = name("eos_token"); e && t->vocab.ids.count(*e)) t->eos = t->vocab.ids.at(*e);
      if (c.contains("add_bos_token") && !c.at("add_bos_token").is_null()) {
        PIKV_CHECK(c.at("add_bos_token").is_boolean(), "'{}': add_bos_token must be true or false, got {}", config_path,
                   detail::shown_json(c.at("add_bos_token")));
        t->add_bos = c.at("add_bos_token").get<bool>();
      }
      if (c.contains("chat_template")) {
        const auto& ct = c.at("chat_template");
        if (ct.is_string()) {
          t->chat_template = ct.get<std::string>();
        } else if (ct.is_array()) {
          for (size_t k = 0; k < ct.size(); ++k) {
            const auto& entry = ct[k];
            PIKV_CHECK(entry.is_object() && entry.contains("template") && entry.at("template").is_string(),
                       "'{}': chat_template[{}] must be an object with a string 'template'", config_path, k);
            if (entry.value("name", "") == "default") t->chat_template = entry.at("template").get<std::string>();
          }
        } else {
          PIKV_CHECK(ct.is_null(), "'{}': chat_template must be a string or a list, got {}", config_path, detail::shown_json(ct));
        }
      }
    } catch (const nlohmann::json::exception& e) {
      PIKV_FAIL("'{}': unexpected tokenizer_config.json structure ({})", config_path, e.what());
    }
  }
  t->collect_stops();
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(t)));
}

PIKV_INLINE std::unique_ptr<Tokenizer> Tokenizer::load(const std::string& model_path) {
  struct stat st {};
  PIKV_CHECK(::stat(model_path.c_str(), &st) == 0, "model path '{}' does not exist", model_path);
  if (S_ISDIR(st.st_mode)) {
    const std::string tj = model_path + "/tokenizer.json", tc = model_path + "/tokenizer_config.json";
    struct stat s2 {};
    PIKV_CHECK(::stat(tj.c_str(), &s2) == 0, "'{}' has no tokenizer.json", model_path);
    return from_json(tj, ::stat(tc.c_str(), &s2) == 0 ? tc : std::string());
  }
  return from_gguf(io::GGUFFile::open(model_path));
}

}  // namespace pikv
