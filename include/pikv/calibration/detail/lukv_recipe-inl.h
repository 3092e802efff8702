#pragma once
// The lukv recipe: LU-KV's budget curve (lukv_budget_curve, collect_lukv_curve) from how a scorer's
// ranking matches the attention greedy answers to questions about the calibration text pay.

#include <ATen/ATen.h>
#include <pikv/calibration/detail/recipes-inl.h>
#include <pikv/calibration/learned_scorers.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/hookable_model.h>
#include <pikv/core/kv_cache.h>
#include <pikv/core/registry.h>
#include <pikv/core/tensor_checks.h>
#include <pikv/eval/tasks.h>
#include <pikv/io/npy.h>

#include <algorithm>
#include <filesystem>
#include <numeric>
#include <optional>
#include <queue>
#include <tuple>

namespace pikv {

namespace detail {

// The authors' convex-hull smoothing of one head's ranked costs (best rank first): from the worst rank
// up, the cumulative cost's lower convex hull; each rank costs its hull segment's slope.
PIKV_INLINE std::vector<double> hull_priorities(const std::vector<double>& ranked) {
  const size_t m = ranked.size();
  std::vector<double> cum(m + 1, 0.0);
  for (size_t j = 0; j < m; ++j) cum[j + 1] = cum[j] + ranked[m - 1 - j];
  std::vector<size_t> hull;
  for (size_t p = 0; p <= m; ++p) {
    while (hull.size() >= 2) {
      const size_t a = hull[hull.size() - 2], o = hull.back();
      const double cross = (static_cast<double>(o) - static_cast<double>(a)) * (cum[p] - cum[a]) -
                           (cum[o] - cum[a]) * (static_cast<double>(p) - static_cast<double>(a));
      if (cross > 0) break;
      hull.pop_back();
    }
    hull.push_back(p);
  }
  std::vector<double> rev(m);
  for (size_t s = 0; s + 1 < hull.size(); ++s) {
    const double slope = (cum[hull[s + 1]] - cum[hull[s]]) / static_cast<double>(hull[s + 1] - hull[s]);
    for (size_t j = hull[s]; j < hull[s + 1]; ++j) rev[j] = slope;
  }
  std::vector<double> out(m);
  for (size_t k = 0; k < m; ++k) out[k] = rev[m - 1 - k];
  return out;
}

}  // namespace detail

PIKV_INLINE at::Tensor lukv_budget_curve(const at::Tensor& pred_in, const at::Tensor& gt_in,
                                         const LUKVCurveOptions& o) {
  check_rank(pred_in, 3, "LU-KV scorer table", "[L, Hkv, n]");
  PIKV_CHECK(pred_in.sizes() == gt_in.sizes(), "LU-KV: the scorer table {} and the oracle {} differ in shape",
             describe_tensor(pred_in), describe_tensor(gt_in));
  PIKV_CHECK(o.sink >= 0 && o.window >= 0, "LU-KV: sink and window must be >= 0");
  const at::Tensor pred = pred_in.to(at::kCPU, at::kDouble).contiguous(),
                   gt = gt_in.to(at::kCPU, at::kDouble).contiguous();
  const int64_t L = pred.size(0), H = pred.size(1), n = pred.size(2);
  const int64_t mid = std::max<int64_t>(0, n - o.sink - o.window);
  // p[l][h][k]: the cost of evicting the head's k-th ranked middle token.
  std::vector<std::vector<std::vector<double>>> p(static_cast<size_t>(L),
                                                  std::vector<std::vector<double>>(static_cast<size_t>(H)));
  const double* pp = pred.data_ptr<double>();
  const double* gp = gt.data_ptr<double>();
  for (int64_t l = 0; l < L; ++l) {
    for (int64_t h = 0; h < H; ++h) {
      const double* pr = pp + (l * H + h) * n + o.sink;
      const double* gr = gp + (l * H + h) * n + o.sink;
      std::vector<int64_t> order(static_cast<size_t>(mid));
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return pr[a] > pr[b]; });
      std::vector<double> ranked(static_cast<size_t>(mid));
      for (int64_t k = 0; k < mid; ++k) ranked[static_cast<size_t>(k)] = gr[order[static_cast<size_t>(k)]];
      p[l][h] = detail::hull_priorities(ranked);
    }
  }
  at::Tensor out = at::zeros({99, L, H}, at::kDouble);
  auto acc = out.accessor<double, 3>();
  const int64_t floor_keep =
      std::max<int64_t>(static_cast<int64_t>(std::nearbyint(0.01 * static_cast<double>(n))), o.sink + o.window);
  // One greedy pass over a group of layers (all, or one with per_layer): evict the cheapest next token
  // of any head; ties go to the lower layer, head, rank (the authors' heap order).
  auto allocate = [&](int64_t l0, int64_t l1) {
    using Entry = std::tuple<double, int64_t, int64_t, int64_t>;
    std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap;
    std::vector<int64_t> keep(static_cast<size_t>((l1 - l0) * H), n);
    for (int64_t l = l0; l < l1; ++l) {
      for (int64_t h = 0; h < H; ++h) {
        if (mid > 0) heap.emplace(p[l][h][static_cast<size_t>(mid - 1)], l, h, mid - 1);
      }
    }
    int64_t discarded = 0;
    for (int64_t i = 0; i < 99; ++i) {
      const auto target = static_cast<int64_t>(
          std::nearbyint(static_cast<double>(i + 1) / 100.0 * static_cast<double>((l1 - l0) * H * n)));
      while (discarded < target && !heap.empty()) {
        const auto [v, l, h, idx] = heap.top();
        heap.pop();
        int64_t& k = keep[static_cast<size_t>((l - l0) * H + h)];
        if (k > floor_keep) {
          --k;
          ++discarded;
          if (idx > 0) heap.emplace(p[l][h][static_cast<size_t>(idx - 1)], l, h, idx - 1);
        }
      }
      for (int64_t l = l0; l < l1; ++l) {
        for (int64_t h = 0; h < H; ++h) {
          acc[i][l][h] =
              1.0 - static_cast<double>(keep[static_cast<size_t>((l - l0) * H + h)]) / static_cast<double>(n);
        }
      }
    }
  };
  if (o.per_layer) {
    for (int64_t l = 0; l < L; ++l) allocate(l, l + 1);
  } else {
    allocate(0, L);
  }
  return out;
}

namespace detail {

// Records the scorer's table at the prefill and, while `counting`, the oracle: each later forward's
// attention (eager) on the context, times the normalised ||W_o v||, max over the query group and steps.
class LUKVProbe : public Press {
 public:
  explicit LUKVProbe(ScorerPress& scorer) : scorer_(scorer) {}
  std::string name() const override { return "lukv calibration probe"; }
  double compression_ratio() const override { return 0.0; }
  PressRequirements requirements() const override {
    PressRequirements r = scorer_.requirements();
    r.layer_view = true;
    return r;
  }
  bool should_compress(const AttentionContext& ctx) const override { return ctx.is_prefill || counting; }
  void on_attach(const HookableModel& model) override { scorer_.on_attach(model); }
  void on_prefill_begin() override { scorer_.on_prefill_begin(); }
  void on_prefill_end() override { scorer_.on_prefill_end(); }
  CompressedKV compress(const AttentionContext& ctx) override {
    const auto l = static_cast<size_t>(ctx.layer);
    if (pred.size() <= l) pred.resize(l + 1), gt.resize(l + 1), weight.resize(l + 1);
    if (ctx.is_prefill) {
      check_context(ctx);
      const double ratio = scorer_.compression_ratio() > 0 ? scorer_.compression_ratio() : 0.5;
      pred[l] = scorer_.score(ctx, ratio)[0].to(at::kCPU, at::kDouble);  // [Hkv, n]
      // ||W_o^h v_i|| per query head h (its KV head's values), normalised over all heads and tokens.
      const int64_t Hkv = ctx.kv_heads(), H = ctx.layer_view->num_heads(), G = H / Hkv, d = ctx.values.size(3);
      const at::Tensor wo = ctx.layer_view->output_weight().t().reshape({Hkv, G, d, -1});  // [Hkv, G, d, Dm]
      std::vector<at::Tensor> norms;
      for (int64_t h = 0; h < Hkv; ++h) {                            // one KV head at a time: [G, n, Dm] stays small
        const at::Tensor v = ctx.values[0][h].to(wo.scalar_type());  // [n, d]
        norms.push_back(at::linalg_vector_norm(at::einsum("gdm,nd->gnm", {wo[h], v}), 2, at::IntArrayRef{-1}));
      }
      at::Tensor nrm = at::stack(norms, 0).to(at::kCPU, at::kDouble);  // [Hkv, G, n]
      weight[l] = nrm / nrm.sum().clamp_min(1e-30);
      gt[l] = at::zeros_like(pred[l]);
    } else {
      PIKV_CHECK(ctx.attention_weights, "lukv calibration: the decode forward must materialise attention weights");
      const at::Tensor& w = *ctx.attention_weights;  // [1, H, q, n_total]
      const int64_t n = pred[l].size(1), Hkv = pred[l].size(0);
      const at::Tensor a = w[0].narrow(2, 0, n).to(at::kCPU, at::kDouble);                           // [H, q, n]
      const at::Tensor u = (a.view({Hkv, -1, a.size(1), n}) * weight[l].unsqueeze(2)).amax({1, 2});  // [Hkv, n]
      gt[l] = at::maximum(gt[l], u);
    }
    CompressedKV skip;
    skip.skipped = true;
    return skip;
  }
  bool counting = false;
  std::vector<at::Tensor> pred, gt, weight;

 private:
  ScorerPress& scorer_;
};

}  // namespace detail

PIKV_INLINE at::Tensor collect_lukv_curve(CausalLM& model, const Pipeline& pipeline, const Tokenizer& tokenizer,
                                          ScorerPress& scorer, const std::vector<eval::Sample>& samples,
                                          const LUKVCurveOptions& o, const CalibrationStep& progress) {
  PIKV_CHECK(!samples.empty(), "LU-KV calibration needs at least one sample (a context and a question)");
  PIKV_CHECK(o.new_tokens >= 2,
             "LU-KV calibration: new_tokens must be >= 2 (the first comes from the question's "
             "forward, the rest are the decode steps measured), got {}",
             o.new_tokens);
  const auto ids = at::TensorOptions().dtype(at::kLong).device(model.options().device());
  const std::optional<int64_t> eos = tokenizer.eos_id();
  at::Tensor sum;
  for (size_t i = 0; i < samples.size(); ++i) {
    const std::vector<int64_t> ctx = pipeline.context_ids(samples[i].context);
    const std::vector<int64_t> question = pipeline.question_ids(samples[i].question, samples[i].answer_prefix);
    PIKV_CHECK(static_cast<int64_t>(ctx.size()) > o.sink + o.window,
               "LU-KV calibration: sample {} has {} context tokens, not more than sink + window", i, ctx.size());
    detail::LUKVProbe probe(scorer);
    {
      PressGuard guard(model, probe);
      KVCache cache = model.make_cache(1);
      (void)model.forward(at::tensor(ctx, ids).unsqueeze(0), cache, ForwardOptions().return_hidden(true));
      at::Tensor logits = model.forward(at::tensor(question, ids).unsqueeze(0), cache);  // not measured
      probe.counting = true;
      for (int64_t t = 1; t < o.new_tokens; ++t) {
        const int64_t next = logits[0][-1].argmax().item<int64_t>();
        if (eos && next == *eos) break;
        logits = model.forward(at::tensor({next}, ids).unsqueeze(0), cache, ForwardOptions().eager_attention(true));
      }
    }
    PIKV_CHECK(static_cast<int64_t>(probe.pred.size()) == model.num_layers() &&
                   std::all_of(probe.pred.begin(), probe.pred.end(), [](const at::Tensor& t) { return t.defined(); }),
               "LU-KV calibration: not every layer was scored at the prefill");
    const at::Tensor curve = lukv_budget_curve(at::stack(probe.pred, 0), at::stack(probe.gt, 0), o);
    sum = sum.defined() ? sum + curve : curve;
    if (progress) progress(static_cast<int64_t>(i) + 1, static_cast<int64_t>(samples.size()));
  }
  return sum / static_cast<double>(samples.size());
}

namespace detail {

// The lukv press's default scorer: its curve needs no press= when loaded.
inline constexpr const char* kLUKVDefaultScorer = "expected_attention:epsilon=0.02";

inline CalibrationResult run_lukv_recipe(const CalibrationInputs& in) {
  // Questions about calibration text (the evaluation's task generators over the calibration corpus,
  // never the evaluation haystack), answered greedily with the full cache.
  const std::string& spec = recipe_text(in, "scorer");
  const auto [scorer_name, scorer_options] = parse_press_spec(spec);
  auto scorer = std::dynamic_pointer_cast<ScorerPress>(make_press(scorer_name, scorer_options));
  PIKV_CHECK(scorer != nullptr, "--scorer '{}' is not a scorer press (one that scores every token)", spec);
  PIKV_CHECK(in.sample_seq_len >= 128,
             "lukv calibration builds task contexts of --sample-seq-len tokens: at least 128, got {}",
             in.sample_seq_len);
  LUKVCurveOptions o;
  o.new_tokens = recipe_integer(in, "new_tokens");
  o.sink = recipe_integer(in, "sink");
  o.window = recipe_integer(in, "window");
  o.per_layer = recipe_toggle(in, "per_layer");
  const uint64_t seed = static_cast<uint64_t>(recipe_integer(in, "seed"));
  const eval::Corpus corpus(in.text, *in.tokenizer);
  std::vector<eval::Sample> tasks;
  const auto& names = eval::task_names();
  for (int64_t i = 0; i < in.num_samples; ++i) {
    tasks.push_back(eval::make_sample(names[static_cast<size_t>(i) % names.size()],
                                      i / static_cast<int64_t>(names.size()), in.sample_seq_len, seed + 1000, corpus,
                                      *in.tokenizer));
  }
  Pipeline pipeline(*in.model, *in.tokenizer);
  in.note(
      fmt::format("LU-KV budget curves of {} around {} on {} ({} questions, contexts of {} tokens, {} answer tokens)",
                  in.model_path, scorer->describe(), in.corpus_path, tasks.size(), in.sample_seq_len, o.new_tokens));
  const at::Tensor curve = collect_lukv_curve(*in.model, pipeline, *in.tokenizer, *scorer, tasks, o,
                                              [&](int64_t d, int64_t n) { in.progress("samples", d, n); });
  std::error_code ec;
  std::filesystem::create_directories(in.out, ec);
  PIKV_CHECK(!ec, "cannot create '{}': {}", in.out, ec.message());
  const std::string file = in.out + "/budget_curve.npy";
  io::write_npy(file, curve);
  // The per-layer shares at the ratios people use: what the curve does with a layer's budget.
  const std::string model_name = file_name(in.model_path);
  std::string md = fmt::format(
      "# LU-KV budget curve for {}\n\nCommand: `pikv calibrate lukv --scorer {}` on {} "
      "({} task questions over {}, contexts of {} tokens, {} greedy answer tokens; sink {}, "
      "window {}, {}).\n\nPruned share per layer (mean over KV heads, min-max in brackets):\n\n"
      "| layer | ratio 0.25 | ratio 0.5 | ratio 0.75 |\n|---|---|---|---|\n",
      model_name, spec, model_name, tasks.size(), in.corpus_path, in.sample_seq_len, o.new_tokens, o.sink, o.window,
      o.per_layer ? "per layer" : "across layers");
  for (int64_t l = 0; l < curve.size(1); ++l) {
    md += fmt::format("| {} |", l);
    for (int64_t row : {24, 49, 74}) {
      const at::Tensor v = curve[row][l];
      md += fmt::format(" {:.2f} ({:.2f}-{:.2f}) |", v.mean().item<double>(), v.min().item<double>(),
                        v.max().item<double>());
    }
    md += "\n";
  }
  CalibrationResult out;
  out.report = write_recipe_report(in.out, md);
  out.wrote = fmt::format("wrote {} ([99, {}, {}] prune fractions)", file, curve.size(1), curve.size(2));
  out.use = fmt::format("--press lukv --option curve={}{}", file,
                        spec == kLUKVDefaultScorer ? "" : fmt::format(" --option press={} ...", scorer_name));
  return out;
}

inline CalibrationRecipe lukv_recipe() {
  const LUKVCurveOptions d;
  return {"lukv",
          "LU-KV budget curves (from answers' attention)",
          {recipe_seed_option(),
           RecipeOption::text("scorer", "SPEC", kLUKVDefaultScorer,
                              "the press the curve is for (default expected_attention:epsilon=0.02,\nthe lukv press's "
                              "default scorer)"),
           RecipeOption::integer("new_tokens", d.new_tokens, 2, 4096, "{default} answer tokens"),
           RecipeOption::integer("sink", d.sink, 0, kRecipeMaxTokens, "{default}"),
           RecipeOption::integer("window", d.window, 0, kRecipeMaxTokens, "{default}"),
           RecipeOption::toggle("per_layer", d.per_layer, "allocate within each layer (default: across all layers)")},
          run_lukv_recipe};
}

}  // namespace detail

PIKV_REGISTER_CALIBRATION_RECIPE(lukv, detail::lukv_recipe());

}  // namespace pikv
