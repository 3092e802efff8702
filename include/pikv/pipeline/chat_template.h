#pragma once
// Chat templates without a Jinja engine: the common families are recognised from the template text a
// model ships (ChatML as in SmolLM2/Qwen, Llama-3, Gemma, Mistral/Llama-2 [INST], Phi-3) and rendered
// for one user message followed by the assistant prefix. Anything else needs a template of our own
// syntax: a string with one "{content}" placeholder ("USER: {content}\nASSISTANT: ").

#include <string>
#include <string_view>
#include <utility>

namespace pikv {

class ChatTemplate {
 public:
  enum class Family { chatml, llama3, gemma, inst, phi3, custom };

  // Recognises the family of a model's Jinja template. Throws pikv::Error for an unrecognised one,
  // saying how to pass a custom template. `bos` is the BOS token text (templates that emit it).
  static ChatTemplate detect(std::string_view jinja, std::string bos = "");
  // A template of our syntax: `format` contains exactly one "{content}".
  static ChatTemplate custom(std::string format);

  Family family() const { return family_; }
  std::string_view family_name() const;

  // One user message with `content`, then the assistant prefix (add_generation_prompt).
  std::string render(std::string_view content) const;

  // The pipeline's split of one user message: (text up to and including the context, the rest:
  // the user turn's closing and the assistant prefix), so that context + question form one message.
  std::pair<std::string, std::string> split_around(std::string_view context) const;

 private:
  ChatTemplate(Family f, std::string prefix, std::string suffix) : family_(f), prefix_(std::move(prefix)), suffix_(std::move(suffix)) {}
  Family family_;
  std::string prefix_;  // everything before the user content
  std::string suffix_;  // everything after it
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/pipeline/detail/chat_template-inl.h>
#endif
