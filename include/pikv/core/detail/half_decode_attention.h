#pragma once
// One decoding query per head over a KV cache stored in float16 or bfloat16, on the CPU, with float32
// queries, scores, softmax and output: the cache is read once in its stored width (half the bytes of
// float32, which is what bounds decoding at long contexts) and never converted to a float32 copy.
//
// Work is split over (batch row, KV head, chunk of keys) so that two threads are busy even with one
// KV head; each chunk keeps its own running maximum and sum (as flash-decoding does) and the chunks are
// combined per query head at the end. The G = H / Hkv query heads of a KV head share each key row read.
// An AVX2/F16C version runs where the CPU has it; the scalar version is the reference and the fallback.

#include <pikv/core/detail/check.h>
#include <pikv/core/detail/cpu_features.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>


namespace pikv::detail::half_attention {

constexpr int64_t kChunk = 512;  // keys per task

inline float to_float(c10::Half h) { return c10::detail::fp16_ieee_to_fp32_value(h.x); }
inline float to_float(c10::BFloat16 b) { return c10::detail::f32_from_bits(b.x); }

// One task: query heads g of KV head (b, h) against keys [j0, j1). Writes the chunk's maximum score,
// its sum of exp(score - max) and its unnormalised output (d values) per query head.
struct Task {
  const float* q;         // [G, d] of this (b, h)
  const void* keys;       // [n, d] rows of this (b, h), stored type
  const void* values;
  const bool* mask;       // [G, n] (true = attend) or null
  int64_t G, d, n, j0, j1, key_stride, value_stride, mask_stride;
  float scale;
  float* max;             // [G]
  float* sum;             // [G]
  float* out;             // [G, d]
  float* scores;          // [G, kChunk] scratch
};

template <typename Half>
void run_scalar(const Task& t) {
  const Half* K = static_cast<const Half*>(t.keys);
  const Half* V = static_cast<const Half*>(t.values);
  const int64_t len = t.j1 - t.j0;
  const float neg_inf = -std::numeric_limits<float>::infinity();
  for (int64_t g = 0; g < t.G; ++g) {
    float m = neg_inf;
    for (int64_t j = 0; j < len; ++j) {
      const int64_t jj = t.j0 + j;
      float s = neg_inf;
      if (t.mask == nullptr || t.mask[g * t.mask_stride + jj]) {
        s = 0.f;
        const Half* k = K + jj * t.key_stride;
        for (int64_t i = 0; i < t.d; ++i) s += t.q[g * t.d + i] * to_float(k[i]);
        s *= t.scale;
      }
      t.scores[g * kChunk + j] = s;
      m = std::max(m, s);
    }
    t.max[g] = m;
    float sum = 0.f;
    float* o = t.out + g * t.d;
    std::fill(o, o + t.d, 0.f);
    if (m == neg_inf) {
      t.sum[g] = 0.f;
      continue;
    }
    for (int64_t j = 0; j < len; ++j) {
      const float p = std::exp(t.scores[g * kChunk + j] - m);
      sum += p;
      if (p == 0.f) continue;
      const Half* v = V + (t.j0 + j) * t.value_stride;
      for (int64_t i = 0; i < t.d; ++i) o[i] += p * to_float(v[i]);
    }
    t.sum[g] = sum;
  }
}

#ifdef PIKV_X86_KERNELS

template <typename Half>
PIKV_TARGET_AVX2 inline __m256 load8(const Half* p) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  if constexpr (std::is_same_v<Half, c10::Half>) {
    return _mm256_cvtph_ps(raw);
  } else {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16));
  }
}

// exp of 8 floats <= 0 (scores minus their maximum; -inf gives 0): 2^n e^r with n = round(x log2 e),
// r = x - n ln 2 in two parts, and a degree-6 polynomial for e^r on [-ln2/2, ln2/2] (relative error
// about 2e-7, like the libm exp it replaces, which cost a tenth of the decode time called per score).
PIKV_TARGET_AVX2 inline __m256 exp8(__m256 x) {
  const __m256 masked = _mm256_cmp_ps(x, _mm256_set1_ps(-87.0f), _CMP_LT_OQ);
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.0f / 720);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  const __m256 e = _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
  return _mm256_andnot_ps(masked, e);  // below e^-87 (masked keys, -inf): 0
}

// Dimensions [8 b0, 8 b0 + 32) of the G outputs: sum over the chunk of p[g, j] * v[j]. G is a template
// argument so that the G x 4 accumulators are registers, not memory.
template <typename Half, int G>
PIKV_TARGET_AVX2 void accumulate_values(const Task& t, int b0) {
  const Half* V = static_cast<const Half*>(t.values);
  const int64_t len = t.j1 - t.j0;
  __m256 acc[G][4];
  for (int g = 0; g < G; ++g)
    for (int b = 0; b < 4; ++b) acc[g][b] = _mm256_setzero_ps();
  for (int64_t j = 0; j < len; ++j) {
    const Half* v = V + (t.j0 + j) * t.value_stride + 8 * b0;
    // Rows are 2-4 cache lines apart: ask for the rows a few iterations ahead.
    _mm_prefetch(reinterpret_cast<const char*>(v + 16 * t.value_stride), _MM_HINT_T0);
    const __m256 v0 = load8(v), v1 = load8(v + 8), v2 = load8(v + 16), v3 = load8(v + 24);
    for (int g = 0; g < G; ++g) {
      const __m256 p = _mm256_broadcast_ss(t.scores + g * kChunk + j);
      acc[g][0] = _mm256_fmadd_ps(p, v0, acc[g][0]);
      acc[g][1] = _mm256_fmadd_ps(p, v1, acc[g][1]);
      acc[g][2] = _mm256_fmadd_ps(p, v2, acc[g][2]);
      acc[g][3] = _mm256_fmadd_ps(p, v3, acc[g][3]);
    }
  }
  for (int g = 0; g < G; ++g)
    for (int b = 0; b < 4; ++b) _mm256_storeu_ps(t.out + g * t.d + 8 * (b0 + b), acc[g][b]);
}

// Four scores at once per query head: independent accumulators hide the FMA latency, and one
// horizontal-add tree reduces all four. BLOCKS = d / 8; G <= 8 query heads per KV head.
template <typename Half, int BLOCKS>
PIKV_TARGET_AVX2 void scores4(const Task& t, int64_t j, float* out /* [G][4] */) {
  const Half* K = static_cast<const Half*>(t.keys);
  for (int64_t g = 0; g < t.G; ++g) {
    const float* q = t.q + g * t.d;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int b = 0; b < BLOCKS; ++b) {
      const __m256 qb = _mm256_loadu_ps(q + 8 * b);
      a0 = _mm256_fmadd_ps(load8(K + (j + 0) * t.key_stride + 8 * b), qb, a0);
      a1 = _mm256_fmadd_ps(load8(K + (j + 1) * t.key_stride + 8 * b), qb, a1);
      a2 = _mm256_fmadd_ps(load8(K + (j + 2) * t.key_stride + 8 * b), qb, a2);
      a3 = _mm256_fmadd_ps(load8(K + (j + 3) * t.key_stride + 8 * b), qb, a3);
    }
    if (g == 0)
      for (int k = 0; k < 4; ++k) _mm_prefetch(reinterpret_cast<const char*>(K + (j + 16 + k) * t.key_stride), _MM_HINT_T0);
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    _mm_storeu_ps(out + 4 * g, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
  }
}

template <typename Half, int BLOCKS>
PIKV_TARGET_AVX2 void run_avx2(const Task& t) {
  const Half* K = static_cast<const Half*>(t.keys);
  const Half* V = static_cast<const Half*>(t.values);
  const int64_t len = t.j1 - t.j0, d = t.d, G = t.G;
  const float neg_inf = -std::numeric_limits<float>::infinity();
  float four[8 * 4];
  for (int64_t g = 0; g < G; ++g) t.max[g] = neg_inf;
  for (int64_t j = 0; j < len; j += 4) {
    const int64_t jj = t.j0 + j;
    if (j + 4 <= len) {
      scores4<Half, BLOCKS>(t, jj, four);
    } else {  // the last 1-3 keys
      for (int64_t g = 0; g < G; ++g)
        for (int64_t k = 0; k < 4; ++k) {
          if (j + k >= len) continue;
          const Half* kr = K + (jj + k) * t.key_stride;
          __m256 acc = _mm256_setzero_ps();
          for (int b = 0; b < BLOCKS; ++b) acc = _mm256_fmadd_ps(load8(kr + 8 * b), _mm256_loadu_ps(t.q + g * d + 8 * b), acc);
          four[4 * g + k] = pikv::detail::hsum_avx2(acc);
        }
    }
    for (int64_t g = 0; g < G; ++g)
      for (int64_t k = 0; k < 4 && j + k < len; ++k) {
        float s = four[4 * g + k] * t.scale;
        if (t.mask != nullptr && !t.mask[g * t.mask_stride + jj + k]) s = neg_inf;
        t.scores[g * kChunk + j + k] = s;
        t.max[g] = std::max(t.max[g], s);
      }
  }
  for (int64_t g = 0; g < G; ++g) {
    float* s = t.scores + g * kChunk;
    if (t.max[g] == neg_inf) {  // every key of the chunk masked
      std::fill(s, s + len, 0.f);
      t.sum[g] = 0.f;
      continue;
    }
    const __m256 top = _mm256_set1_ps(t.max[g]);
    __m256 sum8 = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 8 <= len; j += 8) {
      const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(s + j), top));
      _mm256_storeu_ps(s + j, e);
      sum8 = _mm256_add_ps(sum8, e);
    }
    float sum = pikv::detail::hsum_avx2(sum8);
    for (; j < len; ++j) {
      s[j] = std::exp(s[j] - t.max[g]);
      sum += s[j];
    }
    t.sum[g] = sum;
  }
  // Output, 32 dimensions at a time: the G x 4 accumulators stay in registers while value rows stream.
  for (int b0 = 0; b0 < BLOCKS; b0 += 4) {
    switch (G) {
      case 1: accumulate_values<Half, 1>(t, b0); break;
      case 2: accumulate_values<Half, 2>(t, b0); break;
      case 3: accumulate_values<Half, 3>(t, b0); break;
      case 4: accumulate_values<Half, 4>(t, b0); break;
      case 5: accumulate_values<Half, 5>(t, b0); break;
      case 6: accumulate_values<Half, 6>(t, b0); break;
      case 7: accumulate_values<Half, 7>(t, b0); break;
      default: accumulate_values<Half, 8>(t, b0); break;
    }
  }
}

#endif

// A run of stored rows that one (batch row, KV head) attends to: rows [0, n) from `keys` / `values`
// with `stride` elements between rows (a head of a dense cache, a head's packed prefix, a head's dense
// suffix). mask: bool [G, mask_stride] at this segment's first row, or null.
struct Segment {
  int64_t bh;  // b * Hkv + h
  const void* keys;
  const void* values;
  int64_t n, key_stride, value_stride;
  const bool* mask;
  int64_t mask_stride;
};

// Attends the G queries of every (b, h) over its segments: each segment split in kChunk-row tasks run
// in parallel, then the tasks of a (b, h) combined. q float32 [BH, G, d] contiguous -> [BH, G, d].
inline at::Tensor attend_segments(const at::Tensor& q, int64_t BH, const std::vector<Segment>& segments,
                                  at::ScalarType dtype, double scale, bool vectorised) {
  const int64_t G = q.size(1), d = q.size(2);
  struct Piece {
    size_t segment;
    int64_t j0, j1;
  };
  std::vector<Piece> pieces;
  for (size_t s = 0; s < segments.size(); ++s)
    for (int64_t j = 0; j < segments[s].n; j += kChunk) pieces.push_back({s, j, std::min(segments[s].n, j + kChunk)});
  const int64_t tasks = static_cast<int64_t>(pieces.size());
  std::vector<float> maxes(static_cast<size_t>(tasks * G)), sums(static_cast<size_t>(tasks * G)),
      outs(static_cast<size_t>(tasks * G * d));
#ifdef PIKV_X86_KERNELS
  const bool avx2 = vectorised && pikv::detail::cpu_has_avx2_fma_f16c() && (d == 64 || d == 128 || d == 256) && G <= 8;
#else
  const bool avx2 = false;
#endif
  const bool half = dtype == at::kHalf;
  at::parallel_for(0, tasks, 1, [&](int64_t t0, int64_t t1) {
    std::vector<float> scores(static_cast<size_t>(G * kChunk));
    for (int64_t task = t0; task < t1; ++task) {
      const Piece& piece = pieces[static_cast<size_t>(task)];
      const Segment& seg = segments[piece.segment];
      Task t;
      t.q = q.const_data_ptr<float>() + seg.bh * G * d;
      t.keys = seg.keys;
      t.values = seg.values;
      t.key_stride = seg.key_stride;
      t.value_stride = seg.value_stride;
      t.mask = seg.mask;
      t.mask_stride = seg.mask_stride;
      t.G = G;
      t.d = d;
      t.n = seg.n;
      t.j0 = piece.j0;
      t.j1 = piece.j1;
      t.scale = static_cast<float>(scale);
      t.max = maxes.data() + task * G;
      t.sum = sums.data() + task * G;
      t.out = outs.data() + task * G * d;
      t.scores = scores.data();
#ifdef PIKV_X86_KERNELS
      if (avx2) {
        switch (d) {
          case 64: half ? run_avx2<c10::Half, 8>(t) : run_avx2<c10::BFloat16, 8>(t); break;
          case 128: half ? run_avx2<c10::Half, 16>(t) : run_avx2<c10::BFloat16, 16>(t); break;
          default: half ? run_avx2<c10::Half, 32>(t) : run_avx2<c10::BFloat16, 32>(t); break;
        }
        continue;
      }
#endif
      half ? run_scalar<c10::Half>(t) : run_scalar<c10::BFloat16>(t);
    }
  });
  // Combine the tasks of every (b, h) and query head: rescale each to the common maximum.
  std::vector<std::vector<int64_t>> of_bh(static_cast<size_t>(BH));
  for (int64_t task = 0; task < tasks; ++task)
    of_bh[static_cast<size_t>(segments[pieces[static_cast<size_t>(task)].segment].bh)].push_back(task);
  at::Tensor out = at::zeros({BH, G, d}, q.options());
  float* o = out.data_ptr<float>();
  const float neg_inf = -std::numeric_limits<float>::infinity();
  for (int64_t bh = 0; bh < BH; ++bh) {
    for (int64_t g = 0; g < G; ++g) {
      float top = neg_inf;
      for (int64_t task : of_bh[static_cast<size_t>(bh)]) top = std::max(top, maxes[static_cast<size_t>(task * G + g)]);
      float* dst = o + (bh * G + g) * d;
      float total = 0.f;
      for (int64_t task : of_bh[static_cast<size_t>(bh)]) {
        const size_t i = static_cast<size_t>(task * G + g);
        if (maxes[i] == neg_inf) continue;
        const float w = std::exp(maxes[i] - top);
        total += w * sums[i];
        const float* src = outs.data() + i * static_cast<size_t>(d);
        for (int64_t k = 0; k < d; ++k) dst[k] += w * src[k];
      }
      // A head with nothing to attend to outputs zeros (callers' masks never leave a head empty).
      if (total > 0.f)
        for (int64_t k = 0; k < d; ++k) dst[k] /= total;
    }
  }
  return out;
}

inline void check_operands(const at::Tensor& queries, const at::Tensor& keys, const at::Tensor& values, int64_t d) {
  PIKV_CHECK(keys.scalar_type() == values.scalar_type() &&
                 (keys.scalar_type() == at::kHalf || keys.scalar_type() == at::kBFloat16) &&
                 queries.scalar_type() == at::kFloat && queries.dim() == 4 && queries.size(3) == d &&
                 keys.size(-1) == d && values.size(-1) == d && keys.stride(-1) == 1 && values.stride(-1) == 1,
             "half-precision decode attention: queries must be float32 [B, Hkv, G, d] and keys/values float16 or "
             "bfloat16 with contiguous rows of d={}; got {} / {} / {}",
             d, queries.sizes(), keys.sizes(), values.sizes());
}

// queries float32 [B, Hkv, G, d]; keys / values [B, Hkv, n, d] float16 or bfloat16 (last dim
// contiguous); mask bool [B, Hkv, G, n] or undefined; scale the softmax scale -> float32 [B, Hkv, G, d].
// `vectorised` false runs the scalar reference.
inline at::Tensor attend(const at::Tensor& queries, const at::Tensor& keys, const at::Tensor& values,
                         const at::Tensor& mask, double scale, bool vectorised = true) {
  const int64_t B = keys.size(0), Hkv = keys.size(1), n = keys.size(2), d = keys.size(3), G = queries.size(2);
  check_operands(queries, keys, values, d);
  PIKV_CHECK(values.sizes() == keys.sizes() && queries.size(0) == B && queries.size(1) == Hkv,
             "half-precision decode attention: queries {} do not fit keys {} / values {}", queries.sizes(),
             keys.sizes(), values.sizes());
  const at::Tensor m = mask.defined() ? mask.expand({B, Hkv, G, n}).contiguous() : at::Tensor();
  const int64_t elem = keys.element_size();
  std::vector<Segment> segments;
  for (int64_t bh = 0; bh < B * Hkv; ++bh) {
    const int64_t b = bh / Hkv, h = bh % Hkv;
    segments.push_back({bh, static_cast<const char*>(keys.const_data_ptr()) + (b * keys.stride(0) + h * keys.stride(1)) * elem,
                        static_cast<const char*>(values.const_data_ptr()) + (b * values.stride(0) + h * values.stride(1)) * elem,
                        n, keys.stride(2), values.stride(2), m.defined() ? m.const_data_ptr<bool>() + bh * G * n : nullptr,
                        n});
  }
  return attend_segments(queries.contiguous().view({B * Hkv, G, d}), B * Hkv, segments, keys.scalar_type(), scale,
                         vectorised)
      .view({B, Hkv, G, d});
}

// One decoding query per head over a ragged (head-wise compressed) layer read in place, without the
// padded copy: each (b, h) attends to its packed prefix rows and to the dense suffix appended since.
// queries float32 [B, Hkv, G, d]; packed_keys / packed_values [sum(lengths), d] (rows of (b, h) back to
// back, row-major (b, h) order); lengths: B * Hkv counts; suffix_keys / suffix_values [B, Hkv, s, d] or
// undefined. Every stored token is visible (the caller checks there is no window or padding mask).
inline at::Tensor attend_ragged(const at::Tensor& queries, const at::Tensor& packed_keys, const at::Tensor& packed_values,
                                const std::vector<int64_t>& lengths, const at::Tensor& suffix_keys,
                                const at::Tensor& suffix_values, double scale, bool vectorised = true) {
  const int64_t B = queries.size(0), Hkv = queries.size(1), G = queries.size(2), d = queries.size(3);
  check_operands(queries, packed_keys, packed_values, d);
  const bool suffix = suffix_keys.defined() && suffix_keys.size(2) > 0;
  if (suffix) check_operands(queries, suffix_keys, suffix_values, d);
  PIKV_CHECK(static_cast<int64_t>(lengths.size()) == B * Hkv && packed_keys.dim() == 2 &&
                 packed_values.sizes() == packed_keys.sizes() &&
                 (!suffix || (suffix_keys.size(0) == B && suffix_keys.size(1) == Hkv &&
                              suffix_keys.scalar_type() == packed_keys.scalar_type())),
             "half-precision ragged decode attention: {} lengths, packed {} / {}, suffix {} do not fit queries {}",
             lengths.size(), packed_keys.sizes(), packed_values.sizes(), suffix ? suffix_keys.sizes() : at::IntArrayRef{},
             queries.sizes());
  const int64_t elem = packed_keys.element_size();
  const char* pk = static_cast<const char*>(packed_keys.const_data_ptr());
  const char* pv = static_cast<const char*>(packed_values.const_data_ptr());
  std::vector<Segment> segments;
  int64_t row = 0;
  for (int64_t bh = 0; bh < B * Hkv; ++bh) {
    const int64_t len = lengths[static_cast<size_t>(bh)];
    if (len > 0) {
      segments.push_back({bh, pk + row * packed_keys.stride(0) * elem, pv + row * packed_values.stride(0) * elem, len,
                          packed_keys.stride(0), packed_values.stride(0), nullptr, 0});
    }
    row += len;
    if (suffix) {
      const int64_t b = bh / Hkv, h = bh % Hkv;
      segments.push_back(
          {bh,
           static_cast<const char*>(suffix_keys.const_data_ptr()) + (b * suffix_keys.stride(0) + h * suffix_keys.stride(1)) * elem,
           static_cast<const char*>(suffix_values.const_data_ptr()) + (b * suffix_values.stride(0) + h * suffix_values.stride(1)) * elem,
           suffix_keys.size(2), suffix_keys.stride(2), suffix_values.stride(2), nullptr, 0});
    }
  }
  PIKV_CHECK(row == packed_keys.size(0), "half-precision ragged decode attention: lengths sum to {}, {} rows are packed",
             row, packed_keys.size(0));
  return attend_segments(queries.contiguous().view({B * Hkv, G, d}), B * Hkv, segments, packed_keys.scalar_type(),
                         scale, vectorised)
      .view({B, Hkv, G, d});
}

}  // namespace pikv::detail::half_attention
