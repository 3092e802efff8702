// Scorers that need nothing but the cached keys: Knorm, StreamingLLM, Random, KeyDiff.
#include <pikv/core/budget.h>
#include <pikv/core/error.h>
#include <pikv/presses/keydiff.h>
#include <pikv/presses/knorm.h>
#include <pikv/presses/random.h>
#include <pikv/presses/streaming_llm.h>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

namespace pikv {

KnormPress::KnormPress(const KnormOptions& options)
    : ScorerPress(options.compression_ratio(), "KnormOptions.compression_ratio"), options_(options) {}

at::Tensor KnormPress::score(const AttentionContext& ctx, double) const {
  // At least float32: a bf16 norm ties distinct positions and hands the choice to tie-breaking.
  const auto dtype = at::promote_types(ctx.keys.scalar_type(), at::kFloat);
  return -at::linalg_vector_norm(ctx.keys, 2, at::IntArrayRef{-1}, /*keepdim=*/false, dtype);
}

StreamingLLMPress::StreamingLLMPress(const StreamingLLMOptions& options)
    : ScorerPress(options.compression_ratio(), "StreamingLLMOptions.compression_ratio"), options_(options) {
  PIKV_CHECK(options.n_sink() >= 0, "StreamingLLMOptions.n_sink must be >= 0, got {}", options.n_sink());
}

std::string StreamingLLMPress::describe() const {
  return fmt::format("streaming_llm(compression_ratio={}, n_sink={})", compression_ratio(), options_.n_sink());
}

at::Tensor StreamingLLMPress::score(const AttentionContext& ctx, double ratio) const {
  const int64_t n = ctx.length();
  const int64_t sink = options_.n_sink();
  PIKV_CHECK(n > sink, "streaming_llm needs more cached tokens than n_sink={}, layer {} has n={}", sink, ctx.layer, n);
  const int64_t pruned = n - n_kept(n, ratio);
  at::Tensor scores = at::ones({ctx.batch(), ctx.kv_heads(), n}, ctx.keys.options());
  // Pruned tokens are the oldest after the sinks; n_kept <= n - sink never needs clipping since
  // pruned <= n - sink whenever n_kept >= sink, and the slice is clipped to n otherwise.
  const int64_t end = std::min(n, sink + pruned);
  if (end > sink) scores.narrow(2, sink, end - sink).zero_();
  return scores;
}

RandomPress::RandomPress(const RandomOptions& options)
    : ScorerPress(options.compression_ratio(), "RandomOptions.compression_ratio"), options_(options) {}

std::string RandomPress::describe() const {
  return options_.seed() ? fmt::format("random(compression_ratio={}, seed={})", compression_ratio(), *options_.seed())
                         : fmt::format("random(compression_ratio={})", compression_ratio());
}

at::Tensor RandomPress::score(const AttentionContext& ctx, double) const {
  // Drawn on the CPU and moved: a CUDA generator would give another stream for the same seed.
  auto cpu = ctx.keys.options().device(at::kCPU);
  at::IntArrayRef shape = ctx.keys.sizes().slice(0, 3);
  at::Tensor noise;
  if (options_.seed()) {
    at::Generator gen = at::detail::createCPUGenerator(*options_.seed());
    noise = at::rand(shape, gen, cpu);
  } else {
    noise = at::rand(shape, cpu);
  }
  return noise.to(ctx.keys.device());
}

KeyDiffPress::KeyDiffPress(const KeyDiffOptions& options)
    : ScorerPress(options.compression_ratio(), "KeyDiffOptions.compression_ratio"), options_(options) {}

at::Tensor KeyDiffPress::score(const AttentionContext& ctx, double) const {
  const at::Tensor& k = ctx.keys;
  // F.normalize(k, dim=-1): k / max(||k||, 1e-12)
  at::Tensor unit = k / at::linalg_vector_norm(k, 2, at::IntArrayRef{-1}, /*keepdim=*/true).clamp_min(1e-12);
  at::Tensor anchor = unit.mean(2, /*keepdim=*/true);  // [B, Hkv, 1, d]
  return -at::cosine_similarity(k, anchor, /*dim=*/-1, /*eps=*/1e-8);
}

}  // namespace pikv
