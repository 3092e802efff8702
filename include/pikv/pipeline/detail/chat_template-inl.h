#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/pipeline/chat_template.h>

namespace pikv {
namespace detail {

PIKV_INLINE bool has_substring(std::string_view s, std::string_view what) { return s.find(what) != std::string_view::npos; }

// The default system message a ChatML template inserts when the conversation has none
// ('<|im_start|>system\n...<|im_end|>\n' as a Jinja string literal), or "".
PIKV_INLINE std::string default_chatml_system(std::string_view jinja) {
  const std::string_view open = "<|im_start|>system";
  for (size_t at = jinja.find(open); at != std::string_view::npos; at = jinja.find(open, at + 1)) {
    // Only a literal inside a quoted string counts (not the branch that prints messages[0]).
    if (at == 0 || (jinja[at - 1] != '\'' && jinja[at - 1] != '"')) continue;
    size_t body = at + open.size();
    if (jinja.compare(body, 2, "\\n") == 0) {
      body += 2;
    } else if (body < jinja.size() && jinja[body] == '\n') {
      body += 1;
    } else {
      continue;
    }
    const size_t end = jinja.find("<|im_end|>", body);
    if (end == std::string_view::npos) return "";
    std::string text(jinja.substr(body, end - body)), out;
    for (size_t i = 0; i < text.size(); ++i) {  // Jinja string escapes: \n
      if (text[i] == '\\' && i + 1 < text.size() && text[i + 1] == 'n') {
        out += '\n';
        ++i;
      } else {
        out += text[i];
      }
    }
    return "<|im_start|>system\n" + out + "<|im_end|>\n";
  }
  return "";
}

}  // namespace detail

PIKV_INLINE ChatTemplate ChatTemplate::detect(std::string_view jinja, std::string bos) {
  if (detail::has_substring(jinja, "<|im_start|>")) {
    return ChatTemplate(Family::chatml, detail::default_chatml_system(jinja) + "<|im_start|>user\n",
                        "<|im_end|>\n<|im_start|>assistant\n");
  }
  if (detail::has_substring(jinja, "<|start_header_id|>")) {
    return ChatTemplate(Family::llama3, bos + "<|start_header_id|>user<|end_header_id|>\n\n",
                        "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
  }
  if (detail::has_substring(jinja, "<start_of_turn>")) {
    return ChatTemplate(Family::gemma, bos + "<start_of_turn>user\n", "<end_of_turn>\n<start_of_turn>model\n");
  }
  if (detail::has_substring(jinja, "<|user|>") && detail::has_substring(jinja, "<|assistant|>")) {
    return ChatTemplate(Family::phi3, "<|user|>\n", "<|end|>\n<|assistant|>\n");
  }
  if (detail::has_substring(jinja, "[INST]")) {
    return ChatTemplate(Family::inst, bos + "[INST] ", " [/INST]");
  }
  PIKV_FAIL("the model's chat template is not one PiKVPress recognises (ChatML, Llama-3, Gemma, Phi-3, "
            "[INST]); pass your own with a \"{{content}}\" placeholder, e.g. \"USER: {{content}}\\nASSISTANT: \"");
}

PIKV_INLINE ChatTemplate ChatTemplate::custom(std::string format) {
  const std::string key = "{content}";
  const size_t at = format.find(key);
  PIKV_CHECK(at != std::string::npos && format.find(key, at + 1) == std::string::npos,
             "a custom chat template needs exactly one \"{{content}}\" placeholder, got \"{}\"", format);
  return ChatTemplate(Family::custom, format.substr(0, at), format.substr(at + key.size()));
}

PIKV_INLINE std::string_view ChatTemplate::family_name() const {
  switch (family_) {
    case Family::chatml: return "chatml";
    case Family::llama3: return "llama3";
    case Family::gemma: return "gemma";
    case Family::inst: return "inst";
    case Family::phi3: return "phi3";
    case Family::custom: return "custom";
  }
  return "?";
}

PIKV_INLINE std::string ChatTemplate::render(std::string_view content) const { return prefix_ + std::string(content) + suffix_; }

PIKV_INLINE std::pair<std::string, std::string> ChatTemplate::split_around(std::string_view context) const {
  return {prefix_ + std::string(context), suffix_};
}

}  // namespace pikv
