#pragma once

#include <pikv/core/config.h>
#include <pikv/core/registry.h>
#include <pikv/presses/random.h>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

namespace pikv {

PIKV_INLINE at::Tensor RandomPress::score(const AttentionContext& ctx, double) const {
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

PIKV_REGISTER_PRESS(RandomPress, options_press<RandomPress>("uniform random scores (baseline)"));

}  // namespace pikv
