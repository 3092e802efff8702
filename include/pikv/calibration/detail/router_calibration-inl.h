#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/clock.h>
#include <pikv/core/budget.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/hookable_model.h>
#include <pikv/core/detail/logging.h>
#include <pikv/io/files.h>
#include <pikv/pipeline/pipeline.h>
#include <pikv/calibration/router_calibration.h>

#include <ATen/ATen.h>
#include <torch/optim/adam.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>

namespace pikv::routing {
namespace detail {

// Every pair of experts a < b, in one order that the probe, the training targets and the report share.
PIKV_INLINE std::vector<std::pair<int64_t, int64_t>> expert_pairs(int64_t experts) {
  std::vector<std::pair<int64_t, int64_t>> out;
  for (int64_t a = 0; a < experts; ++a) {
    for (int64_t b = a + 1; b < experts; ++b) out.emplace_back(a, b);
  }
  return out;
}

// Records, per layer, the gate features and every expert's solo kept set during the prefill, then the
// recall of those sets against the attention of the question forward. Compresses nothing.
class CalibrationProbe : public Press {
 public:
  CalibrationProbe(const std::vector<std::shared_ptr<Expert>>& experts, const std::vector<double>& ratios,
                   const CalibrationOptions& o)
      : experts_(experts), ratios_(ratios), o_(o) {}
  std::string name() const override { return "calibration_probe"; }
  double compression_ratio() const override { return 0.0; }
  PressRequirements requirements() const override {
    PressRequirements r;
    r.hidden_states = true;
    r.layer_view = true;
    return r;
  }
  bool should_compress(const AttentionContext&) const override { return true; }

  CompressedKV compress(const AttentionContext& ctx) override {
    Layer& l = layers_[ctx.layer];
    if (ctx.is_prefill) {
      const LayerSignals s = compute_signals(ctx, o_.window_size, o_.kernel_size, o_.n_sink);
      l.features = gate_features(s, ctx.layer, ctx.num_layers).cpu();  // [B, Hkv, F]
      l.n = ctx.length();
      l.kept.clear();
      // The built-in experts' orders do not depend on the ratio: one score per expert.
      std::vector<at::Tensor> solo;
      for (const auto& e : experts_) solo.push_back(solo_keep_scores(*e, ctx, s, ratios_.front()));
      auto keep = [&](const at::Tensor& scores) {
        for (double r : ratios_) {
          at::Tensor mask = at::zeros(scores.sizes(), scores.options().dtype(at::kFloat));
          mask.scatter_(2, top_k_positions(scores, n_kept(l.n, r)), 1.0);
          l.kept.push_back(mask);
        }
      };
      for (const at::Tensor& scores : solo) keep(scores);  // index e * R + ratio
      // Diagnostics: every pair of experts mixed with equal weights, as a top_k = 2 router would.
      for (const auto& [a, b] : expert_pairs(static_cast<int64_t>(solo.size()))) {
        at::Tensor mix = 0.5 * solo[a] + 0.5 * solo[b];
        keep(mix.masked_fill((solo[a] >= 2.0).logical_or(solo[b] >= 2.0), 2.0));  // protected by either
      }
    } else {
      PIKV_CHECK(ctx.attention_weights, "calibration probe: the question forward must materialise attention weights");
      const at::Tensor& w = *ctx.attention_weights;  // [B, H, q, n_total]
      const int64_t B = ctx.batch(), Hkv = ctx.kv_heads();
      // Only the last `last_queries` rows when set (the answer tokens of the question forward).
      const int64_t q = w.size(2), rows = last_queries > 0 ? std::min(last_queries, q) : q;
      at::Tensor a = w.narrow(2, q - rows, rows).narrow(3, 0, l.n).to(at::kFloat).mean(2);  // [B, H, n]
      a = a.view({B, Hkv, -1, l.n}).mean(2);
      a = a / a.sum(-1, true).clamp_min(1e-30);
      std::vector<at::Tensor> rec;
      for (const at::Tensor& mask : l.kept) rec.push_back((a * mask).sum(-1));  // [B, Hkv]
      // Several later forwards (question, continuation): their recalls are averaged.
      at::Tensor r = at::stack(rec, -1).cpu();  // [B, Hkv, E * R]
      l.recall = l.recall.defined() ? l.recall + r : r;
      ++l.later;
    }
    CompressedKV skip;
    skip.skipped = true;
    return skip;
  }

  struct Layer {
    at::Tensor features;           // [B, Hkv, F]
    std::vector<at::Tensor> kept;  // E * R masks [B, Hkv, n]
    at::Tensor recall;             // [B, Hkv, E * R], summed over `later` forwards
    int64_t n = 0, later = 0;
  };
  int64_t last_queries = 0;  // 0: every query of a later forward
  std::map<int64_t, Layer> layers_;

 private:
  const std::vector<std::shared_ptr<Expert>>& experts_;
  const std::vector<double>& ratios_;
  const CalibrationOptions& o_;
};

// Mean recall of a top-1 choice per row: recall [N, E], choice int64 [N].
PIKV_INLINE double chosen_recall(const at::Tensor& recall, const at::Tensor& choice) {
  return recall.gather(1, choice.unsqueeze(1)).mean().item<double>();
}

// One calibration sample as recorded: per layer (ascending), the gate features of every (batch, KV head)
// row and the recall of every expert and pair at every ratio.
struct RecordedLayer {
  int64_t layer = 0;
  at::Tensor features;  // float [rows, kNumFeatures]
  at::Tensor recall;    // float [rows, E + pairs, R]
};
using RecordedSample = std::vector<RecordedLayer>;

PIKV_INLINE nlohmann::json floats_json(const at::Tensor& t) {
  const at::Tensor c = t.contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

// The append-only checkpoint of calibrate_router (CalibrationOptions::checkpoint): a header line with
// the settings every recorded sample depends on, then one line per sample, {"key", "layers"}.
class CalibrationCheckpoint {
 public:
  CalibrationCheckpoint(std::string path, const nlohmann::json& header, int64_t width, int64_t num_layers)
      : path_(std::move(path)), width_(width), num_layers_(num_layers) {
    if (std::filesystem::exists(path_)) {
      resume(header);
    } else {
      std::ofstream out(path_);
      PIKV_CHECK(out.good(), "cannot create calibration checkpoint '{}': {}", path_, std::strerror(errno));
      out << header.dump() << "\n";
      out.flush();
      PIKV_CHECK(out.good(), "cannot write calibration checkpoint '{}' (disk full?)", path_);
    }
    out_.open(path_, std::ios::app);
    PIKV_CHECK(out_.good(), "cannot append to calibration checkpoint '{}': {}", path_, std::strerror(errno));
  }

  const RecordedSample* find(const std::string& key) const {
    auto it = samples_.find(key);
    return it == samples_.end() ? nullptr : &it->second;
  }

  void append(const std::string& key, const RecordedSample& sample) {
    nlohmann::json layers = nlohmann::json::array();
    for (const auto& l : sample) {
      layers.push_back({{"layer", l.layer}, {"features", floats_json(l.features)}, {"recall", floats_json(l.recall)}});
    }
    out_ << nlohmann::json{{"key", key}, {"layers", layers}}.dump() << "\n";
    out_.flush();
    PIKV_CHECK(out_.good(), "cannot append to calibration checkpoint '{}' (disk full?); the samples before this one "
               "are kept, run again to resume", path_);
  }

 private:
  void resume(const nlohmann::json& want) {
    const std::string content = io::read_text_file(path_, "calibration checkpoint");
    size_t pos = 0;
    int64_t no = 0;
    while (pos < content.size()) {
      const size_t end = content.find('\n', pos);
      ++no;
      if (end == std::string::npos) break;  // torn by a kill mid-write: dropped below
      const std::string line = content.substr(pos, end - pos);
      pos = end + 1;
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(line);
      } catch (const nlohmann::json::exception& e) {
        PIKV_FAIL("calibration checkpoint '{}' line {} is not valid JSON ({}); the file was left untouched", path_, no,
                  e.what());
      }
      if (no == 1) {
        PIKV_CHECK(j.is_object() && j.contains("pikv_calibration"),
                   "'{}' is not a calibration checkpoint (no pikv_calibration header); choose another checkpoint path",
                   path_);
        for (const auto& [key, value] : want.items()) {
          PIKV_CHECK(j.contains(key) && j[key] == value,
                     "calibration checkpoint '{}' was recorded with {} = {}, this run has {}; use another checkpoint "
                     "path or delete it (nothing was changed)",
                     path_, key, j.contains(key) ? j[key].dump() : "nothing", value.dump());
        }
        continue;
      }
      try {
        samples_[j.at("key").get<std::string>()] = parse_sample(j.at("layers"));
      } catch (const nlohmann::json::exception& e) {
        PIKV_FAIL("calibration checkpoint '{}' line {} is not a recorded sample: {}; the file was left untouched", path_,
                  no, e.what());
      } catch (const Error& e) {
        PIKV_FAIL("calibration checkpoint '{}' line {} is not a recorded sample: {}; the file was left untouched", path_,
                  no, e.what());
      }
    }
    PIKV_CHECK(no >= 1 && pos > 0, "calibration checkpoint '{}' has no complete header line; delete it", path_);
    if (pos < content.size()) {
      ::pikv::log::warn("calibration checkpoint '{}': dropping the incomplete last line {} (a run interrupted while writing it)",
                path_, no);
      std::error_code ec;
      std::filesystem::resize_file(path_, pos, ec);
      PIKV_CHECK(!ec, "cannot drop the incomplete last line of calibration checkpoint '{}': {}", path_, ec.message());
    }
  }

  RecordedSample parse_sample(const nlohmann::json& layers) const {
    RecordedSample out;
    for (const auto& l : layers) {
      RecordedLayer r;
      PIKV_CHECK(l.at("layer").is_number_integer(), "layer must be an integer, got {}", l.at("layer").dump());
      r.layer = l.at("layer").get<int64_t>();
      PIKV_CHECK(r.layer >= 0 && r.layer < num_layers_ && (out.empty() || r.layer > out.back().layer),
                 "layer {} out of order or outside [0, {})", r.layer, num_layers_);
      const auto f = l.at("features").get<std::vector<float>>();
      const auto c = l.at("recall").get<std::vector<float>>();
      const int64_t rows = static_cast<int64_t>(f.size()) / kNumFeatures;
      PIKV_CHECK(rows >= 1 && static_cast<int64_t>(f.size()) == rows * kNumFeatures &&
                     static_cast<int64_t>(c.size()) == rows * width_,
                 "layer {}: {} features and {} recalls do not make rows of {} and {}", r.layer, f.size(), c.size(),
                 kNumFeatures, width_);
      r.features = at::tensor(f, at::kFloat).view({rows, kNumFeatures});
      r.recall = at::tensor(c, at::kFloat).view({rows, width_});
      PIKV_CHECK(r.features.isfinite().all().item<bool>() && r.recall.isfinite().all().item<bool>(),
                 "layer {} holds non-finite values", r.layer);
      out.push_back(std::move(r));
    }
    PIKV_CHECK(static_cast<int64_t>(out.size()) == num_layers_, "{} layers recorded, the model has {}", out.size(),
               num_layers_);
    return out;
  }

  std::string path_;
  int64_t width_, num_layers_;  // width: recalls per row (E + pairs) * R
  std::map<std::string, RecordedSample> samples_;
  std::ofstream out_;
};

// FNV-1a over the corpus sentences: a checkpoint recorded on other text is not resumed.
PIKV_INLINE std::string corpus_fingerprint(const eval::Corpus& corpus) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < corpus.size(); ++i) {
    for (unsigned char ch : corpus.sentence(i) + "\n") h = (h ^ ch) * 1099511628211ull;
  }
  return fmt::format("{:016x}", h);
}

}  // namespace detail

PIKV_INLINE std::string CalibrationReport::markdown() const {
  std::string out = fmt::format(
      "Held-out mean attention recall (share of the later queries' attention on the kept tokens), {} samples, {} "
      "training rows, {} held-out rows; rows are (sample, layer, KV head).\n\n| ratio |",
      samples, train_rows, holdout_rows);
  for (const auto& e : experts) out += fmt::format(" {} alone |", e);
  out += " default table (top-1) | learned (top-1) | oracle (best expert per head) |\n|---|";
  for (size_t e = 0; e < experts.size() + 3; ++e) out += "---|";
  out += "\n";
  for (size_t r = 0; r < ratios.size(); ++r) {
    out += fmt::format("| {} |", ratios[r]);
    for (double x : expert_recall[r]) out += fmt::format(" {:.4f} |", x);
    out += fmt::format(" {:.4f} | {:.4f} | {:.4f} |\n", default_recall[r], learned_recall[r], oracle_recall[r]);
  }
  out += "\nEvery head mixing two experts with equal weights (what a top_k = 2 router does when unsure):\n\n| ratio |";
  for (const auto& p : pairs) out += fmt::format(" {} |", p);
  out += "\n|---|";
  for (size_t k = 0; k < pairs.size(); ++k) out += "---|";
  out += "\n";
  for (size_t r = 0; r < ratios.size() && r < pair_recall.size(); ++r) {
    out += fmt::format("| {} |", ratios[r]);
    for (double x : pair_recall[r]) out += fmt::format(" {:.4f} |", x);
    out += "\n";
  }
  out += fmt::format("\nAs routed by a top_k = 2 router (one expert when its gate probability reaches the threshold, else "
                     "its two best mixed; pairs measured at equal weights):\n\n| ratio | default table, threshold 0.5 | "
                     "learned, threshold {} | best single expert |\n|---|---|---|---|\n",
                     importance_threshold);
  for (size_t r = 0; r < ratios.size() && r < learned_routed_recall.size(); ++r) {
    out += fmt::format("| {} | {:.4f} | {:.4f} | {:.4f} |\n", ratios[r], default_routed_recall[r], learned_routed_recall[r],
                       *std::max_element(expert_recall[r].begin(), expert_recall[r].end()));
  }
  out += "\nLearned gate's top-1 expert on held-out rows:";
  for (size_t e = 0; e < experts.size(); ++e) out += fmt::format(" {} {}{}", experts[e], learned_choice[e], e + 1 < experts.size() ? "," : "");
  out += "\n";
  return out;
}

PIKV_INLINE void check_calibration_inputs(const DecoderModel& model, const std::vector<std::string>& tasks,
                                          int64_t samples, const std::vector<double>& ratios, int64_t length,
                                          double holdout) {
  PIKV_CHECK(!tasks.empty() && samples >= 1, "calibrate-router needs at least one task and one sample per task");
  PIKV_CHECK(!ratios.empty(), "calibrate-router needs at least one compression ratio");
  for (double r : ratios) PIKV_CHECK(r > 0.0 && r < 1.0, "calibrate-router: ratios must be in (0, 1), got {}", r);
  const int64_t limit = model.config().max_position_embeddings;
  PIKV_CHECK(length >= 128 && (limit <= 0 || length + 64 <= limit),
             "calibrate-router: length must be in [128, {}] for this model (its limit, minus room for the question), "
             "got {}",
             limit > 0 ? limit - 64 : int64_t{1} << 40, length);
  PIKV_CHECK(holdout >= 0.0 && holdout < 1.0, "calibrate-router: holdout must be in [0, 1), got {}", holdout);
}

PIKV_INLINE bool is_held_out(int64_t index, double holdout) {
  if (holdout <= 0.0) return false;
  const int64_t every = std::max<int64_t>(2, static_cast<int64_t>(std::llround(1.0 / holdout)));
  return index % every == every - 1;
}

PIKV_INLINE CalibrationReport calibrate_router(DecoderModel& model, const Tokenizer& tokenizer, const eval::Corpus& corpus,
                                   const CalibrationOptions& o, const CalibrationProgress& progress) {
  check_calibration_inputs(model, o.tasks, o.samples, o.ratios, o.length, o.holdout);
  PIKV_CHECK(o.epochs >= 1 && o.learning_rate > 0, "calibrate-router: epochs >= 1 and learning_rate > 0 required");
  PIKV_CHECK(o.objective != CalibrationObjective::task_loss,
             "calibrate_router fits the gate to attention recall; the task_loss objective is calibrate_router_task_loss");

  const auto experts = default_experts();
  const int64_t E = static_cast<int64_t>(experts.size()), R = static_cast<int64_t>(o.ratios.size());
  const auto pairs = detail::expert_pairs(E);
  std::vector<std::vector<int64_t>> pair_of(static_cast<size_t>(E), std::vector<int64_t>(static_cast<size_t>(E), -1));
  for (size_t k = 0; k < pairs.size(); ++k) {
    pair_of[pairs[k].first][pairs[k].second] = pair_of[pairs[k].second][pairs[k].first] = static_cast<int64_t>(k);
  }
  Pipeline pipeline(model, tokenizer);
  CalibrationReport report;
  report.experts = builtin_expert_names();
  report.ratios = o.ratios;
  report.importance_threshold = o.importance_threshold;

  const int64_t P = static_cast<int64_t>(pairs.size());
  std::optional<detail::CalibrationCheckpoint> checkpoint;
  if (!o.checkpoint.empty()) {
    const nlohmann::json header = {{"pikv_calibration", 1},
                                   {"identity", o.identity},
                                   {"corpus", detail::corpus_fingerprint(corpus)},
                                   {"length", o.length},
                                   {"seed", o.seed},
                                   {"ratios", o.ratios},
                                   {"experts", report.experts},
                                   {"continuation_tokens", o.continuation_tokens},
                                   {"queries", to_string(o.queries)},
                                   {"window_size", o.window_size},
                                   {"kernel_size", o.kernel_size},
                                   {"n_sink", o.n_sink},
                                   {"num_layers", model.num_layers()},
                                   {"num_kv_heads", model.config().num_kv_heads},
                                   {"head_dim", model.config().head_dim}};
    checkpoint.emplace(o.checkpoint, header, (E + P) * R, model.num_layers());
  }

  // Records one sample: prefill the context with the probe, then the later forwards.
  auto record = [&](const std::string& task, int64_t i) {
    const eval::Sample s = eval::make_sample(task, i, o.length, o.seed, corpus, tokenizer);
    const auto ids = at::TensorOptions().dtype(at::kLong).device(model.options().device());
    const std::vector<int64_t> ctx_ids = pipeline.context_ids(s.context);
    std::vector<int64_t> later = pipeline.question_ids(s.question, s.answer_prefix);
    const std::vector<int64_t> answer = tokenizer.encode(s.references.front());
    later.insert(later.end(), answer.begin(), answer.end());
    detail::CalibrationProbe probe(experts, o.ratios, o);
    if (o.queries == CalibrationQueries::answer) probe.last_queries = static_cast<int64_t>(answer.size());
    {
      PressGuard guard(model, probe);
      KVCache cache(model.num_layers());
      model.forward(at::tensor(ctx_ids, ids).unsqueeze(0), cache);
      model.forward(at::tensor(later, ids).unsqueeze(0), cache, ForwardOptions().eager_attention(true));
      if (o.continuation_tokens > 0 && o.queries == CalibrationQueries::all) {
        // The text that follows the context, as the KL metric of the evaluation reads it.
        std::vector<int64_t> cont = tokenizer.encode(" " + s.continuation);
        if (static_cast<int64_t>(cont.size()) > o.continuation_tokens) cont.resize(static_cast<size_t>(o.continuation_tokens));
        cache.truncate(static_cast<int64_t>(ctx_ids.size()));
        model.forward(at::tensor(cont, ids).unsqueeze(0), cache, ForwardOptions().eager_attention(true));
      }
    }
    detail::RecordedSample out;
    for (auto& [layer, l] : probe.layers_) {
      PIKV_CHECK(l.recall.defined(), "calibration: layer {} saw no question forward", layer);
      const int64_t rows = l.features.size(0) * l.features.size(1);
      out.push_back({layer, l.features.reshape({rows, kNumFeatures}).to(at::kFloat).contiguous(),
                     (l.recall / static_cast<double>(l.later)).reshape({rows, E + P, R}).to(at::kFloat).contiguous()});
    }
    return out;
  };

  // Rows of (features, recall per expert) per sample and ratio.
  std::vector<at::Tensor> feats, recalls, ratio_of, pair_recalls;  // [N, F], [N, E], [N], [N, pairs]
  std::vector<int64_t> sample_of;
  const int64_t total = static_cast<int64_t>(o.tasks.size()) * o.samples;
  int64_t done = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (const auto& task : o.tasks) {
    for (int64_t i = 0; i < o.samples; ++i) {
      const std::string key = fmt::format("{}|{}", task, i);
      const detail::RecordedSample* found = checkpoint ? checkpoint->find(key) : nullptr;
      detail::RecordedSample recorded;
      if (found != nullptr) {
        ++report.resumed_samples;
      } else {
        recorded = record(task, i);
        if (checkpoint) checkpoint->append(key, recorded);
      }
      for (const detail::RecordedLayer& l : found != nullptr ? *found : recorded) {
        const int64_t rows = l.features.size(0);
        const at::Tensor all = l.recall.view({rows, E + P, R});
        for (int64_t r = 0; r < R; ++r) {
          pair_recalls.push_back(all.narrow(1, E, P).select(2, r));
          feats.push_back(l.features);
          recalls.push_back(all.narrow(1, 0, E).select(2, r));
          ratio_of.push_back(at::full({rows}, r, at::kLong));
          for (int64_t k = 0; k < rows; ++k) sample_of.push_back(done);
        }
      }
      ++done;
      if (progress) progress("samples", done, total);
    }
  }
  report.prefill_ms = ::pikv::detail::ms_since(t0);
  report.samples = total;

  at::Tensor F = at::cat(feats), Rc = at::cat(recalls), Ri = at::cat(ratio_of);
  // Held-out samples: every k-th sample, spread across tasks.
  std::vector<int64_t> train_idx, hold_idx;
  for (size_t k = 0; k < sample_of.size(); ++k) {
    (is_held_out(sample_of[k], o.holdout) ? hold_idx : train_idx).push_back(static_cast<int64_t>(k));
  }
  if (hold_idx.empty()) hold_idx = train_idx;  // no holdout: report on the training rows
  at::Tensor ti = at::tensor(train_idx, at::kLong), hi = at::tensor(hold_idx, at::kLong);
  report.train_rows = ti.numel();
  report.holdout_rows = o.holdout > 0 ? hi.numel() : 0;
  at::Tensor Pc = at::cat(pair_recalls);  // [N, pairs]

  // Train from the default table. "best": cross-entropy towards the best outcome of each row -- one
  // expert (one-hot target) or an equal-weight pair (0.5 / 0.5 target, which a top_k = 2 router with
  // importance_threshold above 0.5 turns into that mixture). "recall": maximise the expected recall
  // sum_e pi_e recall_e of single experts.
  GateWeights init = GateWeights::default_table();
  at::Tensor W = init.W.clone().set_requires_grad(true), b = init.b.clone().set_requires_grad(true);
  torch::optim::Adam opt({W, b}, torch::optim::AdamOptions(o.learning_rate));
  at::Tensor Ft = F.index_select(0, ti), Rt = Rc.index_select(0, ti), Pt = Pc.index_select(0, ti);
  at::Tensor target = at::zeros_like(Rt);
  {
    auto [best_single, single_arg] = Rt.max(1);
    auto [best_pair, pair_arg] = Pt.max(1);
    auto sa = single_arg.accessor<int64_t, 1>();
    auto pa = pair_arg.accessor<int64_t, 1>();
    auto bs = best_single.accessor<float, 1>();
    auto bp = best_pair.accessor<float, 1>();
    for (int64_t row = 0; row < Rt.size(0); ++row) {
      if (bs[row] >= bp[row]) {
        target[row][sa[row]] = 1.0;
      } else {
        const auto [a, c] = pairs[static_cast<size_t>(pa[row])];
        target[row][a] = target[row][c] = 0.5;
      }
    }
  }
  const auto t1 = std::chrono::steady_clock::now();
  for (int64_t epoch = 0; epoch < o.epochs; ++epoch) {
    opt.zero_grad();
    at::Tensor z = at::matmul(Ft, W.t()) + b;
    at::Tensor loss = o.objective == CalibrationObjective::recall ? -(at::softmax(z, -1) * Rt).sum(-1).mean()
                                              : -(target * at::log_softmax(z, -1)).sum(-1).mean();
    loss = loss + o.weight_decay * W.pow(2).sum();
    loss.backward();
    opt.step();
    if (progress && ((epoch + 1) % 20 == 0 || epoch + 1 == o.epochs)) progress("epochs", epoch + 1, o.epochs);
  }
  report.train_ms = ::pikv::detail::ms_since(t1);

  GateWeights learned;
  learned.experts = builtin_expert_names();
  learned.W = W.detach().clone();
  learned.b = b.detach().clone();
  learned.num_layers = model.num_layers();
  learned.num_kv_heads = model.config().num_kv_heads;
  learned.head_dim = model.config().head_dim;
  learned.source = "calibration";

  // Report on held-out rows, per ratio.
  at::Tensor Fh = F.index_select(0, hi), Rh = Rc.index_select(0, hi), Ih = Ri.index_select(0, hi);
  at::Tensor Ph = Pc.index_select(0, hi);
  for (const auto& [a, c] : pairs) report.pairs.push_back(report.experts[a] + "+" + report.experts[c]);
  at::Tensor learned_top = learned.logits(Fh).argmax(-1), default_top = init.logits(Fh).argmax(-1);
  report.learned_choice.assign(static_cast<size_t>(E), 0);
  for (int64_t e = 0; e < E; ++e) report.learned_choice[e] = (learned_top == e).sum().item<int64_t>() / R;
  for (int64_t r = 0; r < R; ++r) {
    at::Tensor sel = (Ih == r).nonzero().squeeze(1);
    at::Tensor rr = Rh.index_select(0, sel);
    std::vector<double> per;
    for (int64_t e = 0; e < E; ++e) per.push_back(rr.select(1, e).mean().item<double>());
    report.expert_recall.push_back(per);
    report.default_recall.push_back(detail::chosen_recall(rr, default_top.index_select(0, sel)));
    report.learned_recall.push_back(detail::chosen_recall(rr, learned_top.index_select(0, sel)));
    report.oracle_recall.push_back(std::get<0>(rr.max(1)).mean().item<double>());
    at::Tensor pr = Ph.index_select(0, sel);
    std::vector<double> pair_means;
    for (int64_t k = 0; k < pr.size(1); ++k) pair_means.push_back(pr.select(1, k).mean().item<double>());
    report.pair_recall.push_back(pair_means);
    // As a top_k = 2 router with a confidence threshold routes: one expert when max pi >= threshold,
    // else its two best mixed (measured with equal weights).
    auto routed = [&](const GateWeights& g, double threshold) {
      at::Tensor pi = at::softmax(g.logits(Fh.index_select(0, sel)), -1);
      auto top = pi.topk(2, -1);
      at::Tensor p = std::get<0>(top), idx = std::get<1>(top);
      double sum = 0.0;
      for (int64_t row = 0; row < rr.size(0); ++row) {
        const int64_t a = idx[row][0].item<int64_t>(), c = idx[row][1].item<int64_t>();
        sum += p[row][0].item<double>() >= threshold ? rr[row][a].item<double>() : pr[row][pair_of[a][c]].item<double>();
      }
      return sum / static_cast<double>(rr.size(0));
    };
    report.learned_routed_recall.push_back(routed(learned, o.importance_threshold));
    report.default_routed_recall.push_back(routed(init, 0.5));
  }

  nlohmann::json cal = {{"samples", total},
                        {"tasks", o.tasks},
                        {"length", o.length},
                        {"ratios", o.ratios},
                        {"seed", o.seed},
                        {"epochs", o.epochs},
                        {"learning_rate", o.learning_rate},
                        {"train_rows", report.train_rows},
                        {"holdout_rows", report.holdout_rows},
                        {"holdout_learned_recall", report.learned_recall},
                        {"holdout_default_recall", report.default_recall},
                        {"holdout_oracle_recall", report.oracle_recall},
                        {"objective", to_string(o.objective)},
                        {"continuation_tokens", o.continuation_tokens},
                        {"queries", to_string(o.queries)},
                        {"importance_threshold", o.importance_threshold},
                        {"holdout_learned_routed_recall", report.learned_routed_recall},
                        {"holdout_expert_recall", report.expert_recall}};
  learned.calibration = cal.dump();
  report.weights = learned;
  return report;
}

}  // namespace pikv::routing
