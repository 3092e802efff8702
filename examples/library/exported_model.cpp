// A transformers model exported with `python -m pikv_export --out model.pt2` (AOTInductor), run from
// C++ under a press: PressGuard compresses the exported graph's KV cache like our own decoder's.
// Usage: pikv_example_exported MODEL.pt2 TOKENIZER(.gguf | folder with tokenizer.json)
#include <pikv/pikv.h>

#include <iostream>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: pikv_example_exported MODEL.pt2 TOKENIZER\n";
    return 2;
  }
  auto model = pikv::ExportedModel::load(argv[1]);      // AOTInductor package + the pikv operator
  auto tokenizer = pikv::Tokenizer::load(argv[2]);
  pikv::Pipeline pipeline(*model, *tokenizer);

  const std::string context =
      "The Zephyr project ships every Tuesday. Its lead engineer is Amara Osei, who joined in 2021. "
      "Builds run on twelve machines in the Oslo data centre; the test suite takes forty minutes.";
  pikv::KnormPress press(pikv::KnormOptions().compression_ratio(0.5));
  pikv::PipelineStats stats;
  const auto answers = pipeline.answer(context, {"Who is the lead engineer?"}, &press,
                                       pikv::PipelineOptions().max_new_tokens(12), &stats);

  std::cout << "answer: " << answers[0] << "\n"
            << "context " << stats.context_tokens << " tokens, kept " << stats.kept_tokens[0] << " per layer, KV in use "
            << pikv::format_bytes(stats.kv_bytes_before) << " -> " << pikv::format_bytes(stats.kv_bytes_after) << "\n";
  return stats.kept_tokens[0] < stats.context_tokens ? 0 : 1;
}
