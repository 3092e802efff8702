#pragma once
// What the AVX2 kernels (quantized GEMV, half-precision decode attention) share: whether this build
// has them (PIKV_X86_KERNELS), the target attribute they are compiled with, whether the CPU runs them
// (AVX2, FMA and F16C), and a horizontal sum. __builtin_cpu_supports knows "f16c" in GCC but not in
// every clang, so F16C is read from CPUID directly.

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
#define PIKV_X86_KERNELS 1
#define PIKV_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
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

#ifdef PIKV_X86_KERNELS
// The sum of a vector's 8 lanes.
PIKV_TARGET_AVX2 inline float hsum_avx2(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
#endif

}  // namespace pikv::detail
