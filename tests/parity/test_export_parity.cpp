// Bring your own model (tests/reference/export_goldens.py): tiny transformers checkpoints exported with
// python/pikv_export as AOTInductor packages (.pt2) and TorchScript files (.pt), run from C++ through
// ExportedModel / ScriptedModel under PressGuard. Logits against transformers, kept positions and decode
// logits against kvpress on the unmodified transformers model; the default model's exported package
// against kvpress's pipeline answers (which the native decoder reproduces: PipelineParity).
#include <pikv/pikv.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "helpers.h"
#include "pipeline_cases.h"

#include <ATen/ATen.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <thread>

using namespace pikv;
using pikv::test::tensors_equal;

namespace {

std::string export_dir() {
  const char* env = std::getenv("PIKV_GOLDENS_DIR");
  return std::string(env ? env : PIKV_GOLDENS_DIR_DEFAULT) + "/export";
}

nlohmann::json manifest() {
  std::ifstream in(export_dir() + "/manifest.json");
  if (!in) throw Error("no export goldens in " + export_dir() + ": run the reference.export_goldens fixture");
  return nlohmann::json::parse(in);
}

double max_diff(const at::Tensor& a, const at::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  if (a.sizes() != b.sizes()) return 1e30;
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

std::map<std::string, std::string> options_of(const nlohmann::json& c) {
  std::map<std::string, std::string> o;
  for (auto it = c.at("options").begin(); it != c.at("options").end(); ++it) o[it.key()] = it.value();
  return o;
}

// Sorted multiset of the scores a set of kept positions selects (scores [B, Hkv, n], kept [B, Hkv, k]).
at::Tensor kept_score_values(const at::Tensor& scores, const at::Tensor& kept) {
  at::Tensor valid = (kept >= 0).logical_and(kept < scores.size(2));
  at::Tensor v = scores.to(at::kDouble).gather(2, kept.clamp(0, scores.size(2) - 1)).masked_select(valid);
  return std::get<0>(v.sort());
}

// Fails on purpose in compress(), which runs inside the graph (in the pikv operator).
class FailingPress : public Press {
 public:
  std::string name() const override { return "failing"; }
  double compression_ratio() const override { return 0.5; }
  CompressedKV compress(const AttentionContext& ctx) override {
    throw Error(fmt::format("FailingPress refused layer {} on purpose", ctx.layer));
  }
};

// Prefill and decode of `ids` then `decode` without a press -> logits [1, T + s, V] (CPU float).
at::Tensor plain_logits(CausalLM& model, const at::Tensor& ids, const at::Tensor& decode) {
  KVCache cache = model.make_cache();
  std::vector<at::Tensor> out{model.forward(ids, cache).to(at::kCPU, at::kFloat)};
  for (int64_t t = 0; t < decode.size(1); ++t) out.push_back(model.forward(decode.narrow(1, t, 1), cache).to(at::kCPU, at::kFloat));
  return at::cat(out, 1);
}

}  // namespace

TEST(ExportParity, ExportedGraphsMatchTransformersAndKvpress) {
  const nlohmann::json m = manifest();
  const int64_t T = m.at("T");
  int cases = 0, graphs = 0, ties = 0, native_decode = 0;
  double worst_prefill = 0, worst_decode = 0, worst_case_logits = 0, worst_scores = 0;
  std::set<std::string> presses;
  for (const auto& mj : m.at("models")) {
    const std::string name = mj.at("name");
    const bool windowed = mj.at("sliding_window").get<int64_t>() > 0;
    auto reference = io::SafetensorsFile::open(export_dir() + "/" + mj.at("reference").get<std::string>());
    const at::Tensor ids = reference.get("input_ids"), decode = reference.get("decode_ids");
    std::unique_ptr<DecoderModel> native;
    for (const auto& graph : mj.at("graphs")) {
      const std::string file = export_dir() + "/" + graph.get<std::string>();
      SCOPED_TRACE(file);
      auto model = load_causal_lm(file, LoadOptions());
      ++graphs;
      // No press: transformers' logits, prefill and every decode step.
      const at::Tensor logits = plain_logits(*model, ids, decode);
      const double dp = max_diff(logits.narrow(1, 0, T), reference.get("prefill_logits"));
      const double dd = max_diff(logits.narrow(1, T, decode.size(1)), reference.get("decode_logits"));
      worst_prefill = std::max(worst_prefill, dp);
      worst_decode = std::max(worst_decode, dd);
      EXPECT_LE(dp, 1e-4) << "prefill logits vs transformers";
      EXPECT_LE(dd, 1e-4) << "decode logits vs transformers";
      for (const auto& c : m.at("cases")) {
        if (c.at("model") != name) continue;
        const std::string file_case = c.at("file"), press_name = c.at("press");
        SCOPED_TRACE(file_case);
        std::set<std::string> flags;
        for (const auto& f : c.at("flags")) flags.insert(f.get<std::string>());
        auto press = make_press(press_name, options_of(c));
        auto golden = io::SafetensorsFile::open(export_dir() + "/" + file_case);
        PressRecordOptions ro;
        ro.decode_tokens = decode;
        ro.return_logits = true;
        const auto ours = record_press(*model, ids, press.get(), ro);
        for (int64_t l = 0; l < model->num_layers(); ++l) {
          const std::string p = fmt::format("layer{}.", l);
          const at::Tensor ref_kept = golden.get(p + "kept"), our_kept = ours.at(p + "kept");
          const bool has_scores = golden.contains(p + "scores");
          if (has_scores && ours.count(p + "scores")) {
            const at::Tensor ref = golden.get(p + "scores").to(at::kDouble), our = ours.at(p + "scores").to(at::kDouble);
            ASSERT_EQ(ref.sizes(), our.sizes()) << "layer " << l;
            const double rel = ((our - ref).abs() / ref.abs().clamp_min(0.1)).max().item<double>();
            worst_scores = std::max(worst_scores, rel);
            EXPECT_LE(rel, 1e-5) << "layer " << l << ": scores differ";
          }
          if (our_kept.sizes() == ref_kept.sizes() && at::equal(our_kept, ref_kept)) continue;
          // Different positions are acceptable only as kvpress's choice among tied scores.
          ASSERT_TRUE(has_scores) << "layer " << l << ": kept positions differ\n ours " << our_kept << "\n kvpress "
                                  << ref_kept;
          const at::Tensor s = golden.get(p + "scores");
          ASSERT_TRUE(at::allclose(kept_score_values(s, our_kept), kept_score_values(s, ref_kept), 0, 0))
              << "layer " << l << ": kept positions differ and not by a tie\n ours " << our_kept << "\n kvpress "
              << ref_kept;
          ++ties;
        }
        if (windowed) {
          // transformers applies a sliding window by cache index, which after kvpress prunes the cache
          // no longer is the token's position; we window by position, like our native decoder: compare
          // with it (its own parity with kvpress is in CatalogueParity).
          if (!native) native = DecoderModel::load(export_dir() + "/" + mj.at("checkpoint").get<std::string>());
          auto again = make_press(press_name, options_of(c));
          const auto theirs = record_press(*native, ids, again.get(), ro);
          const double d = max_diff(ours.at("logits"), theirs.at("logits"));
          worst_case_logits = std::max(worst_case_logits, d);
          EXPECT_LE(d, 1e-4) << "decode logits after compression vs the native decoder";
          ++native_decode;
        } else {
          const double d = max_diff(ours.at("logits"), golden.get("logits"));
          worst_case_logits = std::max(worst_case_logits, d);
          EXPECT_LE(d, 1e-4) << "decode logits after compression vs kvpress";
        }
        presses.insert(press_name);
        ++cases;
      }
    }
  }
  std::printf("  %d graphs, %d press cases (%zu presses): worst prefill logits %.3g, decode logits %.3g (vs "
              "transformers), decode logits after compression %.3g (%d of them vs the native decoder), scores rel "
              "%.3g; kvpress tie choices accepted in %d layers\n",
              graphs, cases, presses.size(), worst_prefill, worst_decode, worst_case_logits, native_decode,
              worst_scores, ties);
  EXPECT_EQ(graphs, 6);
  EXPECT_EQ(presses.size(), 5u);
  EXPECT_GE(cases, 90);
}

TEST(ExportParity, DefaultModelAnswersLikeKvpressAndTheNativeDecoder) {
  const nlohmann::json m = manifest();
  ASSERT_TRUE(m.contains("default")) << "export_goldens.py ran without --default-model";
  const nlohmann::json golden = test::pipeline_goldens();
  auto model = ExportedModel::load(export_dir() + "/" + m.at("default").at("graph").get<std::string>());
  auto tokenizer = Tokenizer::load(PIKV_DEFAULT_MODEL);
  Pipeline pipeline(*model, *tokenizer);
  const auto options = PipelineOptions().max_new_tokens(golden.at("max_new_tokens").get<int64_t>());
  int answers = 0, same = 0;
  std::set<std::string> contexts;
  for (const auto& c : golden.at("cases")) {
    const std::string press_name = c.at("press");
    const double ratio = c.at("ratio");
    // Every context, with no press and with each press at one ratio (the full grid is PipelineParity's).
    if (c.value("query_aware", false)) continue;  // PipelineParity's
    // KVzip at 0.25: its repeat forwards run through the graph, its head-wise result into the graph's buffers.
    if (!(press_name == "none" || (press_name == "knorm" && ratio == 0.5) ||
          (press_name == "streaming_llm" && ratio == 0.25) ||
          (press_name == "kvzip" && ratio == 0.25 && c.at("options").empty()))) {
      continue;
    }
    answers += test::run_pipeline_case(pipeline, c, options, "exported", &same);
    contexts.insert(c.at("context").get<std::string>());
  }
  std::printf("  default model as an AOTInductor package: %d/%d answers over %zu contexts identical to kvpress\n", same,
              answers, contexts.size());
  EXPECT_GE(contexts.size(), 10u);
  EXPECT_EQ(same, answers);
}

TEST(ExportedModels, PressesOfSeveralModelsAndThreadsStayApart) {
  // Two graphs and the native decoder, each under its own press on its own thread, at the same time:
  // each result equals the same run alone.
  auto reference = io::SafetensorsFile::open(export_dir() + "/llama_gqa__reference.safetensors");
  const at::Tensor ids = reference.get("input_ids"), decode = reference.get("decode_ids");
  std::vector<std::unique_ptr<CausalLM>> models;
  models.push_back(load_causal_lm(export_dir() + "/llama_gqa.pt2", LoadOptions()));
  models.push_back(load_causal_lm(export_dir() + "/qwen3_qknorm.pt", LoadOptions()));
  models.push_back(load_causal_lm(export_dir() + "/llama_gqa", LoadOptions()));
  const std::vector<std::pair<std::string, std::map<std::string, std::string>>> specs = {
      {"knorm", {{"compression_ratio", "0.5"}}},
      {"snapkv", {{"compression_ratio", "0.75"}, {"window_size", "8"}}},
      {"streaming_llm", {{"compression_ratio", "0.25"}}}};
  auto run = [&](size_t i) {
    auto press = make_press(specs[i].first, specs[i].second);
    PressRecordOptions ro;
    ro.decode_tokens = decode;
    ro.return_logits = true;
    return record_press(*models[i], ids, press.get(), ro);
  };
  std::vector<std::map<std::string, at::Tensor>> alone, together(models.size());
  for (size_t i = 0; i < models.size(); ++i) alone.push_back(run(i));
  for (int round = 0; round < 2; ++round) {
    std::vector<std::thread> threads;
    std::vector<std::string> errors(models.size());
    for (size_t i = 0; i < models.size(); ++i) {
      threads.emplace_back([&, i] {
        try {
          together[i] = run(i);
        } catch (const std::exception& e) {
          errors[i] = e.what();
        }
      });
    }
    for (auto& t : threads) t.join();
    for (size_t i = 0; i < models.size(); ++i) {
      SCOPED_TRACE(specs[i].first);
      ASSERT_TRUE(errors[i].empty()) << errors[i];
      for (const auto& [key, tensor] : alone[i]) {
        ASSERT_TRUE(together[i].count(key)) << key;
        EXPECT_TRUE(tensors_equal(together[i].at(key), tensor)) << key;
      }
    }
  }
  // Different presses kept different things (the comparison above is not vacuous).
  // Each model kept its own press's share of the prefill (64, 32 and 96 of 128 tokens plus the decode
  // tokens), so a press seen by the wrong model would show.
  EXPECT_EQ(alone[0].at("layer0.kept").size(2), ids.size(1) / 2 + decode.size(1));
  EXPECT_EQ(alone[1].at("layer0.kept").size(2), ids.size(1) / 4 + decode.size(1));
  EXPECT_EQ(alone[2].at("layer0.kept").size(2), ids.size(1) * 3 / 4 + decode.size(1));
}

TEST(ExportedModels, ThreadsSharingOneModelEachKeepTheirOwnPress) {
  // One model object, four threads, each with its own request, cache, press instance and PressGuard:
  // every thread gets exactly its single-threaded result, its own compression statistics, and a press
  // installed by one thread is invisible to the others. For our decoder (parallel forwards) and for an
  // exported graph (its calls take turns on the graph's buffers).
  auto reference = io::SafetensorsFile::open(export_dir() + "/llama_gqa__reference.safetensors");
  const at::Tensor ids = reference.get("input_ids"), decode = reference.get("decode_ids");
  const std::vector<std::pair<std::string, std::map<std::string, std::string>>> specs = {
      {"knorm", {{"compression_ratio", "0.5"}}},
      {"snapkv", {{"compression_ratio", "0.75"}, {"window_size", "8"}}},
      {"none", {}},
      {"adakv", {{"compression_ratio", "0.25"}, {"press", "knorm"}}}};
  for (const std::string file : {"llama_gqa", "llama_gqa.pt2"}) {
    SCOPED_TRACE(file);
    auto model = load_causal_lm(export_dir() + "/" + file, LoadOptions());
    auto run = [&](size_t i, std::string* stats) {
      std::shared_ptr<Press> press;
      if (specs[i].first != "none") press = make_press(specs[i].first, specs[i].second);
      PressRecordOptions ro;
      ro.decode_tokens = decode;
      ro.return_logits = true;
      auto out = record_press(*model, ids, press.get(), ro);
      EXPECT_EQ(model->press(), nullptr);  // the guard inside record_press restored this thread's slot
      if (stats != nullptr) *stats = model->compression_stats().press;
      return out;
    };
    std::vector<std::map<std::string, at::Tensor>> alone, together(specs.size());
    for (size_t i = 0; i < specs.size(); ++i) alone.push_back(run(i, nullptr));
    std::vector<std::string> errors(specs.size()), stats(specs.size());
    {
      // A press this (main) thread keeps installed during the run must not reach the workers.
      auto intruder = make_press("streaming_llm", {{"compression_ratio", "0.9"}});
      PressGuard guard(*model, *intruder);
      std::vector<std::thread> threads;
      for (size_t i = 0; i < specs.size(); ++i) {
        threads.emplace_back([&, i] {
          try {
            together[i] = run(i, &stats[i]);
          } catch (const std::exception& e) {
            errors[i] = e.what();
          }
        });
      }
      for (auto& t : threads) t.join();
      EXPECT_EQ(model->press(), intruder.get());
    }
    for (size_t i = 0; i < specs.size(); ++i) {
      SCOPED_TRACE(specs[i].first);
      ASSERT_TRUE(errors[i].empty()) << errors[i];
      EXPECT_EQ(stats[i].empty(), specs[i].first == "none") << stats[i];
      if (!stats[i].empty()) EXPECT_EQ(stats[i].rfind(specs[i].first, 0), 0u) << stats[i];
      for (const auto& [key, tensor] : alone[i]) {
        ASSERT_TRUE(together[i].count(key)) << key;
        EXPECT_TRUE(tensors_equal(together[i].at(key), tensor)) << key;
      }
    }
    EXPECT_EQ(alone[2].at("layer0.kept").size(2), ids.size(1) + decode.size(1));  // "none" kept everything
  }
}

TEST(ExportedModels, CacheIsTheHostsAndResetsPerRequest) {
  auto model = ExportedModel::load(export_dir() + "/llama_gqa.pt2");
  auto reference = io::SafetensorsFile::open(export_dir() + "/llama_gqa__reference.safetensors");
  const at::Tensor ids = reference.get("input_ids");
  const int64_t T = ids.size(1);
  auto press = make_press("adakv", {{"compression_ratio", "0.5"}, {"press", "knorm"}});
  KVCache cache = model->make_cache();
  ASSERT_TRUE(cache.is_fixed_capacity());
  const int64_t full_bytes = cache.bytes_in_use();
  EXPECT_EQ(full_bytes, 0);
  {
    PressGuard guard(*model, *press);
    (void)model->forward(ids, cache);
    // Head-wise: per-head lengths differ, the total is half the prefill, the rest of each head is empty.
    const at::Tensor slots = cache.fixed_buffers(0).slots;
    const at::Tensor per_head = (slots >= 0).sum(-1);
    EXPECT_EQ(per_head.sum().item<int64_t>(), T * model->shape().num_kv_heads / 2);
    EXPECT_GT(per_head.max().item<int64_t>(), per_head.min().item<int64_t>());
    // Kept slots sit at the front of each head, in position order.
    for (int64_t h = 0; h < slots.size(1); ++h) {
      const int64_t n = per_head[0][h].item<int64_t>();
      const at::Tensor front = slots[0][h].narrow(0, 0, n);
      EXPECT_TRUE(at::equal(front, std::get<0>(front.sort())));
      EXPECT_TRUE((slots[0][h].narrow(0, n, slots.size(2) - n) == -1).all().item<bool>());
    }
    EXPECT_EQ(model->compression_stats().layers.size(), static_cast<size_t>(model->num_layers()));
    EXPECT_LT(cache.bytes_in_use(), cache.bytes());
  }
  // A new request on the same cache: clear, and the same prefill gives the same logits as a fresh cache.
  cache.clear();
  const at::Tensor again = model->forward(ids, cache);
  KVCache fresh = model->make_cache();
  EXPECT_TRUE(tensors_equal(again, model->forward(ids, fresh)));
}

TEST(ExportedModels, BadInputGetsClearErrors) {
  const std::string dir = export_dir();
  EXPECT_PIKV_ERROR(ExportedModel::load(dir + "/missing.pt2"), "missing.pt2", "does not exist");
  EXPECT_PIKV_ERROR(ScriptedModel::load(dir + "/llama_gqa__reference.safetensors"), "not a TorchScript file");
  EXPECT_PIKV_ERROR(ExportedModel::load(dir + "/llama_gqa.pt"), "not an AOTInductor package");
  // A truncated package.
  const std::string tmp = pikv::test::temp_dir("export_bad");
  {
    std::ifstream in(dir + "/llama_gqa.pt2", std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::ofstream(tmp + "/truncated.pt2", std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size() / 2));
  }
  EXPECT_PIKV_ERROR(ExportedModel::load(tmp + "/truncated.pt2"), "truncated.pt2");
  // A TorchScript file that does not call the operator (no pikv metadata).
  EXPECT_PIKV_ERROR(ScriptedModel::load(dir + "/plain.pt"), "plain.pt", "not exported with python -m pikv_export");

  auto model = ScriptedModel::load(dir + "/llama_gqa.pt");
  const int64_t C = model->info().capacity;
  KVCache cache = model->make_cache();
  // Shapes, ids, dtypes, batches and caches that do not fit the graph.
  KVCache other = model->make_cache();
  EXPECT_PIKV_ERROR(model->make_cache(2), "exported for batch 1");
  EXPECT_PIKV_ERROR(model->forward(at::zeros({2, 4}, at::kLong), other), "batch 1");
  EXPECT_PIKV_ERROR(model->forward(at::zeros({4}, at::kLong), other), "input_ids");
  EXPECT_PIKV_ERROR(model->forward(at::full({1, 4}, 100000, at::kLong), other), "token ids in [0, 512)");
  KVCache dynamic(model->num_layers());
  EXPECT_PIKV_ERROR(model->forward(at::zeros({1, 4}, at::kLong), dynamic), "fixed-capacity cache", "make_cache()");
  FixedCacheShape s;
  s.num_layers = model->num_layers();
  s.kv_heads = model->shape().num_kv_heads;
  s.capacity = C;
  s.head_dim = model->shape().head_dim;
  KVCache half = KVCache::fixed_capacity(s, at::TensorOptions().dtype(at::kHalf));
  EXPECT_PIKV_ERROR(model->forward(at::zeros({1, 4}, at::kLong), half), "float32", "float16");
  EXPECT_PIKV_ERROR(model->forward(at::zeros({1, 4}, at::kLong), other, ForwardOptions().return_hidden(true)),
                    "logits only");
}

TEST(ExportedModels, OptionsCapacityAndOperatorFailuresGetClearErrors) {
  const std::string dir = export_dir();
  for (const std::string name : {"llama_gqa.pt2", "llama_gqa.pt"}) {
    SCOPED_TRACE(name);
    const std::string file = dir + "/" + name;
    // The graphs are float32 on the CPU: options that ask for something else are refused, naming the file,
    // the requested value and the graph's, instead of being ignored.
    EXPECT_PIKV_ERROR(load_causal_lm(file, LoadOptions().dtype(at::kBFloat16)), name.c_str(), "exported in float32",
                      "dtype bfloat16");
    EXPECT_PIKV_ERROR(load_causal_lm(file, LoadOptions().device(at::kCUDA)), name.c_str(), "exported for cpu",
                      "device cuda");
    EXPECT_PIKV_ERROR(load_causal_lm(file, LoadOptions().device("cuda:1")), name.c_str(), "device cuda:1");
    EXPECT_PIKV_ERROR(load_causal_lm(file, LoadOptions().kv_dtype(at::kHalf)), name.c_str(), "kv_dtype float16");
    // Unset options and the graph's own values load.
    (void)load_causal_lm(file, LoadOptions().dtype(at::kFloat).device("cpu").kv_dtype(at::kFloat));
    auto model = load_causal_lm(file, LoadOptions());
    const int64_t C = model->shape().max_positions;
    const std::string capacity = fmt::format("exceed the fixed capacity of {} tokens", C);
    KVCache cache = model->make_cache();
    // Beyond the capacity: refused on the host before the graph runs (no runtime wrapper, nothing
    // appended), for the prefill and for a decode step past the end.
    try {
      (void)model->forward(at::zeros({1, C + 1}, at::kLong), cache);
      ADD_FAILURE() << "a prefill beyond the capacity ran";
    } catch (const Error& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find(name), std::string::npos) << message;
      EXPECT_NE(message.find(fmt::format("{} new tokens after the 0", C + 1)), std::string::npos) << message;
      EXPECT_NE(message.find(capacity), std::string::npos) << message;
      EXPECT_NE(message.find("export the model, with a larger capacity"), std::string::npos) << message;
      EXPECT_EQ(message.find("run_func_"), std::string::npos) << message;
      EXPECT_EQ(message.find("TorchScript"), std::string::npos) << message;
    }
    EXPECT_EQ(cache.logical_length(0), 0);
    (void)model->forward(at::zeros({1, C}, at::kLong), cache);
    const std::string after_full = fmt::format("1 new tokens after the {}", C);  // outlives the check
    EXPECT_PIKV_ERROR(model->forward(at::zeros({1, 1}, at::kLong), cache), name.c_str(), after_full.c_str(),
                      capacity.c_str());
    EXPECT_EQ(cache.logical_length(0), C);
    // An error raised inside the graph by the operator (here a press) comes back with the operator's own
    // message, not AOTInductor's "run_func_(...) API call failed" or TorchScript's traceback.
    cache.clear();
    FailingPress press;
    PressGuard guard(*model, press);
    try {
      (void)model->forward(at::zeros({1, 4}, at::kLong), cache);
      ADD_FAILURE() << "the failing press did not fail";
    } catch (const Error& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find(name), std::string::npos) << message;
      EXPECT_NE(message.find("FailingPress refused layer 0 on purpose"), std::string::npos) << message;
      EXPECT_EQ(message.find("run_func_"), std::string::npos) << message;
      EXPECT_EQ(message.find("TorchScript interpreter"), std::string::npos) << message;
      EXPECT_EQ(message.find("Traceback"), std::string::npos) << message;
    }
  }
}
