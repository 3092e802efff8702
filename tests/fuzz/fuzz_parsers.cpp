// libFuzzer targets for every parser of untrusted input, in one binary (one LibTorch translation unit
// instead of nine). The target is chosen with PIKV_FUZZ_TARGET:
//   gguf         a GGUF file: header, metadata, tensor infos, then config, tokenizer and tensor data
//   safetensors  a safetensors file: header, then every tensor
//   config       a Hugging Face config.json
//   tokenizer    a tokenizer.json (then encodes and decodes a fixed text)
//   template     a chat template (Jinja text), detected then rendered
//   router       router gate weights (pikv calibrate-router's JSON)
//   record       one line of an evaluation results file
//   checkpoint   a calibration checkpoint (pikv calibrate-router --checkpoint), read to resume
//   graph_meta   the metadata of an exported model (pikv.json of a TorchScript file)
//   press_spec   a press name and KEY=VALUE options, as the CLI and the registry take them
//   head_pattern a DuoAttention head pattern folder: config.json, a NUL byte, full_attention_heads.tsv
// Contract checked: every input either parses or throws pikv::Error. Any other exception (a raw
// LibTorch error, std::bad_alloc, nlohmann's) aborts the run as a finding, and ASan/UBSan report
// memory and undefined-behaviour errors. tests/fuzz/run_fuzz.sh builds it with clang and runs it.
#include <pikv/pikv.h>

#include <fcntl.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <map>
#include <string>

namespace {

std::string g_target;
std::string g_dir;

// Parsers take paths: the input goes to a file in a per-process folder (tmpfs when available).
std::string write_input(const char* name, const uint8_t* data, size_t size) {
  const std::string path = g_dir + "/" + name;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) std::abort();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  return path;
}

void fuzz_gguf(const uint8_t* data, size_t size) {
  const std::string path = write_input("model.gguf", data, size);
  auto file = pikv::io::GGUFFile::open(path);
  for (const auto& t : file.tensors()) {
    if (t.nbytes <= (1u << 20)) (void)file.first_non_finite(t.name);
  }
  try {
    (void)pikv::read_gguf_checkpoint(path);
  } catch (const pikv::Error&) {
  }
  auto tokenizer = pikv::Tokenizer::from_gguf(file);
  (void)tokenizer->decode(tokenizer->encode("Hello world, 12 caf\xc3\xa9s!"));
}

void fuzz_safetensors(const uint8_t* data, size_t size) {
  auto file = pikv::io::SafetensorsFile::open(write_input("model.safetensors", data, size));
  for (const auto& name : file.names()) (void)file.get(name);
}

void fuzz_config(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  (void)pikv::ModelConfig::from_json_text(text, "config.json");
}

void fuzz_tokenizer(const uint8_t* data, size_t size) {
  auto tokenizer = pikv::Tokenizer::from_json(write_input("tokenizer.json", data, size));
  (void)tokenizer->decode(tokenizer->encode("Hello world, 12 caf\xc3\xa9s! <|im_start|>"));
}

void fuzz_template(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    (void)pikv::ChatTemplate::detect(text, "<s>").render("question?");
  } catch (const pikv::Error&) {
  }
  (void)pikv::ChatTemplate::custom(text).render("question?");
}

void fuzz_router(const uint8_t* data, size_t size) {
  auto weights = pikv::routing::GateWeights::load(write_input("gates.json", data, size));
  (void)weights;
}

void fuzz_record(const uint8_t* data, size_t size) {
  const std::string line(reinterpret_cast<const char*>(data), size);
  const pikv::eval::Record r = pikv::eval::Record::from_json(line);
  (void)pikv::eval::Record::from_json(r.to_json());  // what we write reads back
}

void fuzz_checkpoint(const uint8_t* data, size_t size) {
  // Two layers, rows of 5 features and (4 experts + 6 pairs) x 2 ratios recalls (make_seeds.py's seed).
  const nlohmann::json header = {{"pikv_calibration", 1}, {"identity", "fuzz"}};
  pikv::routing::detail::CalibrationCheckpoint checkpoint(write_input("checkpoint.jsonl", data, size), header, 20, 2);
  (void)checkpoint.find("passkey|0");
}

void fuzz_graph_meta(const uint8_t* data, size_t size) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(data, data + size);
  } catch (const nlohmann::json::exception&) {
    return;  // ScriptedModel::load turns this into pikv::Error; the metadata parser is the target
  }
  if (!j.is_object()) return;
  std::map<std::string, std::string> meta;
  for (const auto& [k, v] : j.items()) meta[k] = v.is_string() ? v.get<std::string>() : v.dump();
  (void)pikv::GraphModelInfo::parse(meta, "model.pt");
}

void fuzz_press_spec(const uint8_t* data, size_t size) {
  // "name\nkey=value\nkey=value..."
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::map<std::string, std::string> options;
  size_t start = text.find('\n');
  const std::string name = text.substr(0, start);
  while (start != std::string::npos) {
    const size_t end = text.find('\n', start + 1);
    const std::string item = text.substr(start + 1, end == std::string::npos ? std::string::npos : end - start - 1);
    const size_t eq = item.find('=');
    if (eq != std::string::npos) options[item.substr(0, eq)] = item.substr(eq + 1);
    start = end;
  }
  (void)pikv::make_press(name, options)->describe();
}

void fuzz_head_pattern(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const size_t nul = text.find('\0');
  const std::string dir = g_dir + "/pattern";
  std::filesystem::create_directories(dir);
  write_input("pattern/config.json", reinterpret_cast<const uint8_t*>(text.data()), std::min(nul, text.size()));
  const std::string tsv = nul == std::string::npos ? std::string() : text.substr(nul + 1);
  write_input("pattern/full_attention_heads.tsv", reinterpret_cast<const uint8_t*>(tsv.data()), tsv.size());
  (void)pikv::DuoAttentionPress::read_pattern(dir);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* target = std::getenv("PIKV_FUZZ_TARGET");
  if (target == nullptr) {
    std::fprintf(stderr, "set PIKV_FUZZ_TARGET to gguf, safetensors, config, tokenizer, template, router, record, "
                         "checkpoint, graph_meta, press_spec or head_pattern\n");
    std::exit(2);
  }
  g_target = target;
  char dir[] = "/tmp/pikv-fuzz-XXXXXX";
  const char* base = access("/dev/shm", W_OK) == 0 ? "/dev/shm/pikv-fuzz-XXXXXX" : dir;
  std::string tmpl = base;
  if (mkdtemp(tmpl.data()) == nullptr) std::abort();
  g_dir = tmpl;
  setenv("PIKV_LOG_LEVEL", "off", 1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using Fn = void (*)(const uint8_t*, size_t);
  static const std::map<std::string, Fn> targets = {
      {"gguf", fuzz_gguf},         {"safetensors", fuzz_safetensors}, {"config", fuzz_config},
      {"tokenizer", fuzz_tokenizer}, {"template", fuzz_template},     {"router", fuzz_router},
      {"record", fuzz_record},     {"graph_meta", fuzz_graph_meta},   {"press_spec", fuzz_press_spec},
      {"checkpoint", fuzz_checkpoint}, {"head_pattern", fuzz_head_pattern}};
  const auto it = targets.find(g_target);
  if (it == targets.end()) {
    std::fprintf(stderr, "unknown PIKV_FUZZ_TARGET '%s'\n", g_target.c_str());
    std::exit(2);
  }
  try {
    it->second(data, size);
  } catch (const pikv::Error&) {
    // the contract: a clear error
  } catch (const std::exception& e) {
    std::fprintf(stderr, "FINDING: target %s raised a %s that is not pikv::Error: %.2000s\n", g_target.c_str(),
                 typeid(e).name(), e.what());
    std::abort();
  }
  return 0;
}
