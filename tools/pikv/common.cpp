#include "cli.h"

#include "args.h"

#include <ATen/Context.h>

#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <cstring>
#include <fstream>
#include <sstream>

#ifndef PIKV_DEFAULT_HAYSTACK
#define PIKV_DEFAULT_HAYSTACK "models/haystack.txt"
#endif

namespace pikv::cli {

void usage_error(const std::string& message) {
  fmt::print(stderr, "pikv: {}\nRun `pikv --help` for usage.\n", message);
  std::exit(2);
}

// The default model: $PIKV_MODEL, else the file scripts/setup.sh fetched into the source tree.
std::string default_model() {
  if (const char* env = std::getenv("PIKV_MODEL"); env != nullptr && *env != '\0') return env;
#ifdef PIKV_DEFAULT_MODEL
  return PIKV_DEFAULT_MODEL;
#else
  return "models/SmolLM2-135M-Instruct.Q4_1.gguf";
#endif
}

std::string default_haystack() {
  const char* env = std::getenv("PIKV_HAYSTACK");
  return env != nullptr ? env : PIKV_DEFAULT_HAYSTACK;
}

at::ScalarType parse_dtype(const std::string& value) {
  if (value == "float32") return at::kFloat;
  if (value == "bfloat16") return at::kBFloat16;
  if (value == "float16") return at::kHalf;
  usage_error(fmt::format("--dtype must be float32, bfloat16 or float16, got '{}'", value));
}

void add_model_flags(args::Flags& flags, ModelArgs& m) {
  flags.push_back(args::path("--model", "PATH", &m.model,
                             "Hugging Face checkpoint folder or .gguf file (default: SmolLM2-135M-Instruct,\n"
                             "fetched into models/ by scripts/setup.sh; or $PIKV_MODEL), or a model exported\n"
                             "with `python -m pikv_export`: FILE.pt2 (AOTInductor) or FILE.pt (TorchScript)")
                      .as_common());
  flags.push_back(args::path("--tokenizer", "PATH", &m.tokenizer,
                             "tokenizer.json folder or .gguf file (default: the model's own; for FILE.pt2/.pt\n"
                             "a tokenizer.json or FILE.gguf beside it)")
                      .as_common());
  flags.push_back(args::choice("--device", "D", &m.device, {"cpu", "cuda"},
                               "cpu or cuda (default {default}; an exported graph: the one it was exported for)")
                      .record_given(&m.device_given)
                      .as_common());
  flags.push_back(args::choice("--dtype", "T", &m.dtype, {"float32", "bfloat16", "float16"},
                               "float32, bfloat16 or float16 (default {default}; an exported graph: its own)")
                      .record_given(&m.dtype_given)
                      .as_common());
  flags.push_back(args::toggle("--exact", &m.exact,
                               "GGUF: dequantise every weight at load and keep the KV cache in --dtype, the path\n"
                               "whose numbers match transformers and kvpress (default: Q4_*/Q5_*/Q6_K/Q8_0\n"
                               "weights stay quantized and the cache is float16, decoding ~2-3x faster)")
                      .as_common());
  flags.push_back(args::choice("--kv-dtype", "T", &m.kv_dtype, {"auto", "float32", "float16", "bfloat16"},
                               "the KV cache's dtype: auto (float16 for quantized weights, else --dtype),\n"
                               "float32, float16 or bfloat16; presses always score in --dtype")
                      .as_common());
}

std::unique_ptr<CausalLM> load_model(const ModelArgs& m) {
  if (m.device != "cpu" && !at::hasCUDA()) fail("--device {}, but this LibTorch sees no CUDA device", m.device);
  fmt::print(stderr, "loading {} ...\n", m.model);
  // An exported graph has its own dtype and device: pass ours only when asked for, so that the library
  // refuses a disagreeing one instead of the defaults refusing every graph not exported for float32 on the CPU.
  const bool graph = is_graph_file(m.model);
  LoadOptions options = LoadOptions().dequantize(m.exact);
  if (!graph || m.dtype_given) options.dtype(parse_dtype(m.dtype));
  if (!graph || m.device_given) options.device(m.device);
  if (m.kv_dtype != "auto") {
    options.kv_dtype(parse_dtype(m.kv_dtype));
  } else if (m.exact && !graph) {
    options.kv_dtype(parse_dtype(m.dtype));
  }
  auto model = load_causal_lm(m.model, options);
  if (const auto* decoder = dynamic_cast<const DecoderModel*>(model.get())) {
    const at::ScalarType kv = decoder->kv_dtype().value_or(parse_dtype(m.dtype));
    if (decoder->quantized_matrices() > 0) {
      fmt::print(stderr, "weights: {} matrices kept quantized ({:.1f} MB in all); KV cache {} (--exact: dequantised, "
                         "bit-comparable with transformers)\n",
                 decoder->quantized_matrices(), decoder->weight_bytes() / 1e6, c10::toString(kv));
    }
  }
  return model;
}

std::unique_ptr<Tokenizer> load_tokenizer(const ModelArgs& m) {
  if (!m.tokenizer.empty()) return Tokenizer::load(m.tokenizer);
  if (!is_graph_file(m.model)) return Tokenizer::load(m.model);
  const std::filesystem::path model(m.model);
  const std::filesystem::path dir = model.parent_path().empty() ? std::filesystem::path(".") : model.parent_path();
  std::filesystem::path gguf = model;
  gguf.replace_extension(".gguf");
  if (std::filesystem::is_regular_file(dir / "tokenizer.json")) return Tokenizer::load(dir.string());
  if (std::filesystem::is_regular_file(gguf)) return Tokenizer::load(gguf.string());
  usage_error(fmt::format("{} is an exported graph without a tokenizer: pass --tokenizer (a folder with tokenizer.json "
                          "or a .gguf file), or put tokenizer.json or {} beside it",
                          m.model, gguf.filename().string()));
}

bool parse_token_ids(const std::string& text, std::vector<int64_t>& ids, std::string& bad) {
  std::istringstream in(text);
  std::string word;
  while (in >> word) {
    // Digits only (no sign), at most kMaxTokenId (strtoll would saturate a longer number).
    int64_t v = 0;
    for (char c : word) {
      if (c < '0' || c > '9' || (v = v * 10 + (c - '0')) > kMaxTokenId) {
        bad = word;
        return false;
      }
    }
    ids.push_back(v);
  }
  return true;
}

std::vector<std::string> split_list(const std::string& text, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, sep)) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

void write_text_file(const std::string& path, const std::string& text) {
  io::write_file_atomically(path, text, "output file");
}

std::string read_file(const std::string& path, const char* what) {
  // Only regular files: a FIFO or a device (/dev/zero) would block or never end.
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) fail("cannot read {} '{}': {}", what, path, std::strerror(errno));
  const char* kind = S_ISDIR(st.st_mode)    ? "a directory"
                     : S_ISFIFO(st.st_mode) ? "a FIFO"
                     : S_ISCHR(st.st_mode)  ? "a character device"
                     : S_ISBLK(st.st_mode)  ? "a block device"
                     : S_ISSOCK(st.st_mode) ? "a socket"
                                            : "something else";
  check(S_ISREG(st.st_mode), "cannot read {} '{}': it is {}, not a regular file", what, path, kind);
  auto too_big = [&](int64_t bytes) {
    fail("{} '{}' has {} bytes ({:.1f} MiB), more than the limit of {} MiB", what, path, bytes,
         static_cast<double>(bytes) / (1 << 20), kMaxTextFileBytes >> 20);
  };
  if (st.st_size > kMaxTextFileBytes) too_big(st.st_size);
  std::ifstream in(path, std::ios::binary);
  check(in.good(), "cannot read {} '{}': {}", what, path, std::strerror(errno));
  // Read in pieces and keep to the limit: the file may grow while it is read.
  std::string text;
  char buf[1 << 16];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    text.append(buf, static_cast<size_t>(in.gcount()));
    if (static_cast<int64_t>(text.size()) > kMaxTextFileBytes) too_big(static_cast<int64_t>(text.size()));
  }
  check(!in.bad(), "reading {} '{}' failed", what, path);
  return text;
}

std::string decode_whole_chars(const Tokenizer& tokenizer, const std::vector<int64_t>& ids) {
  std::string text = tokenizer.decode(ids);
  while (!text.empty() && (static_cast<unsigned char>(text.back()) & 0xC0) == 0x80) text.pop_back();
  if (!text.empty() && static_cast<unsigned char>(text.back()) >= 0xC0) text.pop_back();
  return text;
}

std::string insert_at_depth(const std::string& text, const std::string& sentence, double depth) {
  size_t at = text.find(". ", static_cast<size_t>(depth * static_cast<double>(text.size())));
  at = at == std::string::npos ? text.size() : at + 1;
  return text.substr(0, at) + sentence + text.substr(at);
}

std::shared_ptr<Press> build_press(const std::string& spec, std::map<std::string, std::string> options, double ratio,
                                   bool ratio_given) {
  // --press takes a press spec as every command does (NAME[:KEY=VALUE,...]); make_press joins its
  // options with --option's and refuses a key given twice with different values.
  const auto [name, spec_options] = parse_press_spec(spec);
  const PressInfo* info = find_press(name);
  if (info == nullptr) return make_press(spec, options);  // the registry's error lists the names
  bool has_ratio = false;
  std::vector<std::string> names;
  for (const auto& o : info->options) {
    has_ratio |= o.name == "compression_ratio";
    names.push_back(o.name);
  }
  if (has_ratio && !options.count("compression_ratio") && !spec_options.count("compression_ratio")) {
    options["compression_ratio"] = fmt::format("{}", ratio);
  } else if (!has_ratio && ratio_given) {
    usage_error(fmt::format("press '{}' takes no --ratio; its options: {}", name, fmt::join(names, ", ")));
  }
  return make_press(spec, options);
}

}  // namespace pikv::cli
