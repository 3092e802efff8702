#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/io/files.h>
#include <pikv/io/npy.h>

#include <ATen/ATen.h>

#include <cstring>
#include <string>
#include <vector>

namespace pikv::io {
namespace detail {

struct NpyDtype {
  const char* descr;
  at::ScalarType type;
};
PIKV_INLINE constexpr NpyDtype kNpyDtypes[] = {
    {"<f8", at::kDouble}, {"<f4", at::kFloat}, {"<f2", at::kHalf}, {"<i8", at::kLong}, {"<i4", at::kInt},
    {"<i2", at::kShort},  {"|i1", at::kChar},  {"|u1", at::kByte}, {"|b1", at::kBool},
};

// The value of 'key' in the header's dict literal: the text after "'key':" up to the matching end.
PIKV_INLINE std::string npy_field(const std::string& header, const std::string& key, const std::string& path) {
  const std::string tag = "'" + key + "':";
  const size_t at = header.find(tag);
  PIKV_CHECK(at != std::string::npos, ".npy file '{}': its header has no '{}' ({})", path, key, header);
  size_t b = at + tag.size();
  while (b < header.size() && header[b] == ' ') ++b;
  size_t e = b;
  if (e < header.size() && (header[e] == '(' || header[e] == '\'')) {
    const char close = header[e] == '(' ? ')' : '\'';
    e = header.find(close, e + 1);
    PIKV_CHECK(e != std::string::npos, ".npy file '{}': unterminated '{}' in its header", path, key);
    ++e;
  } else {
    while (e < header.size() && header[e] != ',' && header[e] != '}') ++e;
  }
  return header.substr(b, e - b);
}

}  // namespace detail

PIKV_INLINE at::Tensor read_npy(const std::string& path) {
  // Curves and tables are small; 4 GiB bounds what a corrupted shape could make us allocate.
  const std::string bytes = read_text_file(path, ".npy array", 4ull << 30);
  PIKV_CHECK(bytes.size() >= 10 && std::memcmp(bytes.data(), "\x93NUMPY", 6) == 0,
             "'{}' is not a .npy file (no \\x93NUMPY magic)", path);
  const int major = static_cast<unsigned char>(bytes[6]);
  PIKV_CHECK(major >= 1 && major <= 3, ".npy file '{}': format version {} is not supported (1-3)", path, major);
  uint64_t header_len = 0, offset = 0;
  if (major == 1) {
    header_len = static_cast<unsigned char>(bytes[8]) | (static_cast<uint64_t>(static_cast<unsigned char>(bytes[9])) << 8);
    offset = 10;
  } else {
    PIKV_CHECK(bytes.size() >= 12, ".npy file '{}' is truncated in its header", path);
    for (int i = 0; i < 4; ++i) header_len |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[8 + i])) << (8 * i);
    offset = 12;
  }
  PIKV_CHECK(offset + header_len <= bytes.size(), ".npy file '{}' is truncated: its header claims {} bytes, the file has {}",
             path, header_len, bytes.size() - offset);
  const std::string header = bytes.substr(offset, header_len);
  offset += header_len;

  std::string descr = detail::npy_field(header, "descr", path);
  PIKV_CHECK(descr.size() >= 2 && descr.front() == '\'' && descr.back() == '\'', ".npy file '{}': descr {} is not a "
             "plain dtype", path, descr);
  descr = descr.substr(1, descr.size() - 2);
  if (descr == "<u1" || descr == "<i1" || descr == "<b1") descr[0] = '|';
  at::ScalarType type = at::kFloat;
  bool known = false;
  for (const auto& d : detail::kNpyDtypes) {
    if (descr == d.descr) {
      type = d.type;
      known = true;
    }
  }
  PIKV_CHECK(known, ".npy file '{}': dtype '{}' is not supported (little-endian floats, ints, uint8 and bool)", path,
             descr);
  const std::string fortran = detail::npy_field(header, "fortran_order", path);
  PIKV_CHECK(fortran == "False", ".npy file '{}': Fortran-ordered arrays are not supported (save it C-ordered)", path);

  const std::string shape_text = detail::npy_field(header, "shape", path);
  PIKV_CHECK(shape_text.size() >= 2 && shape_text.front() == '(', ".npy file '{}': shape {} is not a tuple", path,
             shape_text);
  std::vector<int64_t> shape;
  int64_t numel = 1;
  for (size_t i = 1; i + 1 < shape_text.size();) {
    while (i + 1 < shape_text.size() && (shape_text[i] == ' ' || shape_text[i] == ',')) ++i;
    if (i + 1 >= shape_text.size()) break;
    size_t used = 0;
    long long v = -1;
    try {
      v = std::stoll(shape_text.substr(i), &used);
    } catch (const std::exception&) {
      PIKV_FAIL(".npy file '{}': shape {} is not a tuple of sizes", path, shape_text);
    }
    PIKV_CHECK(v >= 0 && checked_mul(numel, static_cast<int64_t>(v), &numel), ".npy file '{}': shape {} is absurd",
               path, shape_text);
    shape.push_back(v);
    i += used;
  }
  const uint64_t item = at::elementSize(type);
  uint64_t need = 0;
  PIKV_CHECK(checked_mul(static_cast<uint64_t>(numel), item, &need) && offset + need == bytes.size(),
             ".npy file '{}': shape {} of {} needs {} bytes of data, the file holds {}", path, shape_text, descr, need,
             bytes.size() - offset);
  at::Tensor out = at::empty(shape, at::TensorOptions().dtype(type));
  if (need > 0) std::memcpy(out.data_ptr(), bytes.data() + offset, need);
  return out;
}

PIKV_INLINE void write_npy(const std::string& path, const at::Tensor& array) {
  const at::Tensor a = array.detach().cpu().contiguous();
  const char* descr = nullptr;
  for (const auto& d : detail::kNpyDtypes) {
    if (d.type == a.scalar_type()) descr = d.descr;
  }
  PIKV_CHECK(descr != nullptr, "write_npy('{}'): dtype {} has no .npy form here", path, c10::toString(a.scalar_type()));
  // NumPy's own spelling: "(99, 30, 3)", "(5,)", "()".
  std::string shape = "(";
  for (int64_t i = 0; i < a.dim(); ++i) shape += (i > 0 ? ", " : "") + std::to_string(a.size(i));
  shape += a.dim() == 1 ? ",)" : ")";
  std::string header = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  // The data starts at a multiple of 64 bytes; the header ends with a newline.
  const size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::string out = "\x93NUMPY";
  out += static_cast<char>(1);
  out += static_cast<char>(0);
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>((header.size() >> 8) & 0xff);
  out += header;
  out.append(static_cast<const char*>(a.data_ptr()), a.numel() * a.element_size());
  write_file_atomically(path, out, ".npy array");
}

}  // namespace pikv::io
