#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/clock.h>
#include <pikv/core/budget.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/detail/logging.h>
#include <pikv/eval/evaluator.h>
#include <pikv/pipeline/pipeline.h>
#include <pikv/pipeline/shared_prefill.h>
#include <pikv/core/registry.h>
#include <pikv/io/files.h>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <cmath>
#include <limits>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <sys/stat.h>

namespace pikv::eval {
namespace detail {

PIKV_INLINE std::string ratio_text(double r) { return fmt::format("{:.4g}", r); }

PIKV_INLINE std::shared_ptr<Press> press_at(const std::string& spec, double ratio) {
  auto [name, options] = parse_press_spec(spec);
  PIKV_CHECK(!options.count("compression_ratio"), "press spec '{}': the grid sets compression_ratio itself", spec);
  bool has_ratio = false;
  for (const auto& info : press_catalog()) {
    if (info.name != name) continue;
    for (const auto& o : info.options) has_ratio |= o.name == "compression_ratio";
  }
  PIKV_CHECK(has_ratio || name == "per_layer_compression",
             "press '{}' has no compression_ratio option and cannot be placed on a ratio grid", name);
  options["compression_ratio"] = fmt::format("{}", ratio);
  auto press = make_press(name, options);
  PIKV_CHECK(!press->acts_during_decoding(), "press '{}' compresses during decoding; the grid evaluates prefill presses",
             name);
  PIKV_CHECK(!press->wants_question(),
             "press '{}' selects for the question, prefilled after the context and tokenized apart from it; the grid "
             "shares one prefill per sample, so run it through the pipeline (pikv generate, pikv::Pipeline)",
             name);
  return press;
}

PIKV_INLINE bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

PIKV_INLINE nlohmann::json header_of(const GridConfig& c) {
  nlohmann::json h = {{"pikv_eval", 1},
                      {"model", c.model_path},
                      {"corpus", c.corpus_name},
                      {"seed", c.seed},
                      {"continuation_tokens", c.continuation_tokens}};
  if (c.query_aware) h["query_aware"] = true;  // absent: query-agnostic (files written before the option)
  return h;
}

}  // namespace detail

PIKV_INLINE std::string Record::to_json() const {
  return nlohmann::json{{"task", task},       {"length", length},   {"sample", sample},
          {"press", press},     {"ratio", ratio},     {"context_tokens", context_tokens},
          {"score", score},     {"kl", kl},           {"answer", answer},
          {"compress_ms", compress_ms}, {"answer_ms", answer_ms}, {"kv_bytes", kv_bytes}}
      // An answer cut after max_new_tokens can end inside a UTF-8 sequence: replace, do not fail.
      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

PIKV_INLINE Record Record::from_json(const std::string& line) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {
    PIKV_FAIL("a result record must be one JSON object, got invalid JSON: {}", e.what());
  }
  PIKV_CHECK(j.is_object(), "a result record must be a JSON object, got {}", j.type_name());
  auto field = [&](const char* name) -> const nlohmann::json& {
    PIKV_CHECK(j.contains(name), "the result record has no field '{}'", name);
    return j[name];
  };
  auto text = [&](const char* name) {
    const nlohmann::json& v = field(name);
    PIKV_CHECK(v.is_string(), "result record field '{}' must be a string, got {}", name, v.dump());
    return v.get<std::string>();
  };
  auto integer = [&](const char* name) {
    const nlohmann::json& v = field(name);
    PIKV_CHECK(v.is_number_integer() && v.get<int64_t>() >= 0,
               "result record field '{}' must be a non-negative integer, got {}", name, v.dump());
    return v.get<int64_t>();
  };
  auto number = [&](const char* name, double lo, double hi) {
    const nlohmann::json& v = field(name);
    PIKV_CHECK(v.is_number() && std::isfinite(v.get<double>()) && v.get<double>() >= lo && v.get<double>() <= hi,
               "result record field '{}' must be a number in [{}, {}], got {}", name, lo, hi, v.dump());
    return v.get<double>();
  };
  constexpr double kAny = std::numeric_limits<double>::max();
  Record r;
  r.task = text("task");
  r.length = integer("length");
  r.sample = integer("sample");
  r.press = text("press");
  r.ratio = number("ratio", 0.0, 1.0);
  PIKV_CHECK(r.ratio < 1.0, "result record field 'ratio' must be in [0, 1), got {}", r.ratio);
  r.context_tokens = integer("context_tokens");
  r.score = number("score", 0.0, 1.0);
  r.kl = number("kl", 0.0, kAny);
  r.answer = text("answer");
  r.compress_ms = number("compress_ms", 0.0, kAny);
  r.answer_ms = number("answer_ms", 0.0, kAny);
  r.kv_bytes = integer("kv_bytes");
  return r;
}

PIKV_INLINE std::string Record::key() const {
  return fmt::format("{}|{}|{}|{}|{}", task, length, sample, press, detail::ratio_text(ratio));
}

PIKV_INLINE Evaluator::Evaluator(CausalLM& model, const Tokenizer& tokenizer, const Corpus& corpus)
    : model_(model), tokenizer_(tokenizer), corpus_(corpus) {}

PIKV_INLINE std::vector<Sample> Evaluator::samples(const GridConfig& c) const {
  std::vector<Sample> out;
  for (int64_t length : c.lengths) {
    for (const auto& task : c.tasks) {
      for (int64_t i = 0; i < c.samples; ++i) out.push_back(make_sample(task, i, length, c.seed, corpus_, tokenizer_));
    }
  }
  return out;
}

PIKV_INLINE std::vector<Record> Evaluator::read_results(const std::string& path, std::string* header,
                                                     int64_t* complete_bytes) {
  const std::string content = io::read_text_file(path, "results");
  std::vector<Record> out;
  int64_t no = 0;
  size_t pos = 0;
  while (pos < content.size()) {
    const size_t end = content.find('\n', pos);
    ++no;
    if (end == std::string::npos) {
      // A last line without its newline: a record torn by a kill mid-write. Never accepted.
      PIKV_CHECK(complete_bytes != nullptr && no > 1,
                 "results file '{}' line {} is incomplete (a run interrupted while writing it); the file was left "
                 "untouched (pikv eval resumes it, dropping that line)",
                 path, no);
      log::warn("results file '{}': dropping the incomplete last line {} (a run interrupted while writing it)",
                    path, no);
      break;
    }
    const std::string line = content.substr(pos, end - pos);
    pos = end + 1;
    if (line.empty()) continue;
    if (no == 1) {
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(line);
      } catch (const nlohmann::json::exception& e) {
        PIKV_FAIL("results file '{}' line 1 is not valid JSON (not a pikv eval file): {}; the file was left untouched",
                  path, e.what());
      }
      PIKV_CHECK(j.is_object() && j.contains("pikv_eval"),
                 "results file '{}' does not start with a pikv eval header: it is not ours; choose another --out", path);
      if (header != nullptr) *header = line;
      continue;
    }
    try {
      out.push_back(Record::from_json(line));
    } catch (const Error& e) {
      PIKV_FAIL("results file '{}' line {} is not a result record: {}; the file was left untouched", path, no, e.what());
    }
  }
  PIKV_CHECK(no >= 1, "results file '{}' is empty (no header); delete it or choose another --out", path);
  if (complete_bytes != nullptr) *complete_bytes = static_cast<int64_t>(pos);
  return out;
}

PIKV_INLINE std::vector<Record> Evaluator::run(const GridConfig& c, const std::string& results_path,
                                   const std::function<void(int64_t, int64_t, double)>& progress, GridTiming* timing) {
  c10::InferenceMode inference;
  // ---- validate everything before any work ----
  for (const auto& t : c.tasks) {
    PIKV_CHECK(std::find(task_names().begin(), task_names().end(), t) != task_names().end(), "unknown task '{}'; tasks: {}",
               t, fmt::join(task_names(), ", "));
  }
  PIKV_CHECK(!c.tasks.empty() && !c.lengths.empty() && c.samples >= 1, "the grid is empty (tasks, lengths, samples)");
  std::vector<double> ratios;
  for (double r : c.ratios) {
    check_compression_ratio(r, "grid ratio");
    if (r > 0) ratios.push_back(r);
  }
  bool need_weights = false;
  for (const auto& spec : c.presses) need_weights |= detail::press_at(spec, 0.5)->requirements().attention_weights;
  const int64_t limit = model_.position_limit();
  for (int64_t length : c.lengths) {
    // Room for the question, the answer and the continuation after the context.
    PIKV_CHECK(length >= 128 && length + 200 + c.continuation_tokens <= limit,
               "context length {} is outside [128, {}]: the model has {} positions and needs ~{} more for the question, "
               "answer and continuation",
               length, limit - 200 - c.continuation_tokens, limit, 200 + c.continuation_tokens);
    if (need_weights) {
      const double bytes = static_cast<double>(model_.num_layers()) * model_.shape().num_heads * 4.0 *
                           static_cast<double>(length) * static_cast<double>(length);
      PIKV_CHECK(bytes < 8.0 * (1 << 30),
                 "a press needs attention weights, which at {} tokens take {:.1f} GiB over all layers; drop it from the "
                 "grid or use shorter contexts",
                 length, bytes / (1 << 30));
    }
  }
  std::set<std::string> done;
  std::vector<Record> records;
  if (detail::file_exists(results_path)) {
    std::string header_line;
    int64_t complete = 0;
    records = read_results(results_path, &header_line, &complete);
    const nlohmann::json header = nlohmann::json::parse(header_line);
    const nlohmann::json want = detail::header_of(c);
    for (const auto& key : {"model", "corpus", "seed", "continuation_tokens"}) {
      PIKV_CHECK(header.contains(key) && header[key] == want[key],
                 "results file '{}' was written with {} = {}, this run has {}; use another --out (nothing was changed)",
                 results_path, key, header.contains(key) ? header[key].dump() : "nothing", want[key].dump());
    }
    PIKV_CHECK(header.value("query_aware", false) == c.query_aware,
               "results file '{}' holds a {} run, this one is {}; use another --out (nothing was changed)", results_path,
               header.value("query_aware", false) ? "query-aware" : "query-agnostic",
               c.query_aware ? "query-aware" : "query-agnostic");
    for (const auto& r : records) done.insert(r.key());
    // Drop a torn last record (everything before it was checked above).
    if (complete < static_cast<int64_t>(std::filesystem::file_size(results_path))) {
      std::error_code ec;
      std::filesystem::resize_file(results_path, static_cast<uintmax_t>(complete), ec);
      PIKV_CHECK(!ec, "cannot drop the incomplete last line of results file '{}': {}", results_path, ec.message());
    }
  } else {
    std::ofstream out(results_path);
    PIKV_CHECK(out.good(), "cannot create results file '{}': {}", results_path, std::strerror(errno));
    out << detail::header_of(c).dump() << "\n";
    out.flush();
    PIKV_CHECK(out.good(), "cannot write results file '{}' (disk full?)", results_path);
  }
  std::ofstream out(results_path, std::ios::app);
  PIKV_CHECK(out.good(), "cannot append to results file '{}'", results_path);

  Pipeline pipeline(model_, tokenizer_);
  // A cell of the grid, as its record is keyed in the file (Record::key).
  auto cell_record = [](const std::string& task, int64_t length, int64_t sample, const std::string& press,
                        double ratio) {
    Record r;
    r.task = task;
    r.length = length;
    r.sample = sample;
    r.press = press;
    r.ratio = ratio;
    return r;
  };
  // Each sample's cells: the uncompressed baseline, then every press at every ratio.
  std::vector<std::pair<std::string, double>> sample_cells = {{"none", 0.0}};
  for (const auto& spec : c.presses) {
    for (double r : ratios) sample_cells.push_back({spec, r});
  }
  const int64_t total =
      static_cast<int64_t>(c.lengths.size() * c.tasks.size() * sample_cells.size()) * c.samples;
  // Only this grid's cells count as done: the file may also hold a larger grid's (more samples, other
  // presses or ratios, as a split run merges them), which are kept but neither rerun nor counted.
  int64_t finished = 0;
  for (int64_t length : c.lengths) {
    for (const auto& task : c.tasks) {
      for (int64_t i = 0; i < c.samples; ++i) {
        for (const auto& [press, ratio] : sample_cells) {
          finished += static_cast<int64_t>(done.count(cell_record(task, length, i, press, ratio).key()));
        }
      }
    }
  }
  GridTiming t;
  t.skipped = finished;
  const auto run_start = std::chrono::steady_clock::now();
  int64_t run_cells = 0;
  const at::TensorOptions ids = at::TensorOptions().dtype(at::kLong);
  for (int64_t length : c.lengths) {
    for (const auto& task : c.tasks) {
      for (int64_t i = 0; i < c.samples; ++i) {
        auto key = [&](const std::string& press, double ratio) { return cell_record(task, length, i, press, ratio); };
        // The cells of this sample still to run; a finished sample is not even generated.
        std::vector<std::pair<std::string, double>> todo;
        for (const auto& [press, ratio] : sample_cells) {
          if (!done.count(key(press, ratio).key())) todo.push_back({press, ratio});
        }
        if (todo.empty()) continue;
        const Sample s = make_sample(task, i, length, c.seed, corpus_, tokenizer_);
        // Query-aware: the question is part of the compressed prefill; "" is asked after it.
        const std::vector<int64_t> ctx = pipeline.context_ids(c.query_aware ? s.context + s.question : s.context);
        const std::string question = c.query_aware ? std::string() : s.question;
        auto t0 = std::chrono::steady_clock::now();
        SharedPrefill shared(model_, at::tensor(ctx, ids).unsqueeze(0), need_weights);
        t.prefill_ms += ::pikv::detail::ms_since(t0);
        ++t.prefills;
        // KL reference: the continuation on the full cache.
        std::vector<int64_t> cont = tokenizer_.encode(" " + s.continuation);
        if (static_cast<int64_t>(cont.size()) > c.continuation_tokens) cont.resize(static_cast<size_t>(c.continuation_tokens));
        const at::Tensor cont_ids = at::tensor(cont, ids).unsqueeze(0);
        auto continuation_logprobs = [&](KVCache& cache) {
          const int64_t before = cache.logical_length(0);
          at::Tensor lp = at::log_softmax(model_.forward(cont_ids, cache).to(at::kDouble), -1);
          cache.truncate(before);
          return lp;  // [1, m, V]
        };
        at::Tensor full_lp;
        {
          KVCache full = shared.compress(nullptr);
          full_lp = continuation_logprobs(full);
        }
        const auto options =
            PipelineOptions().max_new_tokens(s.max_new_tokens).answer_prefix(s.answer_prefix).query_aware(c.query_aware);
        // Cells of one ratio are built together; those whose caches have the same shape are answered
        // as one batch.
        std::map<double, std::vector<std::string>> by_ratio;
        for (const auto& [spec, ratio] : todo) by_ratio[ratio].push_back(spec);
        for (const auto& [ratio, specs] : by_ratio) {
          struct Cell {
            Record r;
            std::optional<KVCache> cache;
            std::string shape;
          };
          std::vector<Cell> cells;
          for (const auto& spec : specs) {
            Cell cell;
            cell.r = key(spec, ratio);
            cell.r.context_tokens = static_cast<int64_t>(ctx.size());
            std::shared_ptr<Press> press = spec == "none" ? nullptr : detail::press_at(spec, ratio);
            CompressionStats stats;
            ContextPassesCost passes;
            const ContextPasses context = pipeline.context_passes(ctx);
            cell.cache.emplace(shared.compress(press.get(), &stats, &context, &passes));
            const KVCache& cc = *cell.cache;
            cell.r.compress_ms = stats.compress_ms() + passes.ms;  // KVzip's extra forwards included
            cell.r.kv_bytes = cc.bytes();
            // Per layer: stored and logical lengths (KeyRerotation resets the latter) and whether it was
            // compressed; layers no press reaches (Gemma 3's sliding ones) make layer 0 alone unreliable.
            for (int64_t l = 0; l < cc.num_layers(); ++l) {
              if (cc.is_ragged(l)) cell.shape = "ragged:" + spec;  // alone
              cell.shape += fmt::format(",{}/{}{}", cc.physical_length(l), cc.logical_length(l),
                                        cc.kept_positions(l).defined() ? "c" : "");
            }
            if (!c.batch_cells) cell.shape = "single:" + spec;
            cells.push_back(std::move(cell));
          }
          std::map<std::string, std::vector<size_t>> groups;
          for (size_t k = 0; k < cells.size(); ++k) groups[cells[k].shape].push_back(k);
          for (const auto& [shape, members] : groups) {
            auto g0 = std::chrono::steady_clock::now();
            std::vector<double> kl(members.size());
            std::vector<std::string> answers;
            if (members.size() == 1) {
              KVCache& cache = *cells[members[0]].cache;
              const at::Tensor lp = continuation_logprobs(cache);
              kl[0] = (full_lp.exp() * (full_lp - lp)).sum(-1).mean().item<double>();
              answers = pipeline.answer_cached(cache, {question}, options);
            } else {
              std::vector<const KVCache*> parts;
              for (size_t m : members) parts.push_back(&*cells[m].cache);
              KVCache batch = KVCache::concat_batch(parts);
              for (size_t m : members) cells[m].cache.reset();  // free the singles
              const int64_t B = static_cast<int64_t>(members.size());
              const int64_t before = batch.logical_length(0);
              at::Tensor lp = at::log_softmax(
                  model_.forward(cont_ids.expand({B, -1}).contiguous(), batch).to(at::kDouble), -1);  // [B, m, V]
              batch.truncate(before);
              const at::Tensor per_row = (full_lp.exp() * (full_lp - lp)).sum(-1).mean(-1);  // [B]
              for (int64_t b = 0; b < B; ++b) kl[static_cast<size_t>(b)] = per_row[b].item<double>();
              answers = pipeline.answer_cached_batch(batch, question, options);
            }
            const double each_ms = ::pikv::detail::ms_since(g0) / static_cast<double>(members.size());
            for (size_t k = 0; k < members.size(); ++k) {
              Record& r = cells[members[k]].r;
              r.kl = kl[k];
              r.answer = answers[k];
              r.answer_ms = each_ms;
              r.score = score_answer(s, r.answer);
              out << r.to_json() << "\n";
              out.flush();
              // Earlier records stay intact: the file is only ever appended to.
              PIKV_CHECK(out.good(), "cannot append to results file '{}' (disk full?); the {} records before this "
                         "one are kept, run again to resume", results_path, records.size());
              records.push_back(r);
              t.cells_ms += each_ms + r.compress_ms;
              ++t.cells;
              ++finished;
              ++run_cells;
              if (progress) {
                const double secs = ::pikv::detail::ms_since(run_start) / 1000.0;
                progress(finished, total, secs / static_cast<double>(run_cells) * static_cast<double>(total - finished));
              }
            }
          }
        }
      }
    }
  }
  if (timing != nullptr) *timing = t;
  return records;
}

PIKV_INLINE Interval bootstrap_mean(const std::vector<double>& values, int64_t resamples, uint64_t seed) {
  PIKV_CHECK(resamples >= 1, "bootstrap_mean: resamples must be >= 1, got {}", resamples);
  Interval out;
  out.n = static_cast<int64_t>(values.size());
  if (values.empty()) return out;
  double sum = 0.0;
  for (double v : values) sum += v;
  out.mean = sum / static_cast<double>(values.size());
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<size_t> pick(0, values.size() - 1);
  std::vector<double> means(static_cast<size_t>(resamples));
  for (auto& m : means) {
    double s = 0.0;
    for (size_t i = 0; i < values.size(); ++i) s += values[pick(rng)];
    m = s / static_cast<double>(values.size());
  }
  std::sort(means.begin(), means.end());
  const auto at = [&](double q) {
    const auto i = static_cast<size_t>(std::clamp<double>(std::floor(q * static_cast<double>(resamples)), 0.0,
                                                          static_cast<double>(resamples - 1)));
    return means[i];
  };
  out.low = at(0.025);
  out.high = at(0.975);
  return out;
}

namespace detail {

// "12.5 [8.0, 17.0]" (in points: values x 100).
inline std::string interval_text(const Interval& i) {
  return fmt::format("{:.1f} [{:.1f}, {:.1f}]", 100 * i.mean, 100 * i.low, 100 * i.high);
}

inline std::string verdict(const Interval& diff) {
  return diff.high < 0 ? "worse" : diff.low > 0 ? "better" : "not decided";
}

// Per context length: each press and ratio against the uncompressed cache, paired by (task, sample),
// and the best press of each ratio against the runner-up.
inline std::string paired_tables(const std::vector<Record>& records) {
  using Unit = std::pair<std::string, int64_t>;  // (task, sample)
  std::map<int64_t, std::map<Unit, double>> full;  // length -> unit -> uncompressed score
  std::map<int64_t, std::map<std::pair<std::string, double>, std::map<Unit, double>>> cells;
  // Length 0 pools every length (a unit is then a task and sample at one length): the headline table.
  for (const auto& r : records) {
    const Unit unit{r.task, r.sample}, pooled{fmt::format("{}@{}", r.task, r.length), r.sample};
    if (r.ratio == 0.0) {
      full[r.length][unit] = r.score;
      full[0][pooled] = r.score;
    } else {
      cells[r.length][{r.press, r.ratio}][unit] = r.score;
      cells[0][{r.press, r.ratio}][pooled] = r.score;
    }
  }
  if (full.size() <= 2) {  // one length: the pooled table would repeat it
    full.erase(0);
    cells.erase(0);
  }
  std::string out;
  for (const auto& [length, by_cell] : cells) {
    const auto base_it = full.find(length);
    if (base_it == full.end()) continue;
    const auto& base = base_it->second;
    Interval base_all;
    {
      std::vector<double> v;
      for (const auto& [u, s] : base) v.push_back(s);
      base_all = bootstrap_mean(v);
    }
    out += fmt::format(
        "\n### Against the uncompressed cache, {} (paired by {})\n\n"
        "Uncompressed: {} % over {} samples. Score and difference in points with 95 % bootstrap intervals "
        "(2000 resamples of the samples); 'worse' / 'better' where the difference's interval excludes 0.\n\n"
        "| press | ratio | score % [95 % CI] | difference [95 % CI] | retained | n | verdict |\n"
        "|---|---|---|---|---|---|---|\n",
        length == 0 ? std::string("all context lengths") : fmt::format("context length {} tokens", length),
        length == 0 ? "length, task and sample" : "task and sample", interval_text(base_all), base_all.n);
    // ratio -> (mean, press) for the best-vs-runner-up line.
    std::map<double, std::vector<std::pair<double, std::string>>> ranking;
    for (const auto& [cell, scores] : by_cell) {
      std::vector<double> own, diff;
      double base_sum = 0.0;  // the uncompressed scores of the same samples (for "retained")
      for (const auto& [u, s] : scores) {
        const auto b = base.find(u);
        if (b == base.end()) continue;
        own.push_back(s);
        diff.push_back(s - b->second);
        base_sum += b->second;
      }
      if (own.empty()) continue;
      const Interval score = bootstrap_mean(own), d = bootstrap_mean(diff);
      const double base_mean = base_sum / static_cast<double>(own.size());
      out += fmt::format("| {} | {} | {} | {:+.1f} [{:+.1f}, {:+.1f}] | {} | {} | {} |\n", cell.first,
                         ratio_text(cell.second), interval_text(score), 100 * d.mean, 100 * d.low, 100 * d.high,
                         base_mean > 0 ? fmt::format("{:.0f} %", 100 * score.mean / base_mean) : std::string("-"),
                         score.n, verdict(d));
      ranking[cell.second].push_back({score.mean, cell.first});
    }
    for (auto& [ratio, list] : ranking) {
      if (list.size() < 2) continue;
      std::sort(list.begin(), list.end(), [](const auto& a, const auto& b) {
        return a.first != b.first ? a.first > b.first : a.second < b.second;
      });
      const auto& best = by_cell.at({list[0].second, ratio});
      const auto& next = by_cell.at({list[1].second, ratio});
      std::vector<double> diff;
      for (const auto& [u, s] : best) {
        const auto o = next.find(u);
        if (o != next.end()) diff.push_back(s - o->second);
      }
      const Interval d = bootstrap_mean(diff);
      out += fmt::format("\nRatio {}: best {} vs runner-up {}: {:+.1f} [{:+.1f}, {:+.1f}] points over {} samples ({}).\n",
                         ratio_text(ratio), list[0].second, list[1].second, 100 * d.mean, 100 * d.low, 100 * d.high,
                         d.n, d.low > 0 ? "decided" : "not decided");
    }
  }
  return out;
}

}  // namespace detail

PIKV_INLINE std::string summary_markdown(const std::vector<Record>& records) {
  // (length) -> (press) -> (ratio) -> {sum score, sum kl, n}
  struct Acc {
    double score = 0, kl = 0, kv = 0;
    int64_t n = 0;
  };
  std::map<int64_t, std::map<std::string, std::map<double, Acc>>> by_length;
  std::map<std::string, std::map<std::string, std::map<double, Acc>>> by_task;
  std::set<double> ratios;
  for (const auto& r : records) {
    for (auto* acc : {&by_length[r.length][r.press][r.ratio], &by_task[r.task][r.press][r.ratio]}) {
      acc->score += r.score;
      acc->kl += r.kl;
      acc->kv += static_cast<double>(r.kv_bytes);
      acc->n += 1;
    }
    ratios.insert(r.ratio);
  }
  auto table = [&](const std::map<std::string, std::map<double, Acc>>& rows) {
    std::string s = "| press |";
    for (double r : ratios) s += fmt::format(" {} |", detail::ratio_text(r));
    s += "\n|---|";
    for (size_t i = 0; i < ratios.size(); ++i) s += "---|";
    s += "\n";
    // The baseline first, then presses in name order.
    std::vector<std::string> names;
    if (rows.count("none")) names.push_back("none");
    for (const auto& [name, _] : rows) {
      if (name != "none") names.push_back(name);
    }
    for (const auto& name : names) {
      s += fmt::format("| {} |", name);
      for (double r : ratios) {
        // Ratio 0 is the uncompressed baseline, shared by every press.
        const auto& cells = (r == 0.0 && rows.count("none")) ? rows.at("none") : rows.at(name);
        const auto it = cells.find(r);
        if (it == cells.end()) {
          s += " |";
          continue;
        }
        const Acc& a = it->second;
        s += fmt::format(" {:.1f} ({:.3f}) |", 100 * a.score / a.n, a.kl / a.n);
      }
      s += "\n";
    }
    return s;
  };
  std::string out =
      "Mean task score in % (mean KL divergence of the continuation's next-token distributions, nats) per press and "
      "compression ratio. Ratio 0 is the uncompressed cache.\n";
  for (const auto& [length, rows] : by_length) {
    out += fmt::format("\n### Context length {} tokens (all tasks)\n\n", length);
    out += table(rows);
  }
  for (const auto& [task, rows] : by_task) {
    out += fmt::format("\n### Task {} (all lengths)\n\n", task);
    out += table(rows);
  }
  // What each cell's cache held after compression (before the question): the memory a press frees,
  // which differs from the ratio where presses do not reach every layer (Gemma 3's sliding layers).
  bool any_kv = false;
  for (const auto& r : records) any_kv |= r.kv_bytes > 0;
  if (any_kv) {
    out += "\n### KV cache held after compression\n\nMean MiB per sample (% of the uncompressed cache of the same "
           "length).\n\n| length | press |";
    for (double r : ratios) {
      if (r != 0.0) out += fmt::format(" {} |", detail::ratio_text(r));
    }
    out += "\n|---|---|";
    for (double r : ratios) {
      if (r != 0.0) out += "---|";
    }
    out += "\n";
    for (const auto& [length, rows] : by_length) {
      const auto none = rows.find("none");
      const double full = none != rows.end() && none->second.count(0.0)
                              ? none->second.at(0.0).kv / static_cast<double>(none->second.at(0.0).n)
                              : 0.0;
      out += fmt::format("| {} | none (ratio 0) | {:.2f} MiB |\n", length, full / (1 << 20));
      for (const auto& [name, cells] : rows) {
        if (name == "none") continue;
        out += fmt::format("| {} | {} |", length, name);
        for (double r : ratios) {
          if (r == 0.0) continue;
          const auto it = cells.find(r);
          if (it == cells.end()) {
            out += " |";
            continue;
          }
          const double kv = it->second.kv / static_cast<double>(it->second.n);
          out += full > 0 ? fmt::format(" {:.2f} ({:.0f} %) |", kv / (1 << 20), 100 * kv / full)
                          : fmt::format(" {:.2f} |", kv / (1 << 20));
        }
        out += "\n";
      }
    }
  }
  out += detail::paired_tables(records);
  return out;
}

PIKV_INLINE std::string records_csv(const std::vector<Record>& records) {
  auto quote = [](const std::string& s) {
    std::string q = "\"";
    for (char ch : s) {
      if (ch == '"') q += '"';
      q += ch;
    }
    return q + "\"";
  };
  std::string out = "task,length,sample,press,ratio,context_tokens,score,kl,kv_bytes,compress_ms,answer_ms,answer\n";
  for (const auto& r : records) {
    out += fmt::format("{},{},{},{},{},{},{:.4f},{:.6f},{},{:.2f},{:.1f},{}\n", r.task, r.length, r.sample, quote(r.press),
                       detail::ratio_text(r.ratio), r.context_tokens, r.score, r.kl, r.kv_bytes, r.compress_ms, r.answer_ms,
                       quote(r.answer));
  }
  return out;
}

}  // namespace pikv::eval
