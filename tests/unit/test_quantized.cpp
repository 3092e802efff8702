// Quantized linear kernels (ops/quantized_linear.h) against the plain reference: io::dequantize of the
// same blocks, then a float64 matrix product. Blocks are random bytes with random finite f16 scales, so
// every nibble, sign and 6-bit scale pattern occurs.
#include <pikv/pikv.h>

#include "helpers.h"

#include <pikv/core/detail/half_decode_attention.h>

#include <c10/util/Half.h>

#include <cstring>
#include <random>

using namespace pikv;
using ops::QuantizedMatrix;

namespace {

constexpr uint32_t type_id(io::GGMLType t) { return static_cast<uint32_t>(t); }

void put_half(uint8_t* p, float v) {
  const uint16_t bits = c10::Half(v).x;
  std::memcpy(p, &bits, 2);
}

// rows x cols values of `type` as raw GGUF bytes: random quants, scales drawn in [-scale, scale].
std::vector<uint8_t> random_blocks(io::GGMLType type, int64_t rows, int64_t cols, uint32_t seed, float scale = 0.05f) {
  struct Layout {
    int64_t values, bytes;
    std::vector<int> halves;  // byte offsets of f16 scales within a block
  };
  const Layout layout = type == io::GGMLType::Q8_0   ? Layout{32, 34, {0}}
                        : type == io::GGMLType::Q4_0 ? Layout{32, 18, {0}}
                        : type == io::GGMLType::Q4_1 ? Layout{32, 20, {0, 2}}
                        : type == io::GGMLType::Q5_0 ? Layout{32, 22, {0}}
                        : type == io::GGMLType::Q5_1 ? Layout{32, 24, {0, 2}}
                        : type == io::GGMLType::Q4_K ? Layout{256, 144, {0, 2}}
                        : type == io::GGMLType::Q5_K ? Layout{256, 176, {0, 2}}
                                                     : Layout{256, 210, {208}};
  const int64_t blocks = rows * cols / layout.values;
  std::vector<uint8_t> out(static_cast<size_t>(blocks * layout.bytes));
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> s(-scale, scale);
  for (auto& b : out) b = static_cast<uint8_t>(byte(rng));
  for (int64_t b = 0; b < blocks; ++b)
    for (int off : layout.halves) put_half(out.data() + b * layout.bytes + off, s(rng));
  return out;
}

at::Tensor reference(const at::Tensor& x, const QuantizedMatrix& w, const at::Tensor& bias) {
  at::Tensor dense = at::empty({w.rows(), w.cols()}, at::kFloat);
  io::dequantize(w.type(), w.data().contiguous().data_ptr<uint8_t>(), w.rows() * w.cols(), dense.data_ptr<float>());
  at::Tensor y = at::matmul(x.to(at::kDouble), dense.to(at::kDouble).t());
  if (bias.defined()) y = y + bias.to(at::kDouble);
  return y;
}

const std::vector<io::GGMLType> kTypes = {io::GGMLType::Q8_0, io::GGMLType::Q4_0, io::GGMLType::Q4_1,
                                          io::GGMLType::Q5_0, io::GGMLType::Q5_1, io::GGMLType::Q4_K,
                                          io::GGMLType::Q5_K, io::GGMLType::Q6_K};

}  // namespace

TEST(QuantizedLinear, EveryTypeMatchesTheDequantisedProductForEveryRowCount) {
  const int64_t rows = 67, cols = 512;  // rows not a multiple of any thread split
  for (io::GGMLType type : kTypes) {
    const auto raw = random_blocks(type, rows, cols, 7 + type_id(type));
    const QuantizedMatrix w = QuantizedMatrix::from_raw(type_id(type), rows, cols, raw.data(), "w");
    EXPECT_EQ(w.nbytes(), static_cast<int64_t>(raw.size()));
    const at::Tensor bias = test::randn({rows}, 3);
    // 1-6: the fused kernel's register tiles (1-4 rows, then a second pass); 16: its limit; 17 and 40:
    // the dequantise-and-GEMM path. A batch dimension too.
    for (int64_t m : {1, 2, 3, 4, 5, 6, 16, 17, 40}) {
      const at::Tensor x = test::randn({1, m, cols}, 11 + m);
      const at::Tensor want = reference(x, w, bias);
      for (const at::Tensor& got : {ops::quantized_linear(x, w, bias), ops::detail::quantized_linear_scalar(x, w, bias),
                                    ops::quantized_linear(x, w)}) {
        ASSERT_EQ(got.sizes(), (std::vector<int64_t>{1, m, rows}));
        ASSERT_EQ(got.scalar_type(), at::kFloat);
      }
      const double tol = 1e-5 * want.abs().max().item<double>();
      EXPECT_LT((ops::quantized_linear(x, w, bias).to(at::kDouble) - want).abs().max().item<double>(), tol)
          << io::ggml_type_name(type_id(type)) << " rows " << m << " kernel " << ops::quantized_kernel_name();
      EXPECT_LT((ops::detail::quantized_linear_scalar(x, w, bias).to(at::kDouble) - want).abs().max().item<double>(), tol)
          << io::ggml_type_name(type_id(type)) << " rows " << m << " (scalar)";
      EXPECT_LT((ops::quantized_linear(x, w).to(at::kDouble) - (want - bias.to(at::kDouble))).abs().max().item<double>(), tol)
          << io::ggml_type_name(type_id(type)) << " rows " << m << " without bias";
    }
  }
}

TEST(QuantizedLinear, DequantiseAndRowLookupsAreExactlyTheBlocksValues) {
  const int64_t rows = 20, cols = 256;
  for (io::GGMLType type : kTypes) {
    const auto raw = random_blocks(type, rows, cols, 100 + type_id(type), 2.0f);
    const QuantizedMatrix w = QuantizedMatrix::from_raw(type_id(type), rows, cols, raw.data());
    at::Tensor want = at::empty({rows, cols}, at::kFloat);
    io::dequantize(type_id(type), raw.data(), rows * cols, want.data_ptr<float>());
    // The vectorised decoder computes a * q + c with one FMA; io::dequantize rounds the product first.
    EXPECT_TRUE(at::allclose(w.dequantize(), want, 1e-6, 1e-6)) << io::ggml_type_name(type_id(type));
    const at::Tensor ids = at::tensor(std::vector<int64_t>{3, 0, 19, 3}).view({2, 2});
    const at::Tensor got = w.rows_at(ids);
    ASSERT_EQ(got.sizes(), (std::vector<int64_t>{2, 2, cols}));
    EXPECT_TRUE(at::equal(got.view({4, cols}), want.index_select(0, ids.view({4}))));
    // Row views and row permutations keep their rows' values.
    EXPECT_TRUE(at::allclose(w.narrow_rows(5, 7).dequantize(), want.narrow(0, 5, 7), 1e-6, 1e-6));
    const at::Tensor perm = at::randperm(rows, at::kLong);
    EXPECT_TRUE(at::allclose(w.index_rows(perm).dequantize(), want.index_select(0, perm), 1e-6, 1e-6));
    const at::Tensor x = test::randn({3, cols}, 5);
    EXPECT_TRUE(at::allclose(ops::quantized_linear(x, w.narrow_rows(5, 7)), ops::quantized_linear(x, w).narrow(1, 5, 7),
                             1e-5, 1e-5));
  }
}

TEST(QuantizedLinear, BadInputIsAClearError) {
  const auto raw = random_blocks(io::GGMLType::Q4_1, 4, 64, 1);
  EXPECT_PIKV_ERROR(QuantizedMatrix::from_raw(type_id(io::GGMLType::Q3_K), 4, 256, raw.data(), "blk.0.ffn_up.weight"),
                    "blk.0.ffn_up.weight", "Q3_K", "no quantized kernel");
  EXPECT_PIKV_ERROR(QuantizedMatrix::from_raw(type_id(io::GGMLType::Q4_K), 4, 64, raw.data(), "w"), "multiple of 256",
                    "[4, 64]");
  const QuantizedMatrix w = QuantizedMatrix::from_raw(type_id(io::GGMLType::Q4_1), 4, 64, raw.data());
  EXPECT_PIKV_ERROR(ops::quantized_linear(test::randn({2, 32}, 1), w), "float32 [..., 64]", "[2, 32]");
  EXPECT_PIKV_ERROR(ops::quantized_linear(test::randn({2, 64}, 1, at::kDouble), w), "float32 [..., 64]");
  EXPECT_PIKV_ERROR(ops::quantized_linear(test::randn({2, 64}, 1), w, test::randn({5}, 2)), "bias", "[4]");
  EXPECT_PIKV_ERROR(w.rows_at(at::tensor(std::vector<int64_t>{0, 4})), "row id 4", "[0, 4)");
  EXPECT_PIKV_ERROR(w.index_rows(at::tensor(std::vector<int64_t>{-1})), "[0, 4)", "[-1, -1]");
  EXPECT_PIKV_ERROR(w.narrow_rows(3, 2), "rows [3, 5)");
  EXPECT_PIKV_ERROR(ops::quantized_linear(test::randn({1, 64}, 1), QuantizedMatrix()), "empty");
}

// ---- the float16 / bfloat16 KV cache: one decoding query read against the stored width ----

TEST(HalfCacheAttention, DecodingMatchesFloat32AttentionOverTheSameValues) {
  // Against attend() over the float32 copy of the same stored values: only summation order differs.
  // Chunk boundaries (512 keys), GQA group sizes, head dims, masks from positions and windows.
  for (at::ScalarType dtype : {at::kHalf, at::kBFloat16}) {
    for (auto [H, Hkv, d] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{{9, 3, 64}, {4, 4, 128}, {8, 1, 64}, {6, 2, 48}}) {
      for (int64_t n : {1, 5, 512, 1100}) {
        SCOPED_TRACE(fmt::format("{} H={} Hkv={} d={} n={}", dtype_name(dtype), H, Hkv, d, n));
        const int64_t B = 2;
        const at::Tensor q = test::randn({B, H, 1, d}, 1);
        const at::Tensor k = test::randn({B, Hkv, n, d}, 2).to(dtype), v = test::randn({B, Hkv, n, d}, 3).to(dtype);
        const at::Tensor index = at::tensor(std::vector<int64_t>{n});
        AttentionParams p;
        KVView half{k, v, at::Tensor()}, wide{k.to(at::kFloat), v.to(at::kFloat), at::Tensor()};
        const at::Tensor got = attend(q, index, half, p).output, want = attend(q, index, wide, p).output;
        ASSERT_EQ(got.scalar_type(), at::kFloat);
        EXPECT_TRUE(at::allclose(got, want, 1e-4, 1e-5)) << (got - want).abs().max();
        // Stored positions with empty slots (-1) and a sliding window: the masked path.
        at::Tensor positions = at::arange(n, at::kLong).expand({B, Hkv, n}).clone();
        if (n > 3) positions.select(2, 1).fill_(-1);
        half.positions = wide.positions = positions;
        p.sliding_window = std::max<int64_t>(1, n / 2);
        const at::Tensor got_m = attend(q, index, half, p).output, want_m = attend(q, index, wide, p).output;
        EXPECT_TRUE(at::allclose(got_m, want_m, 1e-4, 1e-5)) << (got_m - want_m).abs().max();
        // The scalar reference of the same kernel.
        const int64_t G = H / Hkv;
        const at::Tensor scalar =
            pikv::detail::half_attention::attend(q.reshape({B, Hkv, G, d}), k, v, at::Tensor(), 1.0 / std::sqrt(double(d)), false);
        EXPECT_TRUE(at::allclose(scalar.reshape({B, H, 1, d}), want.squeeze(2).reshape({B, H, 1, d}), 1e-4, 1e-5));
      }
    }
  }
}

TEST(HalfCacheAttention, AModelWithAFloat16CacheStoresHalfTheBytesAndPressesKeepWorking) {
  // A synthetic float32 model whose cache is float16: prefill, a press, decoding; against the same
  // model with a float32 cache.
  const auto config = SyntheticModelOptions().num_layers(2).hidden_size(256).num_heads(4).num_kv_heads(2).head_dim(64);
  SyntheticAttentionModel wide(config), narrow(config);
  narrow.set_kv_dtype(at::kHalf);
  const at::Tensor x = test::randn({1, 40, 256}, 4);
  KnormPress pw(KnormOptions().compression_ratio(0.5)), pn(KnormOptions().compression_ratio(0.5));
  KVCache cw(2), cn(2);
  {
    PressGuard gw(wide, pw), gn(narrow, pn);
    wide.forward(x, cw);
    narrow.forward(x, cn);
  }
  EXPECT_EQ(cn.physical_length(0), 20);
  EXPECT_EQ(cn.keys(0).scalar_type(), at::kHalf);
  EXPECT_EQ(cn.bytes() * 2, cw.bytes());
  const at::Tensor next = test::randn({1, 1, 256}, 5);
  const at::Tensor hw = wide.forward(next, cw), hn = narrow.forward(next, cn);
  EXPECT_TRUE(at::allclose(hn, hw, 1e-2, 1e-2)) << (hn - hw).abs().max();
  EXPECT_PIKV_ERROR(narrow.set_kv_dtype(at::kInt), "KV cache dtype", "int");
}

TEST(HalfCacheAttention, RaggedLayersAreReadInPlace) {
  // A float16 layer compressed head-wise (per-head lengths 0 .. 1100, across 512-row chunks), then 5
  // tokens appended: the in-place read of packed heads + suffix against attention over the padded copy
  // in float32.
  const int64_t B = 2, Hkv = 3, G = 3, d = 64, n = 1200;
  KVCache cache(1);
  cache.append(0, test::randn({B, Hkv, n, d}, 1).to(at::kHalf), test::randn({B, Hkv, n, d}, 2).to(at::kHalf));
  const std::vector<int64_t> lens = {1100, 3, 0, 700, 512, 1};
  at::Tensor idx = at::full({B, Hkv, 1100}, -1, at::kLong);
  for (int64_t bh = 0; bh < B * Hkv; ++bh)
    idx.view({B * Hkv, 1100})[bh].narrow(0, 0, lens[bh]).copy_(std::get<0>(at::randperm(n, at::kLong).narrow(0, 0, lens[bh]).sort()));
  CompressedKV r;
  r.indices = idx;
  r.keys = cache.keys(0).gather(2, idx.clamp_min(0).unsqueeze(-1).expand({B, Hkv, 1100, d}));
  r.values = cache.values(0).gather(2, idx.clamp_min(0).unsqueeze(-1).expand({B, Hkv, 1100, d}));
  r.head_lengths = at::tensor(lens).view({B, Hkv});
  cache.apply(0, r);
  cache.append(0, test::randn({B, Hkv, 5, d}, 3).to(at::kHalf), test::randn({B, Hkv, 5, d}, 4).to(at::kHalf));
  ASSERT_TRUE(cache.is_ragged(0));

  const at::Tensor q = test::randn({B, Hkv, G, d}, 5);
  const double scale = 0.125;
  // The cache's view leaves a head-wise layer packed: attention reads it in place.
  const KVView view = cache.view(0);
  ASSERT_FALSE(view.keys.defined());
  ASSERT_NE(view.source, nullptr);
  const PackedKV* packed = view.source->packed();
  ASSERT_NE(packed, nullptr);
  const PackedKV& parts = *packed;
  const at::Tensor got = pikv::detail::half_attention::attend_ragged(q, parts.keys, parts.values, *parts.lengths,
                                                                     parts.suffix_keys, parts.suffix_values, scale);
  const KVCache::Padded padded = cache.padded(0);
  at::Tensor logits = at::matmul(q, padded.keys.to(at::kFloat).transpose(-1, -2)) * scale;
  logits = logits.masked_fill(padded.valid.unsqueeze(2).logical_not(), -std::numeric_limits<float>::infinity());
  const at::Tensor want = at::matmul(at::softmax(logits, -1), padded.values.to(at::kFloat));
  EXPECT_TRUE(at::allclose(got, want, 1e-4, 1e-5)) << (got - want).abs().max();
  const at::Tensor scalar = pikv::detail::half_attention::attend_ragged(
      q, parts.keys, parts.values, *parts.lengths, parts.suffix_keys, parts.suffix_values, scale, false);
  EXPECT_TRUE(at::allclose(scalar, want, 1e-4, 1e-5)) << (scalar - want).abs().max();
  // attend() over the view takes the same in-place path for one float32 decoding query (G query heads
  // per KV head as H = Hkv * G heads), and the padded path when a window asks for masks.
  const at::Tensor q4 = q.reshape({B, Hkv * G, 1, d});
  AttentionParams params;
  params.scale = scale;
  const at::Tensor via_view = attend(q4, at::full({1}, n + 5, at::kLong), view, params).output;
  EXPECT_TRUE(at::allclose(via_view, want.reshape({B, Hkv * G, 1, d}), 1e-4, 1e-5)) << (via_view - want.reshape({B, Hkv * G, 1, d})).abs().max();
  params.sliding_window = 1 << 20;  // sees everything, but asks for masks: the padded copy
  const at::Tensor padded_path = attend(q4, at::full({1}, n + 5, at::kLong), view, params).output;
  EXPECT_TRUE(at::allclose(padded_path, via_view, 1e-4, 1e-5)) << (padded_path - via_view).abs().max();
  EXPECT_PIKV_ERROR(KVCache(1).view(0), "is empty");
  // A dense layer's view is its stored tensors, with the cache as the source of positions.
  KVCache dense(1);
  dense.append(0, test::randn({1, 1, 4, d}, 6), test::randn({1, 1, 4, d}, 7));
  const KVView dv = dense.view(0);
  EXPECT_TRUE(dv.keys.is_same(dense.keys(0)));
  EXPECT_FALSE(dv.source->packed());
  EXPECT_FALSE(dv.source->positions().defined());  // tokens 0..3 in order
}
