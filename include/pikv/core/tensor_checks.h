#pragma once
// Shape and dtype checks with messages that name the tensor, the expected layout and what was found.
// All checks read only host-side metadata (sizes, dtype, device): no device synchronisation.

#include <ATen/core/Tensor.h>

#include <string>
#include <string_view>

namespace pikv {

// PyTorch's Python spelling: "float32", "bfloat16", "int64", ...
std::string dtype_name(at::ScalarType dtype);

// "[2, 4, 128, 64] float32 on cpu"
std::string describe_tensor(const at::Tensor& t);

// Throws pikv::Error unless `t` is defined and has exactly `layout_dims` dimensions.
// `what` names the tensor ("keys"), `layout` spells the expected layout ("[B, Hkv, n, d]").
void check_rank(const at::Tensor& t, int64_t layout_dims, std::string_view what, std::string_view layout);

// Throws unless `t` has a floating-point dtype (float32, float64, bfloat16, float16).
void check_floating(const at::Tensor& t, std::string_view what);

// Throws unless a.size(dim_a) == b.size(dim_b); names both tensors and the symbol (e.g. "B").
void check_same_size(const at::Tensor& a, int64_t dim_a, std::string_view what_a, const at::Tensor& b,
                     int64_t dim_b, std::string_view what_b, std::string_view symbol);

// Throws unless both tensors live on the same device.
void check_same_device(const at::Tensor& a, std::string_view what_a, const at::Tensor& b,
                       std::string_view what_b);

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/core/detail/tensor_checks-inl.h>
#endif
