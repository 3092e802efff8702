#pragma once

#include <pikv/calibration/router_task_loss.h>
#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/detail/clock.h>
#include <pikv/core/selection.h>
#include <pikv/pipeline/pipeline.h>
#include <pikv/pipeline/shared_prefill.h>

#include <ATen/ATen.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

namespace pikv::routing {
namespace detail {

// One calibration sample: the uncompressed cache after the context, what follows it, and the positions
// every expert keeps in every layer at every ratio.
struct TaskLossSample {
  explicit TaskLossSample(KVCache cache) : full(std::move(cache)) {}
  KVCache full;
  at::Tensor later;   // int64 [1, Q + A]: the question part, then the reference answer
  at::Tensor answer;  // int64 [A]
  std::vector<std::vector<std::vector<at::Tensor>>> kept;  // [ratio][expert][layer] int64 [B, Hkv, k]; undefined
                                                           // for a layer the press does not compress
  bool holdout = false;
};

// The answer a sample's metric wants, as the model would continue the answer prefix: every reference
// (", "-separated) for "all", the first for "any", after a space.
PIKV_INLINE std::string reference_answer(const eval::Sample& s) {
  PIKV_CHECK(!s.references.empty(), "task-loss calibration: sample {} of {} has no reference answer", s.index, s.task);
  return " " + (s.metric == "all" ? fmt::format("{}", fmt::join(s.references, ", ")) : s.references.front());
}

// Mean NLL per answer token of the reference answer over the cache that `table` leaves at ratio index r
// (table[l] = expert of layer l, -1 = uncompressed).
PIKV_INLINE double answer_nll(DecoderModel& model, const TaskLossSample& s, size_t r, const std::vector<int64_t>& table) {
  KVCache cache = s.full.clone();
  for (int64_t l = 0; l < cache.num_layers(); ++l) {
    if (table[static_cast<size_t>(l)] < 0) continue;
    const at::Tensor& idx = s.kept[r][static_cast<size_t>(table[static_cast<size_t>(l)])][static_cast<size_t>(l)];
    if (!idx.defined()) continue;  // a layer no press sees (e.g. a sliding-window layer)
    CompressedKV kv;
    kv.keys = gather_tokens(s.full.keys(l), idx);
    kv.values = gather_tokens(s.full.values(l), idx);
    kv.indices = idx;
    cache.apply(l, kv);
  }
  const at::Tensor logits = model.forward(s.later, cache);  // [1, Q + A, V]
  const int64_t A = s.answer.numel(), T = s.later.size(1);
  // Position t predicts token t + 1: the answer's A tokens are predicted from positions T-A-1 .. T-2.
  const at::Tensor lp = at::log_softmax(logits[0].narrow(0, T - A - 1, A).to(at::kFloat), -1);
  return -lp.gather(1, s.answer.to(lp.device()).view({A, 1})).mean().item<double>();
}

// The e-th entry of a '+'-separated expert list, as written (a scorer press keeps its options).
PIKV_INLINE std::string expert_spec(const std::string& experts, int64_t e) {
  size_t begin = 0;
  for (int64_t k = 0; k < e; ++k) begin = experts.find('+', begin) + 1;
  const size_t end = experts.find('+', begin);
  return experts.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
}

}  // namespace detail

PIKV_INLINE std::string TaskLossReport::markdown() const {
  std::string out = fmt::format(
      "Mean negative log-likelihood of the reference answer (nats per answer token, teacher-forced after the "
      "question over the compressed cache), {} training and {} held-out samples; lower is better. The search "
      "started from {} alone and ran {} sweep(s) over groups of {} layer(s), keeping a change that lowered the training loss by more than {} ({} losses computed).\n\n| ratio | samples | "
      "uncompressed |",
      train_samples, holdout_samples, experts[static_cast<size_t>(best_single)], sweeps_run, group, min_gain,
      evaluations);
  for (const auto& e : experts) out += fmt::format(" {} alone |", e);
  out += " learned table |\n|---|---|---|";
  for (size_t e = 0; e < experts.size() + 1; ++e) out += "---|";
  out += "\n";
  auto rows = [&](const char* which, const std::vector<double>& full, const std::vector<std::vector<double>>& per,
                  const std::vector<double>& table_nll) {
    for (size_t r = 0; r < ratios.size(); ++r) {
      out += fmt::format("| {} | {} | {:.4f} |", ratios[r], which, full[r]);
      for (double x : per[r]) out += fmt::format(" {:.4f} |", x);
      out += fmt::format(" **{:.4f}** |\n", table_nll[r]);
    }
  };
  rows("training", full_train_nll, expert_train_nll, table_train_nll);
  rows("held-out", full_holdout_nll, expert_holdout_nll, table_holdout_nll);
  out += fmt::format("\nHeld-out samples where the learned table's loss is lower / higher than {} alone's:",
                     experts[static_cast<size_t>(best_single)]);
  for (size_t r = 0; r < ratios.size(); ++r) {
    out += fmt::format(" ratio {}: {} / {}{}", ratios[r], holdout_better[r], holdout_worse[r], r + 1 < ratios.size() ? ";" : ".");
  }
  out += "\n\nLearned table (expert per layer):\n\n| layer | expert |\n|---|---|\n";
  for (size_t l = 0; l < table.size(); ++l) out += fmt::format("| {} | {} |\n", l, experts[static_cast<size_t>(table[l])]);
  return out;
}

PIKV_INLINE TaskLossReport calibrate_router_task_loss(DecoderModel& model, const Tokenizer& tokenizer,
                                                      const eval::Corpus& corpus, const TaskLossOptions& o,
                                                      const CalibrationProgress& progress) {
  check_calibration_inputs(model, o.tasks, o.samples, o.ratios, o.length, o.holdout);
  PIKV_CHECK(o.sweeps >= 1, "calibrate-router: sweeps must be >= 1, got {}", o.sweeps);
  PIKV_CHECK(std::isfinite(o.margin) && o.margin > 0.0, "calibrate-router: margin must be > 0, got {}", o.margin);
  PIKV_CHECK(o.group >= 1, "calibrate-router: group must be >= 1 layer, got {}", o.group);
  PIKV_CHECK(std::isfinite(o.min_gain) && o.min_gain >= 0.0, "calibrate-router: min_gain must be >= 0, got {}", o.min_gain);

  std::vector<std::string> names;
  for (const auto& e : experts_from_names(o.experts)) names.push_back(e->name());  // throws for unknown names
  const int64_t E = static_cast<int64_t>(names.size()), L = model.num_layers();
  const size_t R = o.ratios.size();
  Pipeline pipeline(model, tokenizer);
  const auto ids = at::TensorOptions().dtype(at::kLong).device(model.options().device());

  // Record: one prefill per sample, every expert's kept positions per (ratio, layer).
  std::vector<detail::TaskLossSample> samples;
  const int64_t total = static_cast<int64_t>(o.tasks.size()) * o.samples;
  const auto t0 = std::chrono::steady_clock::now();
  for (const auto& task : o.tasks) {
    for (int64_t i = 0; i < o.samples; ++i) {
      const eval::Sample s = eval::make_sample(task, i, o.length, o.seed, corpus, tokenizer);
      const SharedPrefill shared(model, at::tensor(pipeline.context_ids(s.context), ids).unsqueeze(0));
      detail::TaskLossSample out(shared.compress(nullptr));
      std::vector<int64_t> later = pipeline.question_ids(s.question, s.answer_prefix);
      const std::vector<int64_t> answer = tokenizer.encode(detail::reference_answer(s));
      PIKV_CHECK(!answer.empty(), "task-loss calibration: the reference answer of {} sample {} encodes to no tokens",
                 task, i);
      later.insert(later.end(), answer.begin(), answer.end());
      out.later = at::tensor(later, ids).unsqueeze(0);
      out.answer = at::tensor(answer, at::kLong);
      out.kept.assign(R, std::vector<std::vector<at::Tensor>>(static_cast<size_t>(E)));
      for (size_t r = 0; r < R; ++r) {
        for (int64_t e = 0; e < E; ++e) {
          MoERouterPress press(MoERouterOptions()
                                   .compression_ratio(o.ratios[r])
                                   .experts(detail::expert_spec(o.experts, e))
                                   .router(PiKVRouterOptions().top_k(1))
                                   .window_size(o.window_size)
                                   .kernel_size(o.kernel_size)
                                   .n_sink(o.n_sink));
          const KVCache c = shared.compress(&press);
          auto& per_layer = out.kept[r][static_cast<size_t>(e)];
          for (int64_t l = 0; l < L; ++l) per_layer.push_back(c.kept_positions(l));
        }
      }
      const int64_t n = static_cast<int64_t>(samples.size());
      out.holdout = is_held_out(n, o.holdout);
      samples.push_back(std::move(out));
      if (progress) progress("samples", n + 1, total);
    }
  }

  TaskLossReport report;
  report.record_ms = ::pikv::detail::ms_since(t0);
  report.experts = names;
  report.ratios = o.ratios;
  report.group = o.group;
  report.min_gain = o.min_gain;
  for (const auto& s : samples) ++(s.holdout ? report.holdout_samples : report.train_samples);
  const bool has_holdout = report.holdout_samples > 0;

  // Mean loss over the training (or held-out) samples of one ratio; `per` receives each sample's loss.
  auto mean_nll = [&](const std::vector<int64_t>& table, size_t r, bool holdout, std::vector<double>* per = nullptr) {
    double sum = 0.0;
    int64_t n = 0;
    for (const auto& s : samples) {
      if (s.holdout != holdout) continue;
      const double x = detail::answer_nll(model, s, r, table);
      if (per) per->push_back(x);
      sum += x;
      ++n;
    }
    return n > 0 ? sum / static_cast<double>(n) : std::numeric_limits<double>::quiet_NaN();
  };
  auto train_loss = [&](const std::vector<int64_t>& table) {
    double sum = 0.0;
    for (size_t r = 0; r < R; ++r) sum += mean_nll(table, r, false);
    report.evaluations += report.train_samples * static_cast<int64_t>(R);
    return sum / static_cast<double>(R);
  };

  const auto t1 = std::chrono::steady_clock::now();
  const std::vector<int64_t> uncompressed(static_cast<size_t>(L), -1);
  // [e][r]: every expert's per-sample held-out losses (the sign test reads the starting expert's).
  std::vector<std::vector<std::vector<double>>> holdout_per(static_cast<size_t>(E), std::vector<std::vector<double>>(R));
  double best_loss = std::numeric_limits<double>::infinity();
  report.expert_train_nll.assign(R, {});
  report.expert_holdout_nll.assign(R, {});
  for (size_t r = 0; r < R; ++r) {
    report.full_train_nll.push_back(mean_nll(uncompressed, r, false));
    report.full_holdout_nll.push_back(has_holdout ? mean_nll(uncompressed, r, true) : report.full_train_nll.back());
  }
  if (progress) progress("baselines", 1, E + 1);
  for (int64_t e = 0; e < E; ++e) {
    const std::vector<int64_t> alone(static_cast<size_t>(L), e);
    double sum = 0.0;
    for (size_t r = 0; r < R; ++r) {
      report.expert_train_nll[r].push_back(mean_nll(alone, r, false));
      sum += report.expert_train_nll[r].back();
      report.expert_holdout_nll[r].push_back(has_holdout ? mean_nll(alone, r, true, &holdout_per[e][r])
                                                         : report.expert_train_nll[r].back());
    }
    if (sum / static_cast<double>(R) < best_loss) {
      best_loss = sum / static_cast<double>(R);
      report.best_single = e;
    }
    if (progress) progress("baselines", e + 2, E + 1);
  }
  const std::vector<std::vector<double>>& expert_holdout_per = holdout_per[static_cast<size_t>(report.best_single)];

  // Coordinate descent: per group of layers, the expert that lowers the mean training loss most by more
  // than min_gain (ties keep the current one, so a sweep without any gain ends the search). Groups
  // hold only layers a press compresses.
  std::vector<std::vector<int64_t>> groups;
  for (int64_t l = 0; l < L; ++l) {
    if (!samples.front().kept.front().front()[static_cast<size_t>(l)].defined()) continue;
    if (groups.empty() || static_cast<int64_t>(groups.back().size()) == o.group) groups.emplace_back();
    groups.back().push_back(l);
  }
  const int64_t G = static_cast<int64_t>(groups.size());
  std::vector<int64_t> table(static_cast<size_t>(L), report.best_single);
  for (int64_t sweep = 0; sweep < o.sweeps; ++sweep) {
    bool changed = false;
    for (int64_t g = 0; g < G; ++g) {
      const std::vector<int64_t>& layers = groups[static_cast<size_t>(g)];
      const int64_t current = table[static_cast<size_t>(layers.front())];
      std::vector<int64_t> best_table;
      double best_trial = best_loss - o.min_gain;
      for (int64_t e = 0; e < E; ++e) {
        if (e == current) continue;
        std::vector<int64_t> trial = table;
        for (int64_t l : layers) trial[static_cast<size_t>(l)] = e;
        const double loss = train_loss(trial);
        if (loss < best_trial) {
          best_trial = loss;
          best_table = trial;
        }
      }
      if (!best_table.empty()) {
        best_loss = best_trial;
        table = best_table;
        changed = true;
      }
      if (progress) progress("groups", sweep * G + g + 1, o.sweeps * G);
    }
    ++report.sweeps_run;
    if (!changed) break;
  }
  report.search_ms = ::pikv::detail::ms_since(t1);
  report.table = table;
  for (size_t r = 0; r < R; ++r) {
    report.table_train_nll.push_back(mean_nll(table, r, false));
    std::vector<double> per;
    report.table_holdout_nll.push_back(has_holdout ? mean_nll(table, r, true, &per) : report.table_train_nll[r]);
    int64_t better = 0, worse = 0;
    for (size_t k = 0; k < per.size(); ++k) {
      better += per[k] < expert_holdout_per[r][k] - 1e-9 ? 1 : 0;
      worse += per[k] > expert_holdout_per[r][k] + 1e-9 ? 1 : 0;
    }
    report.holdout_better.push_back(better);
    report.holdout_worse.push_back(worse);
  }

  GateWeights g;
  g.experts = names;
  g.W = at::zeros({E, kNumFeatures}, at::kFloat);
  g.b = at::zeros({E}, at::kFloat);
  g.layer_bias = at::zeros({L, E}, at::kFloat);
  for (int64_t l = 0; l < L; ++l) g.layer_bias[l][table[static_cast<size_t>(l)]] = o.margin;
  g.num_layers = L;
  g.num_kv_heads = model.config().num_kv_heads;
  g.head_dim = model.config().head_dim;
  g.source = "task-loss calibration";
  std::vector<std::string> chosen;
  for (int64_t e : table) chosen.push_back(names[static_cast<size_t>(e)]);
  const nlohmann::json cal = {{"objective", "task_loss"},
                              {"experts", o.experts},
                              {"samples", total},
                              {"tasks", o.tasks},
                              {"length", o.length},
                              {"ratios", o.ratios},
                              {"seed", o.seed},
                              {"sweeps", report.sweeps_run},
                              {"group", o.group},
                              {"min_gain", o.min_gain},
                              {"train_samples", report.train_samples},
                              {"holdout_samples", report.holdout_samples},
                              {"table", chosen},
                              {"holdout_table_nll", report.table_holdout_nll},
                              {"holdout_expert_nll", report.expert_holdout_nll},
                              {"holdout_uncompressed_nll", report.full_holdout_nll}};
  g.calibration = cal.dump();
  report.weights = g;
  return report;
}

}  // namespace pikv::routing
