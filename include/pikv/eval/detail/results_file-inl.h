#pragma once
// An evaluation grid's results file: a Record as one JSON line, reading a file, and ResultsFile, the
// file one run resumes (or creates) and appends its records to.

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/detail/logging.h>
#include <pikv/eval/evaluator.h>
#include <pikv/io/files.h>

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <string>
#include <vector>
#include <sys/stat.h>

namespace pikv::eval {
namespace detail {

PIKV_INLINE std::string ratio_text(double r) { return fmt::format("{:.4g}", r); }

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

namespace detail {

// The results file of one run: the records it holds (those read when resuming, then those appended)
// and the keys of the cells they are for.
class ResultsFile {
 public:
  // Resumes `path` (its header must be the one `config` writes; a torn last record is dropped) or
  // creates it with that header; then opens it for appending. Throws before any change to a file that
  // is not this configuration's or has a corrupted line.
  ResultsFile(const std::string& path, const GridConfig& config);
  // Appends one record, flushed.
  void append(const Record& r);
  const std::set<std::string>& done() const { return done_; }  // Record::key of every record read
  std::vector<Record> take_records() { return std::move(records_); }

 private:
  std::string path_;
  std::vector<Record> records_;
  std::set<std::string> done_;
  std::ofstream out_;
};

PIKV_INLINE ResultsFile::ResultsFile(const std::string& path, const GridConfig& c) : path_(path) {
  if (file_exists(path)) {
    std::string header_line;
    int64_t complete = 0;
    records_ = Evaluator::read_results(path, &header_line, &complete);
    const nlohmann::json header = nlohmann::json::parse(header_line);
    const nlohmann::json want = header_of(c);
    for (const auto& key : {"model", "corpus", "seed", "continuation_tokens"}) {
      PIKV_CHECK(header.contains(key) && header[key] == want[key],
                 "results file '{}' was written with {} = {}, this run has {}; use another --out (nothing was changed)",
                 path, key, header.contains(key) ? header[key].dump() : "nothing", want[key].dump());
    }
    PIKV_CHECK(header.value("query_aware", false) == c.query_aware,
               "results file '{}' holds a {} run, this one is {}; use another --out (nothing was changed)", path,
               header.value("query_aware", false) ? "query-aware" : "query-agnostic",
               c.query_aware ? "query-aware" : "query-agnostic");
    for (const auto& r : records_) done_.insert(r.key());
    // Drop a torn last record (everything before it was checked above).
    if (complete < static_cast<int64_t>(std::filesystem::file_size(path))) {
      std::error_code ec;
      std::filesystem::resize_file(path, static_cast<uintmax_t>(complete), ec);
      PIKV_CHECK(!ec, "cannot drop the incomplete last line of results file '{}': {}", path, ec.message());
    }
  } else {
    std::ofstream out(path);
    PIKV_CHECK(out.good(), "cannot create results file '{}': {}", path, std::strerror(errno));
    out << header_of(c).dump() << "\n";
    out.flush();
    PIKV_CHECK(out.good(), "cannot write results file '{}' (disk full?)", path);
  }
  out_.open(path, std::ios::app);
  PIKV_CHECK(out_.good(), "cannot append to results file '{}'", path);
}

PIKV_INLINE void ResultsFile::append(const Record& r) {
  out_ << r.to_json() << "\n";
  out_.flush();
  // Earlier records stay intact: the file is only ever appended to.
  PIKV_CHECK(out_.good(), "cannot append to results file '{}' (disk full?); the {} records before this "
             "one are kept, run again to resume", path_, records_.size());
  records_.push_back(r);
}

}  // namespace detail
}  // namespace pikv::eval
