#pragma once
// Whether the CPU runs the AVX2 kernels (quantized GEMV, half-precision decode attention): AVX2, FMA
// and F16C. __builtin_cpu_supports knows "f16c" in GCC but not in every clang, so F16C is read from
// CPUID directly.

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#endif

namespace pikv::detail {

inline bool cpu_has_avx2_fma_f16c() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  static const bool has = [] {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return false;
    const bool f16c = (ecx & (1u << 29)) != 0;
    return f16c && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return has;
#else
  return false;
#endif
}

}  // namespace pikv::detail
