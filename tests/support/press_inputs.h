#pragma once
// Small models and attention contexts the press, guard and router tests build.
#include <pikv/pikv.h>

#include <gtest/gtest.h>

#include "helpers.h"

#include <fstream>
#include <string>
#include <vector>

namespace pikv::test {

inline SyntheticModelOptions tiny() {
  return SyntheticModelOptions().num_layers(2).hidden_size(32).num_heads(4).num_kv_heads(2).head_dim(8);
}

// A prefill context for layer 0 of `model` with T random hidden states.
inline AttentionContext model_context(const SyntheticAttentionModel& model, int64_t T, uint64_t seed = 3) {
  AttentionContext ctx = random_context(1, model.config().num_kv_heads(), T, model.config().head_dim(), seed);
  ctx.num_layers = model.num_layers();
  ctx.hidden_states = randn({1, T, model.config().hidden_size()}, seed + 7);
  ctx.layer_view = &model.layer(0);
  return ctx;
}

inline SyntheticModelOptions small_model() {
  return SyntheticModelOptions().num_layers(3).hidden_size(64).num_heads(4).num_kv_heads(2).head_dim(16).seed(5);
}

inline AttentionContext context_from_keys(const at::Tensor& keys) {
  AttentionContext ctx;
  ctx.num_layers = 1;
  ctx.keys = keys;
  ctx.values = keys * 2;
  return ctx;
}

inline at::Tensor positions(std::vector<int64_t> p) { return at::tensor(p, at::kLong).view({1, 1, -1}); }

}  // namespace pikv::test
