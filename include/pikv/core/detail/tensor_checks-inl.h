#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/tensor_checks.h>

#include <ATen/ATen.h>

namespace pikv {

PIKV_INLINE std::string dtype_name(at::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat: return "float32";
    case at::kDouble: return "float64";
    case at::kHalf: return "float16";
    case at::kBFloat16: return "bfloat16";
    case at::kLong: return "int64";
    case at::kInt: return "int32";
    case at::kShort: return "int16";
    case at::kChar: return "int8";
    case at::kByte: return "uint8";
    case at::kBool: return "bool";
    default: return c10::toString(dtype);
  }
}

PIKV_INLINE std::string describe_tensor(const at::Tensor& t) {
  if (!t.defined()) return "an undefined tensor";
  return fmt::format("[{}] {} on {}", fmt::join(t.sizes(), ", "), dtype_name(t.scalar_type()),
                     t.device().str());
}

PIKV_INLINE void check_rank(const at::Tensor& t, int64_t layout_dims, std::string_view what, std::string_view layout) {
  PIKV_CHECK(t.defined(), "{} must be a tensor {}, got an undefined tensor", what, layout);
  PIKV_CHECK(t.dim() == layout_dims, "{} must be {} ({} dimensions), got {}", what, layout, layout_dims,
             describe_tensor(t));
}

PIKV_INLINE void check_floating(const at::Tensor& t, std::string_view what) {
  PIKV_CHECK(t.defined() && at::isFloatingType(t.scalar_type()),
             "{} must have a floating-point dtype (float32, float64, bfloat16, float16), got {}", what,
             describe_tensor(t));
}

PIKV_INLINE void check_same_size(const at::Tensor& a, int64_t dim_a, std::string_view what_a, const at::Tensor& b,
                     int64_t dim_b, std::string_view what_b, std::string_view symbol) {
  PIKV_CHECK(a.size(dim_a) == b.size(dim_b), "{} disagrees: {} has {}={} but {} has {}={}", symbol, what_a,
             symbol, a.size(dim_a), what_b, symbol, b.size(dim_b));
}

PIKV_INLINE void check_same_device(const at::Tensor& a, std::string_view what_a, const at::Tensor& b,
                       std::string_view what_b) {
  PIKV_CHECK(a.device() == b.device(), "{} is on {} but {} is on {}", what_a, a.device().str(), what_b,
             b.device().str());
}

}  // namespace pikv
