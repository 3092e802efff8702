// `pikv score`: the prefill of given token ids under one press, and what every layer kept.
#include "cli.h"

#include <ATen/ATen.h>

namespace pikv::cli {

int run_score(const std::vector<std::string>& args) {
  ModelArgs m;
  PressArgs pa;
  std::string tokens, decode_tokens, out;
  bool save_kv = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& flag = args[i];
    if (flag == "--help" || flag == "-h") {
      fmt::print("{}", usage_text());
      return 0;
    }
    if (flag == "--save-kv") {
      save_kv = true;
      continue;
    }
    if (i + 1 >= args.size()) usage_error(fmt::format("unknown argument '{}' or missing value", flag));
    const std::string& value = args[++i];
    if (model_flag(m, flag, value) || press_flag(pa, flag, value)) continue;
    if (flag == "--tokens") {
      tokens = value;
    } else if (flag == "--decode-tokens") {
      decode_tokens = value;
    } else if (flag == "--out") {
      out = value;
    } else {
      usage_error(fmt::format("unknown option '{}' for score", flag));
    }
  }
  if (tokens.empty()) usage_error("score needs --tokens \"ID ID ...\"");
  if (pa.name.empty()) usage_error("score needs --press NAME (see `pikv presses`)");
  if (out.empty()) usage_error("score needs --out FILE");
  std::vector<int64_t> ids, decode_ids;
  std::string bad;
  if (!parse_token_ids(tokens, ids, bad)) usage_error(fmt::format("--tokens must be non-negative integers, got '{}'", bad));
  if (ids.empty()) usage_error("--tokens holds no token id");
  if (!parse_token_ids(decode_tokens, decode_ids, bad)) {
    usage_error(fmt::format("--decode-tokens must be non-negative integers, got '{}'", bad));
  }
  auto press = build_press(pa.name, pa.options, pa.ratio, pa.ratio_given);
  auto model = load_model(m);
  PressRecordOptions options;
  options.save_kv = save_kv;
  if (!decode_ids.empty()) options.decode_tokens = at::tensor(decode_ids, at::kLong).unsqueeze(0);
  const at::Tensor input = at::tensor(ids, at::kLong).unsqueeze(0);
  auto record = record_press(*model, input, press.get(), options);
  record["input_ids"] = input;
  io::save_safetensors(out, {record.begin(), record.end()}, {{"model", m.model}, {"press", press->describe()}});
  int64_t kept = 0, total = 0;
  for (int64_t l = 0; l < model->num_layers(); ++l) {
    const at::Tensor& k = record.at(fmt::format("layer{}.kept", l));
    kept += (k >= 0).sum().item<int64_t>();
    total += k.size(0) * k.size(1) * static_cast<int64_t>(ids.size() + decode_ids.size());
  }
  fmt::print(stderr, "{}: {} layers, kept {} of {} (batch, head, token) entries ({:.1f}%); wrote {}\n",
             press->describe(), model->num_layers(), kept, total, 100.0 * kept / std::max<int64_t>(1, total), out);
  return 0;
}

}  // namespace pikv::cli
