// `pikv needles`: a table of which presses find a needle in 20 generated haystacks. Each case is
// prefilled once (SharedPrefill) and every press is replayed on that prefill.
#include "cli.h"

#include "args.h"

#include <ATen/ATen.h>

#include <unistd.h>

#include <chrono>
#include <fstream>
#include <random>
#include <sstream>

namespace pikv::cli {

namespace {

// The presses kvpress's leaderboard ranks well first, then the rest of the catalogue.
const std::vector<std::string> kDefaultPresses = {
    "adakv:press=expected_attention,inner.epsilon=0.01",
    "snapkv",
    "keydiff",
    "pyramidkv",
    "expected_attention",
    "criticaladakv:press=expected_attention,inner.use_vnorm=false",
    "tova",
    "observed_attention",
    "knorm",
    "streaming_llm",
    "lagkv",
    "chunkkv:press=snapkv",
    "key_rerotation:press=keydiff",
    "random:seed=0",
    "kvzip",
    "kvcompose",
    "cap",
    "merging:press=snapkv",
    "non_causal_attention",
    "leverage:seed=0",
    "cur",
    "compactor:seed=0",
};

struct NeedleCase {
  std::string context, question, prefix, code;
  double depth;
};

std::vector<NeedleCase> make_cases(const std::string& haystack, const Tokenizer& tok, int64_t tokens, int64_t count,
                                   uint64_t seed) {
  static const char* kSubjects[] = {"vault",       "locker",     "server room", "safe",       "archive",
                                    "garage",      "laboratory", "greenhouse",  "observatory", "boathouse",
                                    "warehouse",   "library",    "chapel",      "workshop",   "cellar",
                                    "lighthouse",  "studio",     "hangar",      "bunker",     "clinic"};
  const std::vector<int64_t> ids = tok.encode(haystack);
  std::mt19937_64 rng(seed);
  std::vector<NeedleCase> cases;
  for (int64_t i = 0; i < count; ++i) {
    const int64_t room = static_cast<int64_t>(ids.size()) - tokens;
    check(room >= 0, "the haystack has {} tokens, fewer than --tokens {}", ids.size(), tokens);
    const int64_t offset = count > 1 ? room * i / (count - 1) : 0;
    std::vector<int64_t> window(ids.begin() + offset, ids.begin() + offset + tokens);
    std::string text = decode_whole_chars(tok, window);
    // Start on a sentence.
    const size_t first = text.find(". ");
    if (first != std::string::npos && first < text.size() / 10) text = text.substr(first + 2);
    NeedleCase c;
    c.depth = (static_cast<double>(i) + 0.5) / static_cast<double>(count);
    c.code = std::to_string(1000 + rng() % 9000);
    const std::string subject = kSubjects[i % 20];
    const std::string needle = fmt::format(" The secret code for the {} is {}. ", subject, c.code);
    c.context = insert_at_depth(text, needle, c.depth);
    c.question = fmt::format("What is the secret code for the {}?", subject);
    c.prefix = fmt::format("The secret code for the {} is", subject);
    cases.push_back(std::move(c));
  }
  return cases;
}

struct NeedlesArgs {
  ModelArgs model;
  int64_t tokens = 1000, cases = 20;
  uint64_t seed = 0;
  double ratio = 0.5;
  std::vector<std::string> presses = kDefaultPresses;
  std::string out, haystack = default_haystack();
};

int run_needles(const NeedlesArgs& a) {
  const ModelArgs& m = a.model;
  const int64_t tokens = a.tokens, count = a.cases;
  const double ratio = a.ratio;
  const std::vector<std::string>& specs = a.presses;
  const std::string &out_path = a.out, &haystack_path = a.haystack;
  // Build every press first: a bad name or option fails before the model loads.
  std::vector<std::shared_ptr<Press>> presses;
  bool need_weights = false;
  for (const auto& spec : specs) {
    auto [name, options] = parse_press_spec(spec);
    presses.push_back(build_press(name, options, ratio, true));
    need_weights |= presses.back()->requirements().attention_weights;
  }
  const std::string haystack = read_file(haystack_path, "haystack text (scripts/setup.sh makes models/haystack.txt)");
  auto model = load_model(m);
  auto tokenizer = load_tokenizer(m);
  Pipeline pipeline(*model, *tokenizer);
  const auto cases = make_cases(haystack, *tokenizer, tokens, count, a.seed);

  std::vector<std::string> labels = {"none (full cache)"};
  for (size_t i = 0; i < presses.size(); ++i) labels.push_back(specs[i]);
  std::vector<std::vector<bool>> found(labels.size(), std::vector<bool>(cases.size(), false));
  const auto t0 = std::chrono::steady_clock::now();
  for (size_t ci = 0; ci < cases.size(); ++ci) {
    const NeedleCase& c = cases[ci];
    const auto ids = pipeline.context_ids(c.context);
    SharedPrefill prefill(*model, at::tensor(ids, at::kLong).unsqueeze(0), need_weights);
    const auto options = PipelineOptions().max_new_tokens(8).answer_prefix(c.prefix);
    for (size_t pi = 0; pi < labels.size(); ++pi) {
      Press* press = pi == 0 ? nullptr : presses[pi - 1].get();
      const ContextPasses passes = pipeline.context_passes(ids);  // KVzip re-reads the context
      KVCache cache = prefill.compress(press, nullptr, &passes);
      const std::string answer = pipeline.answer_cached(cache, {c.question}, options).front();
      found[pi][ci] = answer.find(c.code) != std::string::npos;
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double eta = secs / static_cast<double>(ci + 1) * static_cast<double>(cases.size() - ci - 1);
    fmt::print(stderr, "{}case {}/{} ({} tokens, needle at {:.0f}%) done, {:.0f}s elapsed, ETA {:.0f}s{}",
               ::isatty(2) ? "\r" : "", ci + 1, cases.size(), ids.size(), 100 * c.depth, secs, eta,
               ::isatty(2) ? "   " : "\n");
  }
  if (::isatty(2)) fmt::print(stderr, "\n");

  std::string table = fmt::format(
      "Needle in a haystack, {} cases of ~{} tokens ({}), compression ratio {}, model {}.\n"
      "Each column is one case (needle depth in %); y = the answer contains the code.\n\n| press | found |",
      cases.size(), tokens, haystack_path.substr(haystack_path.find_last_of('/') + 1), ratio,
      m.model.substr(m.model.find_last_of('/') + 1));
  for (const auto& c : cases) table += fmt::format(" {:.0f} |", 100 * c.depth);
  table += "\n|---|---|";
  for (size_t i = 0; i < cases.size(); ++i) table += "---|";
  table += "\n";
  for (size_t pi = 0; pi < labels.size(); ++pi) {
    const auto hits = std::count(found[pi].begin(), found[pi].end(), true);
    table += fmt::format("| {} | {}/{} |", labels[pi], hits, cases.size());
    for (bool f : found[pi]) table += f ? " y |" : " . |";
    table += "\n";
  }
  fmt::print("{}", table);
  if (!out_path.empty()) {
    write_text_file(out_path, table);
    fmt::print(stderr, "wrote {}\n", out_path);
  }
  return 0;
}

}  // namespace

args::Action declare_needles(args::Flags& f) {
  auto a = std::make_shared<NeedlesArgs>();
  f = {
      args::integer("--cases", "N", &a->cases, 1, args::kMaxCount).with_note("{default}").as_brief(),
      args::integer("--tokens", "N", &a->tokens, 64, args::kMaxTokens).with_note("{default}").as_brief(),
      args::ratio("--ratio", "R", &a->ratio).with_note("{default}").as_brief(),
      args::integer("--seed", "S", &a->seed, 0, args::kMaxSeed).with_note("{default}").as_brief(),
      args::path("--haystack", "FILE", &a->haystack).as_brief(),
      args::path("--out", "FILE.md", &a->out).as_brief(),
      args::repeated("--press", "SPEC", &a->presses,
                     fmt::format("repeatable; SPEC is NAME or NAME:KEY=VALUE,KEY=VALUE, e.g.\n"
                                 "adakv:press=expected_attention,inner.epsilon=0.01 (default: {} presses)",
                                 kDefaultPresses.size())),
  };
  add_model_flags(f, a->model);
  return [a] { return run_needles(*a); };
}

}  // namespace pikv::cli
