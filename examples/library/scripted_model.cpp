// A transformers model exported with `python -m pikv_export --out model.pt` (TorchScript), driven
// token by token through the CausalLM interface instead of the pipeline: the host owns the
// fixed-capacity cache, PressGuard compresses it during the prefill, decoding continues on what is kept.
// Usage: pikv_example_scripted MODEL.pt TOKENIZER(.gguf | folder with tokenizer.json)
#include <pikv/pikv.h>

#include <ATen/ATen.h>

#include <iostream>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: pikv_example_scripted MODEL.pt TOKENIZER\n";
    return 2;
  }
  auto model = pikv::ScriptedModel::load(argv[1]);  // TorchScript module + the pikv operator
  auto tokenizer = pikv::Tokenizer::load(argv[2]);
  const std::vector<int64_t> prompt = tokenizer->encode(
      "Builds run on twelve machines in the Oslo data centre and the test suite takes forty minutes. "
      "The Zephyr project ships every Tuesday, and the city where its builds run is");

  pikv::KVCache cache = model->make_cache();  // fixed capacity, the graph's geometry; one per request
  pikv::StreamingLLMPress press(pikv::StreamingLLMOptions().compression_ratio(0.5));
  at::Tensor logits;
  {
    pikv::PressGuard guard(*model, press);  // compresses each layer right after the prefill's attention
    logits = model->forward(at::tensor(prompt, at::kLong).unsqueeze(0), cache);  // [1, T, V]
  }
  const int64_t kept = cache.physical_length(0), stored = cache.bytes_in_use();
  std::vector<int64_t> answer;
  for (int step = 0; step < 8; ++step) {  // greedy decoding on the compressed cache
    const int64_t next = logits[0][-1].argmax().item<int64_t>();
    answer.push_back(next);
    logits = model->forward(at::tensor({next}, at::kLong).unsqueeze(0), cache);
  }
  std::cout << "continuation:" << tokenizer->decode(answer) << "\n"
            << model->compression_stats().press << ": kept " << kept << " of " << prompt.size()
            << " tokens per head, KV in use " << pikv::format_bytes(stored) << " of "
            << pikv::format_bytes(cache.bytes()) << " allocated (capacity " << model->position_limit() << ")\n";
  return kept < static_cast<int64_t>(prompt.size()) ? 0 : 1;
}
