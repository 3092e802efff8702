#pragma once
// Keys/values and caches of a fixed shape for the KV-cache and cached-attention tests.
#include <pikv/pikv.h>

#include <gtest/gtest.h>

#include "helpers.h"

#include <fstream>
#include <string>
#include <vector>

namespace pikv::test {

inline constexpr int64_t B = 2, H = 3, D = 4;

inline at::Tensor kv(int64_t n, uint64_t seed) { return test::randn({B, H, n, D}, seed); }

inline KVCache fixed(int64_t layers, int64_t capacity) {
  return KVCache::fixed_capacity({layers, B, H, capacity, D}, at::TensorOptions().dtype(at::kFloat));
}

}  // namespace pikv::test
