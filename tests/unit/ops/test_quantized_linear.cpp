// Quantized linear kernels (ops/quantized_linear.h) against the plain reference: io::dequantize of the
// same blocks, then a float64 matrix product. Blocks are random bytes with random finite f16 scales, so
// every nibble, sign and 6-bit scale pattern occurs.
#include <pikv/pikv.h>
#include <pikv/core/detail/half_decode_attention.h>

#include <gtest/gtest.h>

#include "helpers.h"

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
