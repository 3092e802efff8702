#pragma once
// An evaluation grid's report: bootstrap intervals, the summary markdown (mean scores, KV held, paired
// comparisons against the uncompressed cache) and the CSV of records.

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/eval/detail/results_file-inl.h>
#include <pikv/eval/evaluator.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace pikv::eval {

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
