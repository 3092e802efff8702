#pragma once
// Writing new tokens into fixed-capacity buffers (keys/values [B, Hkv, C, d], slot map int64
// [B, Hkv, C]) after each head's stored count: what KVCache's fixed layout and the cached_attention
// operator's unbound path (buffers without a KVCache) both do. Internal.

#include <ATen/ATen.h>

#include <cstdint>

namespace pikv::detail {

// keys/values [B, Hkv, T, d] and positions int64 [B, Hkv, T] go to slots [count, count + T) of each
// head; counts int64 [B, Hkv] on the buffers' device, lo/hi its minimum and maximum (equal counts take
// one contiguous write). The caller checked hi + T <= C.
inline void write_fixed_tokens(const at::Tensor& buf_keys, const at::Tensor& buf_values, const at::Tensor& slots,
                               const at::Tensor& counts, int64_t lo, int64_t hi, const at::Tensor& keys,
                               const at::Tensor& values, const at::Tensor& positions) {
  const int64_t B = keys.size(0), Hkv = keys.size(1), T = keys.size(2), d = keys.size(3);
  if (lo == hi) {
    buf_keys.narrow(2, hi, T).copy_(keys);
    buf_values.narrow(2, hi, T).copy_(values);
    slots.narrow(2, hi, T).copy_(positions);
  } else {
    at::Tensor index = counts.view({B, Hkv, 1}) + at::arange(T, counts.options());  // [B, Hkv, T]
    at::Tensor index4 = index.unsqueeze(-1).expand({B, Hkv, T, d});
    buf_keys.scatter_(2, index4, keys);
    buf_values.scatter_(2, index4, values);
    slots.scatter_(2, index, positions);
  }
}

}  // namespace pikv::detail
