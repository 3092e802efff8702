// PiKVPress's own decoder on a GGUF model, a press and the question-answering pipeline.
// Usage: pikv_example_native [MODEL.gguf | HF_FOLDER]
#include <pikv/pikv.h>

#include <iostream>

int main(int argc, char** argv) {
  const std::string path = argc > 1 ? argv[1] : PIKV_DEFAULT_MODEL;
  auto model = pikv::DecoderModel::load(path);         // Llama, Mistral, Qwen2/3, Phi-3, Gemma 3, GPT-2
  auto tokenizer = pikv::Tokenizer::load(path);        // the GGUF's vocabulary or tokenizer.json
  pikv::Pipeline pipeline(*model, *tokenizer);          // the model's chat template

  const std::string context =
      "The Zephyr project ships every Tuesday. Its lead engineer is Amara Osei, who joined in 2021. "
      "Builds run on twelve machines in the Oslo data centre; the test suite takes forty minutes.";
  pikv::SnapKVPress press(pikv::SnapKVOptions().compression_ratio(0.5).window_size(8));
  pikv::PipelineStats stats;
  const auto answers = pipeline.answer(context, {"Who is the lead engineer?"}, &press,
                                       pikv::PipelineOptions().max_new_tokens(12), &stats);

  std::cout << "answer: " << answers[0] << "\n"
            << "context " << stats.context_tokens << " tokens, kept " << stats.kept_tokens[0] << " per layer, KV "
            << pikv::format_bytes(stats.kv_bytes_before) << " -> " << pikv::format_bytes(stats.kv_bytes_after) << "\n";
  return stats.kept_tokens[0] < stats.context_tokens ? 0 : 1;
}
