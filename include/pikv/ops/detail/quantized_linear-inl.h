#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/detail/cpu_features.h>
#include <pikv/core/tensor_checks.h>
#include <pikv/io/gguf.h>
#include <pikv/ops/quantized_linear.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/Half.h>

#include <cstdlib>
#include <cstring>


namespace pikv::ops {
namespace detail {
namespace quant {

constexpr uint32_t kQ4_0 = static_cast<uint32_t>(io::GGMLType::Q4_0);
constexpr uint32_t kQ4_1 = static_cast<uint32_t>(io::GGMLType::Q4_1);
constexpr uint32_t kQ8_0 = static_cast<uint32_t>(io::GGMLType::Q8_0);
constexpr uint32_t kQ5_0 = static_cast<uint32_t>(io::GGMLType::Q5_0);
constexpr uint32_t kQ5_1 = static_cast<uint32_t>(io::GGMLType::Q5_1);
constexpr uint32_t kQ5_K = static_cast<uint32_t>(io::GGMLType::Q5_K);
constexpr uint32_t kQ4_K = static_cast<uint32_t>(io::GGMLType::Q4_K);
constexpr uint32_t kQ6_K = static_cast<uint32_t>(io::GGMLType::Q6_K);

// Values and bytes per block.
struct Geometry {
  int64_t values, bytes;
};
PIKV_INLINE Geometry geometry(uint32_t type) {
  switch (type) {
    case kQ8_0: return {32, 34};
    case kQ4_0: return {32, 18};
    case kQ4_1: return {32, 20};
    case kQ5_0: return {32, 22};
    case kQ5_1: return {32, 24};
    case kQ4_K: return {256, 144};
    case kQ5_K: return {256, 176};
    case kQ6_K: return {256, 210};
    default: return {0, 0};
  }
}

// Plain inline (not PIKV_INLINE): called per 32 weights, it must never be an exported call.
inline float half(const uint8_t* p) {
  uint16_t bits;
  std::memcpy(&bits, p, 2);
  return c10::detail::fp16_ieee_to_fp32_value(bits);
}

// Q4_K: 6-bit scale and min of sub-block j of a super-block's 12 scale bytes (ggml's get_scale_min_k4).
inline void q4k_scale_min(const uint8_t* s, int j, int* sc, int* mn) {
  if (j < 4) {
    *sc = s[j] & 63;
    *mn = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
    *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

#ifdef PIKV_X86_KERNELS
// The F16C conversion: one instruction, where the portable one takes a dozen. The AVX2 kernels are
// flattened, so it is inlined through coefficients() into them.
PIKV_TARGET_AVX2 inline float half_f16c(const uint8_t* p) {
  uint16_t bits;
  std::memcpy(&bits, p, 2);
  return _cvtsh_ss(bits);
}
#endif

// The coefficients of 32-value group j of a row: values 16h..16h+15 of the group are a[h] * q + c[h].
// `half` converts an f16 at a pointer.
template <uint32_t T, float (*half)(const uint8_t*) = quant::half>
inline void coefficients(const uint8_t* row, int64_t j, float a[2], float c[2]) {
  if constexpr (T == kQ8_0) {
    a[0] = a[1] = half(row + 34 * j);
    c[0] = c[1] = 0.f;
  } else if constexpr (T == kQ4_0) {
    a[0] = a[1] = half(row + 18 * j);
    c[0] = c[1] = -8.f * a[0];
  } else if constexpr (T == kQ4_1) {
    a[0] = a[1] = half(row + 20 * j);
    c[0] = c[1] = half(row + 20 * j + 2);
  } else if constexpr (T == kQ5_0) {
    a[0] = a[1] = half(row + 22 * j);
    c[0] = c[1] = -16.f * a[0];
  } else if constexpr (T == kQ5_1) {
    a[0] = a[1] = half(row + 24 * j);
    c[0] = c[1] = half(row + 24 * j + 2);
  } else if constexpr (T == kQ4_K || T == kQ5_K) {
    const uint8_t* b = row + (T == kQ4_K ? 144 : 176) * (j / 8);
    int sc, mn;
    q4k_scale_min(b + 4, static_cast<int>(j % 8), &sc, &mn);
    a[0] = a[1] = half(b) * static_cast<float>(sc);
    c[0] = c[1] = -half(b + 2) * static_cast<float>(mn);
  } else {  // Q6_K: group k of a 128-value half uses scales 2k and 2k + 1 of that half
    const uint8_t* b = row + 210 * (j / 8);
    const int half_index = static_cast<int>(j % 8) / 4, k = static_cast<int>(j % 4);
    const int8_t* s = reinterpret_cast<const int8_t*>(b + 192) + 8 * half_index;
    const float d = half(b + 208);
    a[0] = d * static_cast<float>(s[2 * k]);
    a[1] = d * static_cast<float>(s[2 * k + 1]);
    c[0] = -32.f * a[0];
    c[1] = -32.f * a[1];
  }
}

// The 32 integers of group j as floats (portable version).
template <uint32_t T>
inline void decode_scalar(const uint8_t* row, int64_t j, float q[32]) {
  if constexpr (T == kQ8_0) {
    const int8_t* p = reinterpret_cast<const int8_t*>(row + 34 * j + 2);
    for (int l = 0; l < 32; ++l) q[l] = static_cast<float>(p[l]);
  } else if constexpr (T == kQ4_0 || T == kQ4_1) {
    const uint8_t* p = row + (T == kQ4_0 ? 18 : 20) * j + (T == kQ4_0 ? 2 : 4);
    for (int l = 0; l < 16; ++l) {
      q[l] = static_cast<float>(p[l] & 0x0F);
      q[l + 16] = static_cast<float>(p[l] >> 4);
    }
  } else if constexpr (T == kQ5_0 || T == kQ5_1) {
    const uint8_t* b = row + (T == kQ5_0 ? 22 : 24) * j + (T == kQ5_0 ? 2 : 4);
    uint32_t qh;
    std::memcpy(&qh, b, 4);
    for (int l = 0; l < 16; ++l) {
      q[l] = static_cast<float>((b[4 + l] & 0x0F) | (((qh >> l) & 1u) << 4));
      q[l + 16] = static_cast<float>((b[4 + l] >> 4) | (((qh >> (l + 16)) & 1u) << 4));
    }
  } else if constexpr (T == kQ4_K) {
    const uint8_t* p = row + 144 * (j / 8) + 16 + 32 * ((j % 8) / 2);
    const int shift = static_cast<int>(j % 2) * 4;
    for (int l = 0; l < 32; ++l) q[l] = static_cast<float>((p[l] >> shift) & 0x0F);
  } else if constexpr (T == kQ5_K) {
    const uint8_t* b = row + 176 * (j / 8);
    const uint8_t* p = b + 48 + 32 * ((j % 8) / 2);
    const int shift = static_cast<int>(j % 2) * 4, bit = static_cast<int>(j % 8);
    for (int l = 0; l < 32; ++l) q[l] = static_cast<float>(((p[l] >> shift) & 0x0F) | (((b[16 + l] >> bit) & 1) << 4));
  } else {
    const uint8_t* b = row + 210 * (j / 8);
    const int half_index = static_cast<int>(j % 8) / 4, k = static_cast<int>(j % 4);
    const uint8_t* ql = b + 64 * half_index + 32 * (k & 1);
    const uint8_t* qh = b + 128 + 32 * half_index;
    const int shift = k >= 2 ? 4 : 0;
    for (int l = 0; l < 32; ++l) q[l] = static_cast<float>(((ql[l] >> shift) & 0x0F) | (((qh[l] >> (2 * k)) & 3) << 4));
  }
}

// Rows [r0, r1) of y [M, ys] = x [M, xs] W^T (+ bias); sx [M, cols / 16]: sums of x per 16 values.
template <uint32_t T>
void gemv_scalar(const QuantizedMatrix& w, int64_t M, const float* x, int64_t xs, const float* sx, int64_t r0,
                 int64_t r1, float* y, int64_t ys, const float* bias) {
  const int64_t groups = w.cols() / 32;
  float q[32], a[2], c[2];
  std::vector<double> acc(static_cast<size_t>(M));
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = w.row(r);
    std::fill(acc.begin(), acc.end(), 0.0);
    for (int64_t j = 0; j < groups; ++j) {
      decode_scalar<T>(row, j, q);
      coefficients<T>(row, j, a, c);
      for (int64_t m = 0; m < M; ++m) {
        const float* xp = x + m * xs + 32 * j;
        float s0 = 0.f, s1 = 0.f;
        for (int l = 0; l < 16; ++l) {
          s0 += q[l] * xp[l];
          s1 += q[l + 16] * xp[l + 16];
        }
        const float* sxp = sx + m * (2 * groups) + 2 * j;
        acc[static_cast<size_t>(m)] += a[0] * s0 + a[1] * s1 + c[0] * sxp[0] + c[1] * sxp[1];
      }
    }
    for (int64_t m = 0; m < M; ++m)
      y[m * ys + r] = static_cast<float>(acc[static_cast<size_t>(m)]) + (bias != nullptr ? bias[r] : 0.f);
  }
}

#ifdef PIKV_X86_KERNELS
PIKV_TARGET_AVX2 inline __m256 u8_to_ps(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)); }

// 32 bytes of values 0..255 as four vectors of 8 floats.
PIKV_TARGET_AVX2 inline void bytes_to_ps(__m256i v, __m256 q[4]) {
  const __m128i v0 = _mm256_castsi256_si128(v), v1 = _mm256_extracti128_si256(v, 1);
  q[0] = u8_to_ps(v0);
  q[1] = u8_to_ps(_mm_srli_si128(v0, 8));
  q[2] = u8_to_ps(v1);
  q[3] = u8_to_ps(_mm_srli_si128(v1, 8));
}

// Byte l of the result is `value` where bit l of `bits` is set, else 0.
PIKV_TARGET_AVX2 inline __m256i bit_bytes(uint32_t bits, char value) {
  // Byte l holds byte l / 8 of `bits`; OR-ing every bit but (l % 8) gives all ones exactly when it is set.
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(static_cast<int>(bits)),
      _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0x0000000000000000));
  const __m256i others = _mm256_set1_epi64x(0x7FBFDFEFF7FBFDFE);
  const __m256i set = _mm256_cmpeq_epi8(_mm256_or_si256(spread, others), _mm256_set1_epi64x(-1));
  return _mm256_and_si256(set, _mm256_set1_epi8(value));
}

template <uint32_t T>
PIKV_TARGET_AVX2 inline void decode_avx2(const uint8_t* row, int64_t j, __m256 q[4]) {
  if constexpr (T == kQ8_0) {
    const uint8_t* p = row + 34 * j + 2;
    for (int k = 0; k < 4; ++k) {
      q[k] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 8 * k))));
    }
  } else if constexpr (T == kQ4_0 || T == kQ4_1) {
    const uint8_t* p = row + (T == kQ4_0 ? 18 : 20) * j + (T == kQ4_0 ? 2 : 4);
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m128i mask = _mm_set1_epi8(0x0F);
    const __m128i lo = _mm_and_si128(v, mask), hi = _mm_and_si128(_mm_srli_epi16(v, 4), mask);
    q[0] = u8_to_ps(lo);
    q[1] = u8_to_ps(_mm_srli_si128(lo, 8));
    q[2] = u8_to_ps(hi);
    q[3] = u8_to_ps(_mm_srli_si128(hi, 8));
  } else if constexpr (T == kQ5_0 || T == kQ5_1) {
    const uint8_t* b = row + (T == kQ5_0 ? 22 : 24) * j + (T == kQ5_0 ? 2 : 4);
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 4));
    const __m128i mask = _mm_set1_epi8(0x0F);
    const __m256i nibbles =
        _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), mask), _mm_and_si128(v, mask));  // values 0-15, 16-31
    uint32_t qh;
    std::memcpy(&qh, b, 4);
    bytes_to_ps(_mm256_or_si256(nibbles, bit_bytes(qh, 0x10)), q);
  } else if constexpr (T == kQ4_K) {
    const uint8_t* p = row + 144 * (j / 8) + 16 + 32 * ((j % 8) / 2);
    __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    if (j % 2) v = _mm256_srli_epi16(v, 4);
    bytes_to_ps(_mm256_and_si256(v, _mm256_set1_epi8(0x0F)), q);
  } else if constexpr (T == kQ5_K) {
    const uint8_t* b = row + 176 * (j / 8);
    __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 48 + 32 * ((j % 8) / 2)));
    if (j % 2) v = _mm256_srli_epi16(v, 4);
    v = _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
    // Bit j of each qh byte moved to bit 4 (16-bit shifts; the mask drops what crosses bytes).
    __m256i hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 16));
    hi = _mm256_and_si256(_mm256_srl_epi16(hi, _mm_cvtsi32_si128(static_cast<int>(j % 8))), _mm256_set1_epi8(0x01));
    bytes_to_ps(_mm256_or_si256(v, _mm256_slli_epi16(hi, 4)), q);
  } else {
    const uint8_t* b = row + 210 * (j / 8);
    const int half_index = static_cast<int>(j % 8) / 4, k = static_cast<int>(j % 4);
    __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 64 * half_index + 32 * (k & 1)));
    if (k >= 2) lo = _mm256_srli_epi16(lo, 4);
    lo = _mm256_and_si256(lo, _mm256_set1_epi8(0x0F));
    __m256i hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 128 + 32 * half_index));
    // Per byte: bits 2k..2k+1 of qh moved to bits 4..5 (16-bit shifts; the masks drop what crosses bytes).
    hi = _mm256_and_si256(_mm256_srl_epi16(hi, _mm_cvtsi32_si128(2 * k)), _mm256_set1_epi8(0x03));
    bytes_to_ps(_mm256_or_si256(lo, _mm256_slli_epi16(hi, 4)), q);
  }
}

template <uint32_t T, int M>
PIKV_TARGET_AVX2 __attribute__((flatten)) void gemv_avx2_rows(const QuantizedMatrix& w, const float* x, int64_t xs,
                                                              const float* sx, int64_t r0, int64_t r1, float* y,
                                                              int64_t ys, const float* bias) {
  const int64_t groups = w.cols() / 32;
  constexpr bool offset = T != kQ8_0;
  __m256 q[4];
  float a[2], c[2];
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = w.row(r);
    // Two accumulators per input row (the group's halves): two short dependency chains instead of one
    // long one, which measured ~2x faster per group.
    __m256 acc0[M], acc1[M];
    float sacc[M];
    for (int m = 0; m < M; ++m) {
      acc0[m] = acc1[m] = _mm256_setzero_ps();
      sacc[m] = 0.f;
    }
    for (int64_t j = 0; j < groups; ++j) {
      decode_avx2<T>(row, j, q);
      coefficients<T, half_f16c>(row, j, a, c);
      const __m256 a0 = _mm256_set1_ps(a[0]), a1 = _mm256_set1_ps(a[1]);
      for (int m = 0; m < M; ++m) {
        const float* xp = x + m * xs + 32 * j;
        __m256 t0 = _mm256_mul_ps(q[0], _mm256_loadu_ps(xp));
        __m256 t1 = _mm256_mul_ps(q[2], _mm256_loadu_ps(xp + 16));
        t0 = _mm256_fmadd_ps(q[1], _mm256_loadu_ps(xp + 8), t0);
        t1 = _mm256_fmadd_ps(q[3], _mm256_loadu_ps(xp + 24), t1);
        acc0[m] = _mm256_fmadd_ps(a0, t0, acc0[m]);
        acc1[m] = _mm256_fmadd_ps(a1, t1, acc1[m]);
        if constexpr (offset) {
          const float* sxp = sx + m * (2 * groups) + 2 * j;
          sacc[m] += c[0] * sxp[0] + c[1] * sxp[1];
        }
      }
    }
    for (int m = 0; m < M; ++m) {
      y[m * ys + r] =
          pikv::detail::hsum_avx2(_mm256_add_ps(acc0[m], acc1[m])) + sacc[m] + (bias != nullptr ? bias[r] : 0.f);
    }
  }
}

// Up to 4 input rows at a time: their accumulators stay in registers while a decoded group is reused.
template <uint32_t T>
void gemv_avx2(const QuantizedMatrix& w, int64_t M, const float* x, int64_t xs, const float* sx, int64_t r0,
               int64_t r1, float* y, int64_t ys, const float* bias) {
  const int64_t sxs = w.cols() / 16;
  for (int64_t m0 = 0; m0 < M; m0 += 4) {
    const float* xm = x + m0 * xs;
    const float* sm = sx + m0 * sxs;
    float* ym = y + m0 * ys;
    switch (std::min<int64_t>(4, M - m0)) {
      case 1: gemv_avx2_rows<T, 1>(w, xm, xs, sm, r0, r1, ym, ys, bias); break;
      case 2: gemv_avx2_rows<T, 2>(w, xm, xs, sm, r0, r1, ym, ys, bias); break;
      case 3: gemv_avx2_rows<T, 3>(w, xm, xs, sm, r0, r1, ym, ys, bias); break;
      default: gemv_avx2_rows<T, 4>(w, xm, xs, sm, r0, r1, ym, ys, bias); break;
    }
  }
}

// Rows [r0, r1) dequantised into out [rows, cols].
template <uint32_t T>
PIKV_TARGET_AVX2 __attribute__((flatten)) void dequantize_avx2(const QuantizedMatrix& w, int64_t r0, int64_t r1, float* out) {
  const int64_t groups = w.cols() / 32;
  __m256 q[4];
  float a[2], c[2];
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = w.row(r);
    float* o = out + r * w.cols();
    for (int64_t j = 0; j < groups; ++j, o += 32) {
      decode_avx2<T>(row, j, q);
      coefficients<T, half_f16c>(row, j, a, c);
      for (int k = 0; k < 4; ++k) {
        _mm256_storeu_ps(o + 8 * k, _mm256_fmadd_ps(_mm256_set1_ps(a[k / 2]), q[k], _mm256_set1_ps(c[k / 2])));
      }
    }
  }
}

PIKV_INLINE bool cpu_has_avx2() { return pikv::detail::cpu_has_avx2_fma_f16c(); }
#else
PIKV_INLINE bool cpu_has_avx2() { return false; }
#endif

PIKV_INLINE bool use_avx2() {
  static const bool forced_scalar = [] {
    const char* v = std::getenv("PIKV_QUANTIZED_KERNEL");
    return v != nullptr && std::string(v) == "scalar";
  }();
  return cpu_has_avx2() && !forced_scalar;
}

// Calls f.template operator()<T>() with the matrix type as a template argument.
template <typename F>
void dispatch_type(uint32_t type, F&& f) {
  switch (type) {
    case kQ8_0: f(std::integral_constant<uint32_t, kQ8_0>{}); return;
    case kQ4_0: f(std::integral_constant<uint32_t, kQ4_0>{}); return;
    case kQ4_1: f(std::integral_constant<uint32_t, kQ4_1>{}); return;
    case kQ5_0: f(std::integral_constant<uint32_t, kQ5_0>{}); return;
    case kQ5_1: f(std::integral_constant<uint32_t, kQ5_1>{}); return;
    case kQ4_K: f(std::integral_constant<uint32_t, kQ4_K>{}); return;
    case kQ5_K: f(std::integral_constant<uint32_t, kQ5_K>{}); return;
    case kQ6_K: f(std::integral_constant<uint32_t, kQ6_K>{}); return;
    default: PIKV_FAIL("quantized kernels do not support GGML {}", io::ggml_type_name(type));
  }
}

PIKV_INLINE void check_input(const at::Tensor& x, const QuantizedMatrix& w, const at::Tensor& bias) {
  PIKV_CHECK(w.defined(), "quantized_linear: the weight matrix is empty");
  PIKV_CHECK(x.defined() && x.dim() >= 1 && x.size(-1) == w.cols() && x.scalar_type() == at::kFloat && x.device().is_cpu(),
             "quantized_linear: input must be float32 [..., {}] on the CPU, got {}", w.cols(), describe_tensor(x));
  PIKV_CHECK(!bias.defined() || (bias.dim() == 1 && bias.size(0) == w.rows() && bias.scalar_type() == at::kFloat &&
                                 bias.device().is_cpu()),
             "quantized_linear: bias must be float32 [{}] on the CPU, got {}", w.rows(), describe_tensor(bias));
}

// The fused kernel on few rows: x2 [M, cols] contiguous -> [M, rows].
PIKV_INLINE at::Tensor gemv(const at::Tensor& x2, const QuantizedMatrix& w, const at::Tensor& bias, bool avx2) {
  const int64_t M = x2.size(0), cols = w.cols();
  const at::Tensor sx = x2.view({M, cols / 16, 16}).sum(-1).contiguous();
  at::Tensor y = at::empty({M, w.rows()}, x2.options());
  const float* xp = x2.data_ptr<float>();
  const float* sp = sx.data_ptr<float>();
  const at::Tensor b = bias.defined() ? bias.contiguous() : at::Tensor();  // held: bp must outlive the call
  const float* bp = b.defined() ? b.data_ptr<float>() : nullptr;
  float* yp = y.data_ptr<float>();
  // About 64 rows per task: enough work per task, and rows split evenly over a few threads.
  const int64_t grain = std::max<int64_t>(16, w.rows() / (4 * at::get_num_threads()));
  dispatch_type(w.type(), [&](auto t) {
    constexpr uint32_t T = decltype(t)::value;
    at::parallel_for(0, w.rows(), grain, [&](int64_t r0, int64_t r1) {
#ifdef PIKV_X86_KERNELS
      if (avx2) return gemv_avx2<T>(w, M, xp, cols, sp, r0, r1, yp, w.rows(), bp);
#endif
      gemv_scalar<T>(w, M, xp, cols, sp, r0, r1, yp, w.rows(), bp);
    });
  });
  return y;
}

// `avx2` false with `gemv_only` runs the portable kernel whatever the row count (the tests' reference).
PIKV_INLINE at::Tensor linear(const at::Tensor& x, const QuantizedMatrix& w, const at::Tensor& bias, bool avx2,
                              bool gemv_only = false) {
  check_input(x, w, bias);
  const int64_t M = x.numel() / w.cols();
  std::vector<int64_t> out_shape = x.sizes().vec();
  out_shape.back() = w.rows();
  if (M == 0) return at::empty(out_shape, x.options());
  if (M > kQuantizedGemvRows && !gemv_only) {
    // Many rows reuse the matrix: dequantise it once and use ATen's GEMM.
    const at::Tensor dense = w.dequantize();
    return bias.defined() ? at::linear(x, dense, bias) : at::linear(x, dense);
  }
  return gemv(x.reshape({M, w.cols()}).contiguous(), w, bias, avx2).view(out_shape);
}

}  // namespace quant

PIKV_INLINE at::Tensor quantized_linear_scalar(const at::Tensor& x, const QuantizedMatrix& w, const at::Tensor& bias) {
  return quant::linear(x, w, bias, /*avx2=*/false, /*gemv_only=*/true);
}

}  // namespace detail

PIKV_INLINE bool QuantizedMatrix::supports(uint32_t type) { return detail::quant::geometry(type).values > 0; }

PIKV_INLINE QuantizedMatrix QuantizedMatrix::from_raw(uint32_t type, int64_t rows, int64_t cols, const uint8_t* src,
                                                     const std::string& name) {
  const detail::quant::Geometry g = detail::quant::geometry(type);
  PIKV_CHECK(g.values > 0, "{}: GGML type {} has no quantized kernel (supported: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K)", name,
             io::ggml_type_name(type));
  PIKV_CHECK(rows > 0 && cols > 0 && cols % g.values == 0,
             "{}: a {} matrix needs rows > 0 and columns a positive multiple of {}, got [{}, {}]", name,
             io::ggml_type_name(type), g.values, rows, cols);
  PIKV_CHECK(src != nullptr, "{}: no data", name);
  QuantizedMatrix m;
  m.type_ = type;
  m.rows_ = rows;
  m.cols_ = cols;
  m.row_bytes_ = cols / g.values * g.bytes;
  m.data_ = at::empty({rows, m.row_bytes_}, at::kByte);
  std::memcpy(m.data_.data_ptr<uint8_t>(), src, static_cast<size_t>(rows * m.row_bytes_));
  return m;
}

PIKV_INLINE const uint8_t* QuantizedMatrix::row(int64_t r) const {
  return data_.const_data_ptr<uint8_t>() + r * data_.stride(0);
}

PIKV_INLINE QuantizedMatrix QuantizedMatrix::narrow_rows(int64_t start, int64_t length) const {
  PIKV_CHECK(start >= 0 && length > 0 && start + length <= rows_, "QuantizedMatrix: rows [{}, {}) are outside [0, {})",
             start, start + length, rows_);
  QuantizedMatrix m = *this;
  m.rows_ = length;
  m.data_ = data_.narrow(0, start, length);
  return m;
}

PIKV_INLINE QuantizedMatrix QuantizedMatrix::index_rows(const at::Tensor& index) const {
  PIKV_CHECK(index.dim() == 1 && index.scalar_type() == at::kLong && index.numel() > 0,
             "QuantizedMatrix: a row index must be int64 [n], got {}", describe_tensor(index));
  const auto [lo, hi] = at::aminmax(index);
  PIKV_CHECK(lo.item<int64_t>() >= 0 && hi.item<int64_t>() < rows_,
             "QuantizedMatrix: row indices must be in [0, {}), got values in [{}, {}]", rows_, lo.item<int64_t>(),
             hi.item<int64_t>());
  QuantizedMatrix m = *this;
  m.rows_ = index.numel();
  m.data_ = data_.index_select(0, index.cpu()).contiguous();
  return m;
}

PIKV_INLINE at::Tensor QuantizedMatrix::dequantize() const {
  PIKV_CHECK(defined(), "QuantizedMatrix: dequantize() on an empty matrix");
  at::Tensor out = at::empty({rows_, cols_}, at::kFloat);
  float* o = out.data_ptr<float>();
  const bool avx2 = detail::quant::use_avx2();
  detail::quant::dispatch_type(type_, [&](auto t) {
    constexpr uint32_t T = decltype(t)::value;
    at::parallel_for(0, rows_, 16, [&](int64_t r0, int64_t r1) {
#ifdef PIKV_X86_KERNELS
      if (avx2) return detail::quant::dequantize_avx2<T>(*this, r0, r1, o);
#endif
      for (int64_t r = r0; r < r1; ++r) io::dequantize(type_, row(r), cols_, o + r * cols_);
    });
  });
  return out;
}

PIKV_INLINE at::Tensor QuantizedMatrix::rows_at(const at::Tensor& ids) const {
  PIKV_CHECK(defined(), "QuantizedMatrix: rows_at() on an empty matrix");
  PIKV_CHECK(ids.scalar_type() == at::kLong, "QuantizedMatrix: row ids must be int64, got {}", describe_tensor(ids));
  const at::Tensor flat = ids.reshape({-1}).cpu().contiguous();
  const int64_t n = flat.numel();
  const int64_t* id = flat.const_data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    PIKV_CHECK(id[i] >= 0 && id[i] < rows_, "QuantizedMatrix: row id {} at {} is outside [0, {})", id[i], i, rows_);
  }
  at::Tensor out = at::empty({n, cols_}, at::kFloat);
  float* o = out.data_ptr<float>();
  at::parallel_for(0, n, 64, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) io::dequantize(type_, row(id[i]), cols_, o + i * cols_);
  });
  std::vector<int64_t> shape = ids.sizes().vec();
  shape.push_back(cols_);
  return out.view(shape);
}

PIKV_INLINE at::Tensor quantized_linear(const at::Tensor& x, const QuantizedMatrix& w, const at::Tensor& bias) {
  return detail::quant::linear(x, w, bias, detail::quant::use_avx2());
}

PIKV_INLINE std::string quantized_kernel_name() { return detail::quant::use_avx2() ? "avx2" : "scalar"; }

}  // namespace pikv::ops
