// `pikv score`: the prefill of given token ids under one press, and what every layer kept.
#include "cli.h"

#include "args.h"

#include <ATen/ATen.h>

namespace pikv::cli {

namespace {

struct ScoreArgs {
  ModelArgs model;
  PressArgs press;
  std::vector<int64_t> ids, decode_ids;
  std::string out;
  bool save_kv = false;
};

int run_score(const ScoreArgs& a) {
  const ModelArgs& m = a.model;
  const PressArgs& pa = a.press;
  const std::vector<int64_t>& ids = a.ids;
  const std::vector<int64_t>& decode_ids = a.decode_ids;
  const std::string& out = a.out;
  if (ids.empty()) usage_error("score needs --tokens \"ID ID ...\"");
  if (pa.name.empty()) usage_error("score needs --press NAME (see `pikv presses`)");
  if (out.empty()) usage_error("score needs --out FILE");
  auto press = build_press(pa.name, pa.options, pa.ratio, pa.ratio_given);
  auto model = load_model(m);
  PressRecordOptions options;
  options.save_kv = a.save_kv;
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

}  // namespace

args::Action declare_score(args::Flags& f) {
  auto a = std::make_shared<ScoreArgs>();
  f = {
      args::token_ids("--tokens", "\"ID ID ...\"", &a->ids, "token ids of the prefill, space-separated (required)"),
      args::text("--press", "SPEC", &a->press.name, "NAME[:KEY=VALUE,...], a press from `pikv presses` (required)"),
      args::ratio("--ratio", "R", &a->press.ratio,
                  "its compression ratio, in [0, 1) (default {default}; presses with a\ncompression_ratio option)")
          .record_given(&a->press.ratio_given),
      args::key_values("--option", "KEY=VALUE", &a->press.options,
                       "a press option (repeatable); wrappers: --option press=NAME for the inner\n"
                       "press and --option inner.KEY=VALUE for its options"),
      args::token_ids("--decode-tokens", "\"ID ...\"", &a->decode_ids,
                      "token ids fed one by one after the prefill (decoding presses act on them)"),
      args::toggle("--save-kv", &a->save_kv, "also write layer{l}.keys / layer{l}.values, the stored cache"),
      args::path("--out", "FILE", &a->out,
                 "safetensors file (required): per layer l, layer{l}.kept int64 [B, Hkv, k]\n"
                 "(kept positions, ascending; head-wise presses pad with -1), and for\n"
                 "scorers layer{l}.scores float32 [B, Hkv, n]; ThinK: layer{l}.pruned_channels"),
  };
  add_model_flags(f, a->model);
  return [a] { return run_score(*a); };
}

}  // namespace pikv::cli
