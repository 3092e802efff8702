#pragma once

#include <pikv/core/causal_lm.h>
#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/kv_cache.h>
#include <pikv/core/selection.h>
#include <pikv/presses/context_pass.h>

#include <ATen/ATen.h>

#include <vector>

namespace pikv {

PIKV_INLINE bool ContextPassPress::should_compress(const AttentionContext& ctx) const {
  if (state_ == State::scoring) return true;
  PIKV_CHECK(!(state_ == State::prefilling && !ctx.is_prefill && needs_context_passes()),
             "{} compresses after the prefill by reading its context again with the model: the runner must call "
             "run_context_passes right after the prefill (pikv::Pipeline, SharedPrefill and record_press do); this "
             "forward came without it",
             name());
  return false;
}

PIKV_INLINE ContextPassPress::Shape ContextPassPress::check_whole_context(const ContextPasses& p) const {
  PIKV_CHECK(p.model != nullptr && p.cache != nullptr, "{} needs the model and its cache to read the context again",
             name());
  const KVCache& cache = *p.cache;
  Shape s;
  s.layers = p.model->num_layers();
  s.tokens = static_cast<int64_t>(p.context_ids.size());
  PIKV_CHECK(s.tokens > 0 && cache.logical_length(0) == s.tokens,
             "{}: the cache holds {} tokens, the context {}: run_context_passes right after the prefill", name(),
             cache.logical_length(0), s.tokens);
  for (int64_t l = 0; l < s.layers; ++l) {
    PIKV_CHECK(!cache.is_ragged(l) && cache.physical_length(l) == s.tokens,
               "{}: layer {} was already compressed; it needs the whole prefilled context", name(), l);
  }
  const at::Tensor k0 = cache.padded(0).keys;
  PIKV_CHECK(k0.size(0) == 1, "{} supports batch 1 (as kvpress), got a batch of {}", name(), k0.size(0));
  s.kv_heads = k0.size(1);
  s.options = k0.options();
  return s;
}

PIKV_INLINE void ContextPassPress::scoring_forward(const ContextPasses& p, const std::vector<int64_t>& ids,
                                                   ContextPassesCost& cost) {
  KVCache& cache = *p.cache;
  const int64_t n = static_cast<int64_t>(p.context_ids.size());
  state_ = State::scoring;
  try {
    const at::Device device = cache.padded(0).keys.device();
    (void)p.model->forward(at::tensor(ids, at::TensorOptions().dtype(at::kLong)).unsqueeze(0).to(device), cache,
                           ForwardOptions().return_hidden(p.model->supports_hidden_output()));
  } catch (...) {
    state_ = State::done;
    cache.truncate(n);
    throw;
  }
  cache.truncate(n);
  state_ = State::done;
  ++cost.forwards;
  cost.tokens += static_cast<int64_t>(ids.size());
}

PIKV_INLINE void ContextPassPress::prune_lowest(const at::Tensor& scores, double ratio, bool layerwise, KVCache& cache) {
  const int64_t L = scores.size(0), Hkv = scores.size(2), n = scores.size(3);
  std::vector<int64_t> pruned(static_cast<size_t>(L));
  if (layerwise) {
    for (auto& x : pruned) x = static_cast<int64_t>(static_cast<double>(Hkv * n) * ratio);
  } else {
    const int64_t total = static_cast<int64_t>(static_cast<double>(scores.numel()) * ratio);
    at::Tensor idx = std::get<1>(at::topk(-scores.reshape(-1), total));
    at::Tensor per_layer = at::bincount(at::floor_divide(idx, Hkv * n), {}, L).cpu();
    for (int64_t l = 0; l < L; ++l) pruned[l] = per_layer[l].item<int64_t>();
  }
  for (int64_t l = 0; l < L; ++l) {
    at::Tensor keep = at::ones({1, Hkv * n}, scores.options().dtype(at::kBool));
    if (pruned[l] > 0) keep.index_fill_(1, std::get<1>(at::topk(-scores[l].reshape({1, -1}), pruned[l], 1)).view(-1), false);
    const KVCache::Padded kv = cache.padded(l);
    cache.apply(l, keep_head_wise(kv.keys, kv.values, keep.view({1, Hkv, n}).to(kv.keys.device())));
  }
}

}  // namespace pikv
