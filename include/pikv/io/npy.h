#pragma once
// NumPy .npy files (format versions 1.0-3.0, little-endian, C order): what kvpress's LU-KV press loads
// its budget curves from (np.load, float64 [99, L, Hkv]) and what `pikv calibrate lukv` writes.

#include <ATen/ATen.h>

#include <string>

namespace pikv::io {

// The array in `path` as a CPU tensor of its own dtype (<f8, <f4, <f2, <i8, <i4, <i2, |i1, |u1, |b1).
// Throws pikv::Error naming the file for a missing or truncated file, a header that is not a .npy
// header, Fortran order, big-endian or object dtypes, and a shape whose size disagrees with the data.
[[nodiscard]] at::Tensor read_npy(const std::string& path);

// Writes `array` (any shape; float64/float32/float16/int64/int32/int16/int8/uint8/bool) as a version
// 1.0 .npy file in C order, atomically (io::write_file_atomically).
void write_npy(const std::string& path, const at::Tensor& array);

}  // namespace pikv::io

#ifdef PIKV_HEADER_ONLY
#include <pikv/io/detail/npy-inl.h>
#endif
