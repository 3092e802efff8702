#pragma once
// Linear layers that run on GGUF's quantized blocks (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K) on
// the CPU, so a quantized model streams its ~4.5-8.5 bits per weight per decoded token instead of the
// 32 of a dequantised copy: decoding is bound by reading the weights.
//
// Every supported type decodes, 32 values at a time, to small integers q with two coefficients per
// 16 values, w = a * q + c (Q4_1: a = d, c = m; Q5_0: a = d, c = -16 d; Q4_K: a = d * scale,
// c = -dmin * min; Q6_K: a = d * scale, c = -32 a; ...). A dot product with x is then a * sum(q x) + c * sum(x), and sum(x) per 16
// values is computed once per input row: the kernel never materialises w. The values it multiplies are
// exactly the dequantised weights, so results differ from dequantise-then-matmul only in summation
// order (no activation quantisation, unlike llama.cpp's integer dot products).
//
// Few input rows (decoding: batch x new tokens <= kQuantizedGemvRows) use the fused kernel, AVX2 with
// FMA and F16C where the CPU has them, else a scalar version of the same arithmetic. More rows (a
// prefill) dequantise the matrix into a float32 scratch once per call and use ATen's GEMM: the matrix
// is reused by every row, so its dequantisation costs little next to the multiplication.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

namespace pikv::ops {

// Rows of x at or below which quantized_linear runs the fused GEMV kernel.
constexpr int64_t kQuantizedGemvRows = 16;

// A weight matrix [rows, cols] (Linear's [out, in]) held as GGUF blocks: each row is cols / block
// values stored in row_bytes() bytes, rows back to back. Copies share `data`.
class QuantizedMatrix {
 public:
  QuantizedMatrix() = default;
  // Copies rows * cols values of ggml `type` from `src` (the tensor's raw bytes, rows back to back).
  // Throws pikv::Error naming `name` for a type the kernels lack or cols not a multiple of its block.
  static QuantizedMatrix from_raw(uint32_t type, int64_t rows, int64_t cols, const uint8_t* src,
                                  const std::string& name = "weight");
  // True for the ggml types the kernels run on.
  static bool supports(uint32_t type);

  bool defined() const { return data_.defined(); }
  uint32_t type() const { return type_; }
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  int64_t row_bytes() const { return row_bytes_; }
  int64_t nbytes() const { return rows_ * row_bytes_; }
  const uint8_t* row(int64_t r) const;
  // uint8 [rows, row_bytes] on the CPU.
  const at::Tensor& data() const { return data_; }

  // Rows [start, start + length) (a view sharing the bytes), and rows in the order of `index` (int64
  // [n], a copy): for fused projections and for undoing GGUF's interleaved RoPE row order.
  QuantizedMatrix narrow_rows(int64_t start, int64_t length) const;
  QuantizedMatrix index_rows(const at::Tensor& index) const;

  // float32 [rows, cols]: exactly io::dequantize of the blocks.
  at::Tensor dequantize() const;
  // float32 [..., cols]: the rows named by `ids` (int64 [...], each in [0, rows)), an embedding lookup.
  at::Tensor rows_at(const at::Tensor& ids) const;

 private:
  uint32_t type_ = 0;
  int64_t rows_ = 0, cols_ = 0, row_bytes_ = 0;
  at::Tensor data_;
};

// y = x W^T + bias. x float32 [..., cols] (CPU), bias float32 [rows] or undefined -> float32 [..., rows].
at::Tensor quantized_linear(const at::Tensor& x, const QuantizedMatrix& w, const at::Tensor& bias = {});

// Which kernel quantized_linear uses for few rows: "avx2" or "scalar" (the CPU's choice), or forced for
// tests with PIKV_QUANTIZED_KERNEL=scalar.
std::string quantized_kernel_name();

namespace detail {
// The fused kernel with the portable arithmetic, whatever the CPU has (tests compare the two).
at::Tensor quantized_linear_scalar(const at::Tensor& x, const QuantizedMatrix& w, const at::Tensor& bias = {});
}  // namespace detail

}  // namespace pikv::ops

#ifdef PIKV_HEADER_ONLY
#include <pikv/ops/detail/quantized_linear-inl.h>
#endif
