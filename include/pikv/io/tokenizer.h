#pragma once
// Tokenizer: byte-level BPE (GPT-2, Llama-3, Qwen2/3, SmolLM2 style: regex pre-tokenizer with Unicode
// classes and lookahead via PCRE2, byte-to-unicode map, merge ranks) and SentencePiece-style BPE with
// byte fallback (Llama-2, Mistral, Phi-3 style: ▁ for spaces, merges by score, <0xXX> byte tokens).
// Read from a GGUF file's tokenizer.ggml.* metadata or a Hugging Face tokenizer.json. Special and
// added tokens are matched in the text before pre-tokenization.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pikv {

namespace io {
class GGUFFile;
}

class Tokenizer {
 public:
  enum class Kind { byte_level_bpe, sentencepiece_bpe };

  virtual ~Tokenizer();

  // From a model path: a .gguf file (its tokenizer metadata) or a Hugging Face folder (tokenizer.json,
  // tokenizer_config.json for the chat template and BOS/EOS). Throws pikv::Error naming what is missing.
  static std::unique_ptr<Tokenizer> load(const std::string& model_path);
  static std::unique_ptr<Tokenizer> from_gguf(const io::GGUFFile& file);
  // tokenizer_config may be empty (no chat template, no BOS/EOS names).
  static std::unique_ptr<Tokenizer> from_json(const std::string& tokenizer_json_path,
                                              const std::string& tokenizer_config_path = "");

  // Token ids of `text` (UTF-8) without BOS/EOS. With parse_special, special/added token texts in
  // `text` become their ids. Throws pikv::Error for invalid UTF-8 (naming the byte offset).
  std::vector<int64_t> encode(std::string_view text, bool parse_special = true) const;
  // UTF-8 text of `ids`; skip_special drops control tokens (BOS, EOS, chat markers).
  std::string decode(const std::vector<int64_t>& ids, bool skip_special = false) const;

  Kind kind() const;
  int64_t vocab_size() const;
  const std::string& token(int64_t id) const;  // the vocabulary entry; throws for ids out of range
  std::optional<int64_t> token_id(std::string_view token) const;
  bool is_special(int64_t id) const;

  std::optional<int64_t> bos_id() const;
  std::optional<int64_t> eos_id() const;
  // Tokens that end a generation: EOS plus end-of-turn markers the vocabulary defines
  // (<|im_end|>, <|eot_id|>, <end_of_turn>, <|end|>, ...).
  const std::vector<int64_t>& stop_ids() const;
  bool add_bos() const;
  // The chat template (Jinja source) the file ships, or "".
  const std::string& chat_template() const;
  // Pre-tokenizer name, e.g. "gpt2", "llama-bpe", "qwen2", "smollm", or "spm".
  const std::string& pre_tokenizer() const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Throws pikv::Error unless `text` is valid UTF-8; `what` names the input in the message.
void check_utf8(std::string_view text, std::string_view what);

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/io/detail/tokenizer-inl.h>
#endif
