// The evaluation harness on the default model: generated tasks, RULER scoring, the grid runner's
// resume and its refusals. (Its agreement with kvpress's pipeline is the eval.kvpress_smoke test.)
#include <pikv/pikv.h>

#include <gtest/gtest.h>

#include "helpers.h"

#include <algorithm>
#include <fstream>
#include <filesystem>

#include <sys/resource.h>
#include <unistd.h>

#include <csignal>
#include <sstream>

using namespace pikv;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct Fixture {
  // The exact path (dequantised weights, float32 cache): what the kvpress reference computes.
  std::unique_ptr<DecoderModel> model = DecoderModel::load(PIKV_DEFAULT_MODEL, LoadOptions().dequantize(true));
  std::unique_ptr<Tokenizer> tokenizer = Tokenizer::load(PIKV_DEFAULT_MODEL);
  eval::Corpus corpus{slurp(PIKV_DEFAULT_HAYSTACK), *tokenizer};
};

Fixture& fixture() {
  static Fixture f;
  return f;
}

}  // namespace

TEST(EvalTasks, SamplesAreDeterministicContainTheirAnswersAndHitTheLength) {
  auto& f = fixture();
  for (const auto& task : eval::task_names()) {
    for (int64_t length : {512, 2048}) {
      SCOPED_TRACE(task + " @ " + std::to_string(length));
      const eval::Sample a = eval::make_sample(task, 0, length, 7, f.corpus, *f.tokenizer);
      const eval::Sample b = eval::make_sample(task, 0, length, 7, f.corpus, *f.tokenizer);
      const eval::Sample c = eval::make_sample(task, 1, length, 7, f.corpus, *f.tokenizer);
      EXPECT_EQ(a.context, b.context);
      EXPECT_EQ(a.references, b.references);
      EXPECT_NE(a.context, c.context);
      ASSERT_FALSE(a.references.empty());
      for (const auto& r : a.references) EXPECT_NE(a.context.find(r), std::string::npos) << r;
      const auto tokens = static_cast<double>(f.tokenizer->encode(a.context).size());
      EXPECT_GT(tokens, 0.75 * length);
      EXPECT_LT(tokens, 1.4 * length) << "whole sentences fill the haystack: one can overshoot";
      EXPECT_FALSE(a.continuation.empty());
      EXPECT_EQ(a.context.find(a.continuation.substr(0, 40)), std::string::npos) << "the continuation is held out";
    }
  }
  EXPECT_PIKV_ERROR(eval::make_sample("needle", 0, 512, 0, f.corpus, *f.tokenizer), "unknown task 'needle'", "passkey");
  EXPECT_PIKV_ERROR(eval::make_sample("passkey", 0, 64, 0, f.corpus, *f.tokenizer), "at least 128");
}

TEST(EvalTasks, ScoringIsRulersStringMatch) {
  eval::Sample s;
  s.references = {"1234", "Apple"};
  s.metric = "all";
  EXPECT_DOUBLE_EQ(eval::score_answer(s, "the numbers are 1234 and apple."), 1.0);
  EXPECT_DOUBLE_EQ(eval::score_answer(s, "only 1234"), 0.5);
  s.metric = "any";
  EXPECT_DOUBLE_EQ(eval::score_answer(s, "only 1234"), 1.0);
  EXPECT_DOUBLE_EQ(eval::score_answer(s, "nothing"), 0.0);
}

TEST(EvalReport, BootstrapIntervalsAndPairedComparisons) {
  EXPECT_EQ(eval::bootstrap_mean({}).n, 0);
  const eval::Interval one = eval::bootstrap_mean({0.5});
  EXPECT_DOUBLE_EQ(one.low, 0.5);
  EXPECT_DOUBLE_EQ(one.high, 0.5);
  std::vector<double> coin;
  for (int i = 0; i < 20; ++i) coin.push_back(i % 2);
  const eval::Interval c = eval::bootstrap_mean(coin), again = eval::bootstrap_mean(coin);
  EXPECT_DOUBLE_EQ(c.mean, 0.5);
  EXPECT_LT(c.low, 0.5);
  EXPECT_GT(c.high, 0.5);
  EXPECT_GE(c.low, 0.0);
  EXPECT_LE(c.high, 1.0);
  EXPECT_EQ(c.low, again.low);  // a fixed seed: reproducible
  EXPECT_GT(c.high - c.low, 0.2);  // 20 coin flips decide little
  EXPECT_PIKV_ERROR(eval::bootstrap_mean(coin, 0), "resamples must be >= 1");

  // The uncompressed cache answers all 10 samples; press A none, press B all: A is decidedly worse,
  // B is not different from the full cache, and B decidedly beats A at that ratio.
  std::vector<eval::Record> records;
  for (int64_t i = 0; i < 10; ++i) {
    for (const auto& [press, ratio, score] : std::vector<std::tuple<std::string, double, double>>{
             {"none", 0.0, 1.0}, {"press_a", 0.5, 0.0}, {"press_b", 0.5, 1.0}}) {
      eval::Record r;
      r.task = "passkey";
      r.length = 512;
      r.sample = i;
      r.press = press;
      r.ratio = ratio;
      r.score = score;
      r.kv_bytes = press == "none" ? (8 << 20) : (press == "press_a" ? (4 << 20) : (6 << 20));
      records.push_back(r);
    }
  }
  const std::string md = eval::summary_markdown(records);
  EXPECT_NE(md.find("| press_a | 0.5 | 0.0 [0.0, 0.0] | -100.0 [-100.0, -100.0] | 0 % | 10 | worse |"), std::string::npos) << md;
  EXPECT_NE(md.find("| press_b | 0.5 | 100.0 [100.0, 100.0] | +0.0 [+0.0, +0.0] | 100 % | 10 | not decided |"),
            std::string::npos) << md;
  EXPECT_NE(md.find("Ratio 0.5: best press_b vs runner-up press_a: +100.0 [+100.0, +100.0] points over 10 samples (decided)"),
            std::string::npos) << md;
  // The memory each cell held, against the uncompressed cache of the same length.
  EXPECT_NE(md.find("| 512 | none (ratio 0) | 8.00 MiB |"), std::string::npos) << md;
  EXPECT_NE(md.find("| 512 | press_a | 4.00 (50 %) |"), std::string::npos) << md;
  EXPECT_NE(md.find("| 512 | press_b | 6.00 (75 %) |"), std::string::npos) << md;
}

// One passkey sample of 256 tokens, Knorm at 0.5 and the baseline: the smallest grid that runs cells.
static eval::GridConfig tiny_grid() {
  eval::GridConfig g;
  g.tasks = {"passkey"};
  g.lengths = {256};
  g.samples = 1;
  g.presses = {"knorm"};
  g.ratios = {0.5};
  g.model_path = "default";
  g.corpus_name = "haystack.txt";
  return g;
}

// A results file may hold cells of a larger grid (a split run merges more samples and ratios into
// it): a smaller grid run on it counts only its own cells, so progress never passes the total and the
// time left never goes negative.
TEST(EvalGrid, ProgressCountsOnlyTheCellsOfThisGrid) {
  auto& f = fixture();
  eval::Evaluator ev(*f.model, *f.tokenizer, f.corpus);
  eval::GridConfig g = tiny_grid();
  g.ratios = {0.5, 0.75};
  const std::string path = pikv::test::temp_dir("eval_progress") + "/results.jsonl";
  ev.run(g, path);  // none, knorm@0.5, knorm@0.75
  g.ratios = {0.5, 0.9};
  std::vector<std::pair<int64_t, int64_t>> calls;
  eval::GridTiming t;
  ev.run(g, path, [&](int64_t finished, int64_t total, double eta_s) {
    calls.push_back({finished, total});
    EXPECT_GE(eta_s, 0.0);
  }, &t);
  EXPECT_EQ(t.skipped, 2) << "none and knorm@0.5 were done; knorm@0.75 is another grid's";
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0], std::make_pair(int64_t{3}, int64_t{3}));
  EXPECT_EQ(eval::Evaluator::read_results(path).size(), 4u) << "the other grid's cell is kept";
}

TEST(EvalGrid, RunsResumesAndRefusesForeignOrBrokenFiles) {
  auto& f = fixture();
  eval::Evaluator ev(*f.model, *f.tokenizer, f.corpus);
  eval::GridConfig g = tiny_grid();
  const std::string dir = pikv::test::temp_dir("eval_grid");
  const std::string path = dir + "/results.jsonl";
  eval::GridTiming t;
  const auto records = ev.run(g, path, {}, &t);
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(t.prefills, 1);
  for (const auto& r : records) {
    if (r.press == "none") {
      EXPECT_EQ(r.kl, 0.0) << "the uncompressed cache is the reference";
    } else {
      EXPECT_GT(r.kl, 0.0);
      EXPECT_LT(r.kv_bytes, records[0].kv_bytes);
    }
  }
  // Resume: nothing left to do, no prefill.
  const std::string before = slurp(path);
  const auto again = ev.run(g, path, {}, &t);
  EXPECT_EQ(t.cells, 0);
  EXPECT_EQ(t.prefills, 0);
  EXPECT_EQ(again.size(), 2u);
  EXPECT_EQ(slurp(path), before);
  // A grid that grows only runs the new cells.
  g.ratios = {0.5, 0.75};
  ev.run(g, path, {}, &t);
  EXPECT_EQ(t.cells, 1);
  // Another configuration: refused, file untouched.
  const std::string grown = slurp(path);
  eval::GridConfig other = g;
  other.seed = 9;
  EXPECT_PIKV_ERROR(ev.run(other, path), "seed", "use another --out");
  EXPECT_EQ(slurp(path), grown);
  // A record torn by a kill mid-write (no newline): never accepted; reading alone refuses the file,
  // resuming drops exactly that line and keeps every finished cell.
  { std::ofstream(path, std::ios::app) << "{\"task\": \"passkey\", \"len"; }
  const std::string torn = slurp(path);
  EXPECT_PIKV_ERROR(eval::Evaluator::read_results(path), "line 5 is incomplete", "left untouched");
  EXPECT_EQ(slurp(path), torn);
  const auto resumed = ev.run(g, path, {}, &t);
  EXPECT_EQ(t.cells, 0);
  EXPECT_EQ(resumed.size(), 3u);
  EXPECT_EQ(slurp(path), grown);
  // A complete line that is not a record (or a record with an impossible value): refused, untouched.
  { std::ofstream(path, std::ios::app) << "{\"task\": \"passkey\", \"length\": 256}\n"; }
  const std::string broken = slurp(path);
  EXPECT_PIKV_ERROR(ev.run(g, path), "line 5", "no field 'sample'", "left untouched");
  EXPECT_EQ(slurp(path), broken);
  std::string bad_score = grown.substr(0, grown.rfind("\"score\":")) + "\"score\":7.5,\"task\":\"passkey\"}\n";
  { std::ofstream(dir + "/bad_score.jsonl") << bad_score; }
  EXPECT_PIKV_ERROR(eval::Evaluator::read_results(dir + "/bad_score.jsonl"), "'score' must be a number in [0, 1]",
                    "7.5");
  // A results file that cannot be written (read-only folder): a clear error, nothing half-made.
  if (::geteuid() != 0) {
    const std::string ro = pikv::test::temp_dir("eval_readonly");
    std::filesystem::permissions(ro, std::filesystem::perms::owner_read | std::filesystem::perms::owner_exec);
    EXPECT_PIKV_ERROR(ev.run(g, ro + "/results.jsonl"), "cannot create results file");
    std::filesystem::permissions(ro, std::filesystem::perms::owner_all);
  }
  EXPECT_PIKV_ERROR(ev.run(g, "/dev/full"), "results file");
  // The disk fills while a new cell is written (a file-size limit: writes past it fail with EFBIG):
  // a clear error; the finished records are intact and the next run resumes past the torn write.
  {
    const std::string full = slurp(path);
    std::ofstream(path, std::ios::trunc) << grown;
    eval::GridConfig more = g;
    more.ratios = {0.5, 0.75, 0.9};
    struct rlimit old_limit {};
    ::getrlimit(RLIMIT_FSIZE, &old_limit);
    const auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
    struct rlimit small = old_limit;
    small.rlim_cur = static_cast<rlim_t>(grown.size() + 20);
    ::setrlimit(RLIMIT_FSIZE, &small);
    EXPECT_PIKV_ERROR(ev.run(more, path), "cannot append to results file", "disk full");
    ::setrlimit(RLIMIT_FSIZE, &old_limit);
    std::signal(SIGXFSZ, old_handler);
    EXPECT_EQ(slurp(path).substr(0, grown.size()), grown);
    const auto after = ev.run(more, path, {}, &t);
    EXPECT_EQ(t.cells, 1);
    EXPECT_EQ(after.size(), 4u);
    (void)full;
  }
  // Not ours at all.
  { std::ofstream(dir + "/foreign.jsonl") << "{\"hello\": 1}\n"; }
  EXPECT_PIKV_ERROR(ev.run(g, dir + "/foreign.jsonl"), "not ours");
  // Bad grids, before any work.
  eval::GridConfig bad = g;
  bad.tasks = {"sudoku"};
  EXPECT_PIKV_ERROR(ev.run(bad, dir + "/x.jsonl"), "unknown task 'sudoku'");
  bad = g;
  bad.lengths = {100000};
  EXPECT_PIKV_ERROR(ev.run(bad, dir + "/x.jsonl"), "context length 100000");
  bad = g;
  bad.ratios = {1.0};
  EXPECT_PIKV_ERROR(ev.run(bad, dir + "/x.jsonl"), "ratio");
  bad = g;
  bad.presses = {"decoding:press=knorm"};
  EXPECT_PIKV_ERROR(ev.run(bad, dir + "/x.jsonl"), "compression_ratio");
}

TEST(EvalGrid, BatchedCellsAnswerLikeSingleCells) {
  // Presses of one ratio whose caches have the same shape are answered as one batch; the rows must
  // give the answers single-row runs give (only float rounding of the batched products differs).
  auto& f = fixture();
  eval::Evaluator ev(*f.model, *f.tokenizer, f.corpus);
  eval::GridConfig g;
  g.tasks = {"passkey", "multikey"};
  g.lengths = {384};
  g.samples = 1;
  g.presses = {"knorm", "keydiff", "streaming_llm", "snapkv", "adakv:press=snapkv"};
  g.ratios = {0.5};
  g.model_path = "default";
  g.corpus_name = "haystack.txt";
  const std::string dir = pikv::test::temp_dir("eval_batch");
  const auto batched = ev.run(g, dir + "/batched.jsonl");
  g.batch_cells = false;
  const auto single = ev.run(g, dir + "/single.jsonl");
  ASSERT_EQ(batched.size(), single.size());
  std::map<std::string, eval::Record> by_key;
  for (const auto& r : single) by_key[r.key()] = r;
  for (const auto& r : batched) {
    SCOPED_TRACE(r.key());
    ASSERT_TRUE(by_key.count(r.key()));
    EXPECT_EQ(r.answer, by_key[r.key()].answer);
    EXPECT_NEAR(r.kl, by_key[r.key()].kl, 1e-5);
  }
}

TEST(RouterTaskLoss, SearchScoresTheCacheThePressBuildsAndEndsNoWorseThanItsStart) {
  // The task-loss calibration scores a table on caches it assembles from recorded kept sets; the gate it
  // writes must make MoERouterPress build exactly those caches, and the search only accepts gains.
  auto& f = fixture();
  routing::TaskLossOptions o;
  o.tasks = {"passkey"};
  o.samples = 3;
  o.length = 256;
  o.ratios = {0.5, 0.75};
  o.holdout = 0.34;  // every third sample
  o.group = 10;
  o.sweeps = 1;
  std::vector<std::string> stages;
  const routing::TaskLossReport rep = routing::calibrate_router_task_loss(
      *f.model, *f.tokenizer, f.corpus, o, [&](const std::string& stage, int64_t, int64_t) { stages.push_back(stage); });
  const int64_t L = f.model->num_layers();
  ASSERT_EQ(static_cast<int64_t>(rep.table.size()), L);
  EXPECT_EQ(rep.train_samples, 2);
  EXPECT_EQ(rep.holdout_samples, 1);
  EXPECT_EQ(rep.evaluations, (L / 10) * 3 * 2 * 2) << "groups x other experts x training samples x ratios";
  EXPECT_EQ(std::count(stages.begin(), stages.end(), "samples"), 3);
  EXPECT_EQ(std::count(stages.begin(), stages.end(), "groups"), L / 10);
  for (int64_t l = 0; l < L; ++l) {
    EXPECT_EQ(rep.table[l], rep.table[l / 10 * 10]) << "layer " << l << " shares its group's expert";
    EXPECT_EQ(rep.weights.layer_bias[l].argmax().item<int64_t>(), rep.table[l]);
    EXPECT_FLOAT_EQ(rep.weights.layer_bias[l].max().item<float>(), static_cast<float>(o.margin));
  }
  double table = 0.0, start = 0.0;
  for (size_t r = 0; r < o.ratios.size(); ++r) {
    table += rep.table_train_nll[r];
    start += rep.expert_train_nll[r][rep.best_single];
    EXPECT_GT(rep.expert_train_nll[r][rep.best_single], rep.full_train_nll[r] - 0.5) << "compression costs likelihood";
  }
  EXPECT_LE(table, start + 1e-9);
  EXPECT_NE(rep.markdown().find("learned table"), std::string::npos);

  // The gate file in the press, through the evaluation's shared prefill, on the two training samples.
  const std::string gate = pikv::test::temp_dir("task_loss") + "/gate.json";
  rep.weights.save(gate);
  Pipeline pipeline(*f.model, *f.tokenizer);
  for (size_t r = 0; r < o.ratios.size(); ++r) {
    double sum = 0.0;
    for (int64_t i : {0, 1}) {
      const eval::Sample s = eval::make_sample("passkey", i, o.length, o.seed, f.corpus, *f.tokenizer);
      std::vector<int64_t> later = pipeline.question_ids(s.question, s.answer_prefix);
      const std::vector<int64_t> answer = f.tokenizer->encode(" " + s.references.front());
      later.insert(later.end(), answer.begin(), answer.end());
      const SharedPrefill shared(*f.model, at::tensor(pipeline.context_ids(s.context), at::kLong).unsqueeze(0));
      routing::MoERouterPress press(routing::MoERouterOptions().compression_ratio(o.ratios[r]).weights(gate));
      KVCache cache = shared.compress(&press);
      const int64_t A = static_cast<int64_t>(answer.size()), T = static_cast<int64_t>(later.size());
      const at::Tensor logits = f.model->forward(at::tensor(later, at::kLong).unsqueeze(0), cache);
      const at::Tensor lp = at::log_softmax(logits[0].narrow(0, T - A - 1, A).to(at::kFloat), -1);
      sum += -lp.gather(1, at::tensor(answer, at::kLong).view({A, 1})).mean().item<double>();
    }
    EXPECT_NEAR(sum / 2.0, rep.table_train_nll[r], 1e-5) << "ratio " << o.ratios[r];
  }

  o.group = 0;
  EXPECT_PIKV_ERROR(routing::calibrate_router_task_loss(*f.model, *f.tokenizer, f.corpus, o), "group must be >= 1", "got 0");
  o.group = 1;
  o.ratios = {1.0};
  EXPECT_PIKV_ERROR(routing::calibrate_router_task_loss(*f.model, *f.tokenizer, f.corpus, o), "ratios must be in (0, 1)", "got 1");
}
