#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/io/files.h>
#include <pikv/io/gguf.h>

#include <pikv/io/detail/mapped_file.h>

#include <ATen/ATen.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>


#include <algorithm>
#include <cstring>
#include <limits>

namespace pikv::io {
namespace detail {

PIKV_INLINE constexpr uint64_t kMaxStringBytes = 1ull << 30;
PIKV_INLINE constexpr uint64_t kMaxArrayItems = 1ull << 32;
PIKV_INLINE constexpr uint64_t kMaxDim = 1ull << 40;
PIKV_INLINE constexpr uint64_t kMaxElements = 1ull << 48;  // far above any model, far below overflowing float32 bytes
PIKV_INLINE constexpr int64_t kMaxAlignment = 1 << 16;

struct TypeInfo {
  uint32_t id;
  const char* name;
  int64_t block;  // values per block
  int64_t bytes;  // bytes per block
  bool supported;
};

PIKV_INLINE constexpr TypeInfo kTypes[] = {
    {0, "F32", 1, 4, true},       {1, "F16", 1, 2, true},        {2, "Q4_0", 32, 18, true},
    {3, "Q4_1", 32, 20, true},    {6, "Q5_0", 32, 22, true},     {7, "Q5_1", 32, 24, true},
    {8, "Q8_0", 32, 34, true},    {9, "Q8_1", 32, 36, false},    {10, "Q2_K", 256, 84, false},
    {11, "Q3_K", 256, 110, false}, {12, "Q4_K", 256, 144, true}, {13, "Q5_K", 256, 176, true},
    {14, "Q6_K", 256, 210, true}, {15, "Q8_K", 256, 292, false}, {30, "BF16", 1, 2, true},
};

PIKV_INLINE const TypeInfo* type_info(uint32_t id) {
  for (const auto& t : kTypes)
    if (t.id == id) return &t;
  return nullptr;
}

PIKV_INLINE float f16(const uint8_t* p) {
  uint16_t bits;
  std::memcpy(&bits, p, 2);
  return static_cast<float>(c10::Half(bits, c10::Half::from_bits()));
}

// Cursor over the mapped header with bounds checks: every read names what was being read.
class Reader {
 public:
  Reader(const uint8_t* data, uint64_t size, const std::string& path) : p_(data), size_(size), path_(path) {}

  uint64_t pos() const { return pos_; }
  void need(uint64_t n, const char* what) {
    PIKV_CHECK(n <= size_ && pos_ <= size_ - n, "GGUF file '{}' is truncated: {} needs {} bytes at offset {}, the file has {}",
               path_, what, n, pos_, size_);
  }
  template <typename T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string string(const char* what) {
    const uint64_t n = read<uint64_t>(what);
    PIKV_CHECK(n <= kMaxStringBytes, "GGUF file '{}': {} claims a string of {} bytes", path_, what, n);
    need(n, what);
    std::string s(reinterpret_cast<const char*>(p_ + pos_), n);
    pos_ += n;
    return s;
  }

 private:
  const uint8_t* p_;
  uint64_t size_;
  uint64_t pos_ = 0;
  const std::string& path_;
};

enum ValueType : uint32_t { U8 = 0, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 };

PIKV_INLINE bool read_scalar(Reader& r, uint32_t type, int64_t* i, double* f, bool* b, const char* what) {
  switch (type) {
    case U8: *i = r.read<uint8_t>(what); return true;
    case I8: *i = r.read<int8_t>(what); return true;
    case U16: *i = r.read<uint16_t>(what); return true;
    case I16: *i = r.read<int16_t>(what); return true;
    case U32: *i = r.read<uint32_t>(what); return true;
    case I32: *i = r.read<int32_t>(what); return true;
    case U64: *i = static_cast<int64_t>(r.read<uint64_t>(what)); return true;
    case I64: *i = r.read<int64_t>(what); return true;
    case F32: *f = r.read<float>(what); return false;
    case F64: *f = r.read<double>(what); return false;
    case BOOL: *b = r.read<uint8_t>(what) != 0; return false;
    default: return false;
  }
}

PIKV_INLINE GGUFValue read_value(Reader& r, uint32_t type, const std::string& key, const std::string& path) {
  const char* what = "a metadata value";
  if (type == STRING) return r.string(what);
  if (type == ARRAY) {
    const uint32_t elem = r.read<uint32_t>(what);
    const uint64_t n = r.read<uint64_t>(what);
    PIKV_CHECK(n <= kMaxArrayItems, "GGUF file '{}': metadata '{}' claims an array of {} items", path, key, n);
    if (elem == STRING) {
      std::vector<std::string> out;
      out.reserve(static_cast<size_t>(std::min<uint64_t>(n, 1u << 20)));
      for (uint64_t k = 0; k < n; ++k) out.push_back(r.string(what));
      return out;
    }
    PIKV_CHECK(elem != ARRAY, "GGUF file '{}': metadata '{}' nests arrays, which is not supported", path, key);
    PIKV_CHECK(elem <= F64, "GGUF file '{}': metadata '{}' has unknown array element type {}", path, key, elem);
    std::vector<int64_t> ints;
    std::vector<double> floats;
    for (uint64_t k = 0; k < n; ++k) {
      int64_t i = 0;
      double f = 0;
      bool b = false;
      if (read_scalar(r, elem, &i, &f, &b, what)) {
        ints.push_back(i);
      } else if (elem == BOOL) {
        ints.push_back(b ? 1 : 0);
      } else {
        floats.push_back(f);
      }
    }
    if (elem == F32 || elem == F64) return floats;
    return ints;
  }
  PIKV_CHECK(type <= F64, "GGUF file '{}': metadata '{}' has unknown value type {}", path, key, type);
  int64_t i = 0;
  double f = 0;
  bool b = false;
  if (read_scalar(r, type, &i, &f, &b, what)) return i;
  if (type == BOOL) return b;
  return f;
}

}  // namespace detail

PIKV_INLINE std::string ggml_type_name(uint32_t type) {
  const detail::TypeInfo* t = detail::type_info(type);
  return t ? t->name : fmt::format("type {}", type);
}

PIKV_INLINE void dequantize(uint32_t type, const uint8_t* src, int64_t count, float* dst) {
  const detail::TypeInfo* info = detail::type_info(type);
  PIKV_CHECK(info != nullptr && info->supported, "cannot dequantise GGML {}", ggml_type_name(type));
  PIKV_CHECK(count >= 0 && count % info->block == 0, "{} values are not a whole number of {} blocks of {}", count, info->name,
             info->block);
  const int64_t blocks = count / info->block;
  switch (static_cast<GGMLType>(type)) {
    case GGMLType::F32: std::memcpy(dst, src, static_cast<size_t>(count) * 4); return;
    case GGMLType::F16:
      for (int64_t i = 0; i < count; ++i) dst[i] = detail::f16(src + 2 * i);
      return;
    case GGMLType::BF16:
      for (int64_t i = 0; i < count; ++i) {
        uint16_t bits;
        std::memcpy(&bits, src + 2 * i, 2);
        dst[i] = static_cast<float>(c10::BFloat16(bits, c10::BFloat16::from_bits()));
      }
      return;
    case GGMLType::Q8_0:  // {detail::f16 d; i8 q[32]}: q * d
      for (int64_t b = 0; b < blocks; ++b, src += 34, dst += 32) {
        const float d = detail::f16(src);
        for (int j = 0; j < 32; ++j) dst[j] = static_cast<float>(static_cast<int8_t>(src[2 + j])) * d;
      }
      return;
    case GGMLType::Q4_0:  // {detail::f16 d; u8 q[16]}: d * (nibble - 8); low nibbles first
      for (int64_t b = 0; b < blocks; ++b, src += 18, dst += 32) {
        const float d = detail::f16(src);
        for (int j = 0; j < 16; ++j) {
          dst[j] = d * static_cast<float>((src[2 + j] & 0x0F) - 8);
          dst[j + 16] = d * static_cast<float>((src[2 + j] >> 4) - 8);
        }
      }
      return;
    case GGMLType::Q4_1:  // {detail::f16 d; detail::f16 m; u8 q[16]}: d * nibble + m
      for (int64_t b = 0; b < blocks; ++b, src += 20, dst += 32) {
        const float d = detail::f16(src), m = detail::f16(src + 2);
        for (int j = 0; j < 16; ++j) {
          dst[j] = d * static_cast<float>(src[4 + j] & 0x0F) + m;
          dst[j + 16] = d * static_cast<float>(src[4 + j] >> 4) + m;
        }
      }
      return;
    case GGMLType::Q5_0:  // {detail::f16 d; u32 qh; u8 q[16]}: d * ((nibble | bit << 4) - 16); value j's bit is qh bit j
    case GGMLType::Q5_1: {  // {detail::f16 d; detail::f16 m; u32 qh; u8 q[16]}: d * (nibble | bit << 4) + m
      const bool q51 = static_cast<GGMLType>(type) == GGMLType::Q5_1;
      const int64_t size = q51 ? 24 : 22, head = q51 ? 4 : 2;
      for (int64_t b = 0; b < blocks; ++b, src += size, dst += 32) {
        const float d = detail::f16(src), m = q51 ? detail::f16(src + 2) : -16.f * d;
        uint32_t qh;
        std::memcpy(&qh, src + head, 4);
        const uint8_t* q = src + head + 4;
        for (int j = 0; j < 16; ++j) {
          dst[j] = d * static_cast<float>((q[j] & 0x0F) | (((qh >> j) & 1u) << 4)) + m;
          dst[j + 16] = d * static_cast<float>((q[j] >> 4) | (((qh >> (j + 16)) & 1u) << 4)) + m;
        }
      }
      return;
    }
    case GGMLType::Q4_K:  // {detail::f16 d; detail::f16 dmin; u8 scales[12]; u8 q[128]}, 8 sub-blocks of 32
    case GGMLType::Q5_K: {  // {detail::f16 d; detail::f16 dmin; u8 scales[12]; u8 qh[32]; u8 q[128]}: bit j of qh[l]
                            // is the fifth bit of value l of sub-block j
      const bool q5 = static_cast<GGMLType>(type) == GGMLType::Q5_K;
      const int64_t size = q5 ? 176 : 144;
      for (int64_t b = 0; b < blocks; ++b, src += size, dst += 256) {
        const float d = detail::f16(src), dmin = detail::f16(src + 2);
        const uint8_t* s = src + 4;
        const uint8_t* qh = src + 16;
        const uint8_t* q = src + (q5 ? 48 : 16);
        for (int j = 0; j < 8; ++j) {
          // 6-bit scale and min of sub-block j (ggml's get_scale_min_k4).
          uint8_t sc, mn;
          if (j < 4) {
            sc = s[j] & 63;
            mn = s[j + 4] & 63;
          } else {
            sc = static_cast<uint8_t>((s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4));
            mn = static_cast<uint8_t>((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
          }
          const float dj = d * static_cast<float>(sc), mj = dmin * static_cast<float>(mn);
          const uint8_t* qq = q + 32 * (j / 2);
          const int shift = (j % 2) * 4;
          for (int l = 0; l < 32; ++l) {
            const int high = q5 ? ((qh[l] >> j) & 1) << 4 : 0;
            dst[32 * j + l] = dj * static_cast<float>(((qq[l] >> shift) & 0x0F) | high) - mj;
          }
        }
      }
      return;
    }
    case GGMLType::Q6_K:  // {u8 ql[128]; u8 qh[64]; i8 scales[16]; detail::f16 d}
      for (int64_t b = 0; b < blocks; ++b, src += 210, dst += 256) {
        const uint8_t* ql = src;
        const uint8_t* qh = src + 128;
        const int8_t* sc = reinterpret_cast<const int8_t*>(src + 192);
        const float d = detail::f16(src + 208);
        for (int half = 0; half < 2; ++half) {
          float* y = dst + 128 * half;
          const uint8_t* l_ = ql + 64 * half;
          const uint8_t* h_ = qh + 32 * half;
          const int8_t* s_ = sc + 8 * half;
          for (int l = 0; l < 32; ++l) {
            const int is = l / 16;
            const int q1 = ((l_[l] & 0x0F) | (((h_[l] >> 0) & 3) << 4)) - 32;
            const int q2 = ((l_[l + 32] & 0x0F) | (((h_[l] >> 2) & 3) << 4)) - 32;
            const int q3 = ((l_[l] >> 4) | (((h_[l] >> 4) & 3) << 4)) - 32;
            const int q4 = ((l_[l + 32] >> 4) | (((h_[l] >> 6) & 3) << 4)) - 32;
            y[l] = d * static_cast<float>(s_[is]) * static_cast<float>(q1);
            y[l + 32] = d * static_cast<float>(s_[is + 2]) * static_cast<float>(q2);
            y[l + 64] = d * static_cast<float>(s_[is + 4]) * static_cast<float>(q3);
            y[l + 96] = d * static_cast<float>(s_[is + 6]) * static_cast<float>(q4);
          }
        }
      }
      return;
    default: PIKV_FAIL("cannot dequantise GGML {}", ggml_type_name(type));
  }
}

PIKV_INLINE GGUFFile GGUFFile::open(const std::string& path) {
  GGUFFile f;
  f.path_ = path;
  f.mapping_ = MappedFile::open(path, "GGUF");
  const uint64_t size = f.mapping_->size();
  PIKV_CHECK(size >= 24, "GGUF file '{}' is truncated: {} bytes, shorter than the 24-byte header", path, size);
  const uint8_t* bytes = f.mapping_->data();

  detail::Reader r(bytes, size, path);
  PIKV_CHECK(std::memcmp(bytes, "GGUF", 4) == 0, "'{}' is not a GGUF file (magic '{}')", path,
             std::string(reinterpret_cast<const char*>(bytes), 4));
  r.read<uint32_t>("the magic");
  f.version_ = r.read<uint32_t>("the version");
  PIKV_CHECK(f.version_ == 2 || f.version_ == 3, "GGUF file '{}' has version {}; versions 2 and 3 are supported", path,
             f.version_);
  const uint64_t n_tensors = r.read<uint64_t>("the tensor count");
  const uint64_t n_kv = r.read<uint64_t>("the metadata count");
  // Each entry needs at least a few bytes: counts larger than the file are corrupt, not huge.
  PIKV_CHECK(n_tensors <= size / 8 && n_kv <= size / 8,
             "GGUF file '{}' claims {} tensors and {} metadata entries, impossible in {} bytes", path, n_tensors, n_kv,
             size);
  for (uint64_t k = 0; k < n_kv; ++k) {
    const std::string key = r.string("a metadata key");
    const uint32_t type = r.read<uint32_t>("a metadata type");
    PIKV_CHECK(f.metadata_.emplace(key, detail::read_value(r, type, key, path)).second,
               "GGUF file '{}': metadata key '{}' appears twice", path, key);
  }
  for (uint64_t t = 0; t < n_tensors; ++t) {
    GGUFTensorInfo info;
    info.name = r.string("a tensor name");
    const uint32_t n_dims = r.read<uint32_t>("a tensor rank");
    PIKV_CHECK(n_dims >= 1 && n_dims <= 4, "GGUF file '{}': tensor '{}' has {} dimensions (1 to 4 allowed)", path,
               info.name, n_dims);
    uint64_t numel = 1, span = 1;  // span: product of the non-zero dimensions (the largest stride)
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t dim = r.read<uint64_t>("a tensor dimension");
      PIKV_CHECK(dim <= detail::kMaxDim && checked_mul(numel, dim, &numel) &&
                     checked_mul(span, std::max<uint64_t>(dim, 1), &span),
                 "GGUF file '{}': tensor '{}' has an impossible dimension {} (dimension {} of [{}{}])", path, info.name,
                 dim, d, fmt::join(info.dims, ", "), info.dims.empty() ? "" : ", ...");
      info.dims.push_back(static_cast<int64_t>(dim));
    }
    info.type = r.read<uint32_t>("a tensor type");
    info.offset = r.read<uint64_t>("a tensor offset");
    const detail::TypeInfo* ti = detail::type_info(info.type);
    PIKV_CHECK(ti != nullptr, "GGUF file '{}': tensor '{}' has unknown GGML type {}", path, info.name, info.type);
    PIKV_CHECK(info.dims[0] % ti->block == 0, "GGUF file '{}': tensor '{}' ({}) has a first dimension {} that is not a "
               "multiple of the block size {}", path, info.name, ti->name, info.dims[0], ti->block);
    // The byte count must not wrap around: a wrapped count would pass the bounds check below.
    PIKV_CHECK(numel <= detail::kMaxElements && span <= detail::kMaxElements &&
                   checked_mul(numel / static_cast<uint64_t>(ti->block), static_cast<uint64_t>(ti->bytes), &info.nbytes),
               "GGUF file '{}': tensor '{}' of dimensions [{}] ({}) spans {} elements, more than any file can hold", path,
               info.name, fmt::join(info.dims, ", "), ti->name, span);
    PIKV_CHECK(f.index_.emplace(info.name, f.tensors_.size()).second, "GGUF file '{}': tensor '{}' appears twice",
               path, info.name);
    f.tensors_.push_back(std::move(info));
  }
  // general.alignment (llama.cpp: a power of two, 32 when absent) decides where the data section
  // starts. A wrong value shifts every read, so it is cross-checked against the tensor layout below.
  const int64_t alignment_value = f.find_int("general.alignment").value_or(32);
  PIKV_CHECK(alignment_value >= 1 && alignment_value <= detail::kMaxAlignment && (alignment_value & (alignment_value - 1)) == 0,
             "GGUF file '{}': general.alignment {} is not a power of two in [1, {}]", path, alignment_value,
             detail::kMaxAlignment);
  const uint64_t alignment = static_cast<uint64_t>(alignment_value);
  auto align_up = [&](uint64_t x) { return (x + alignment - 1) / alignment * alignment; };  // x < 2^63 here
  // Vocabulary-only files end right after the header (no tensors, no padding).
  const uint64_t data_start = std::min<uint64_t>(align_up(r.pos()), size);
  PIKV_CHECK(f.tensors_.empty() || data_start < size || n_tensors == 0,
             "GGUF file '{}' is truncated: no data section after the header", path);
  f.data_ = bytes + data_start;
  f.data_size_ = size - data_start;
  std::vector<std::pair<uint64_t, size_t>> spans;
  for (size_t i = 0; i < f.tensors_.size(); ++i) {
    const auto& t = f.tensors_[i];
    PIKV_CHECK(t.offset % alignment == 0, "GGUF file '{}': tensor '{}' offset {} is not aligned to {}", path, t.name,
               t.offset, alignment);
    PIKV_CHECK(t.offset <= f.data_size_ && t.nbytes <= f.data_size_ - t.offset,
               "GGUF file '{}': tensor '{}' ({} bytes at offset {}) lies outside the {} data bytes (file truncated?)",
               path, t.name, t.nbytes, t.offset, f.data_size_);
    if (t.nbytes > 0) spans.emplace_back(t.offset, i);
  }
  std::sort(spans.begin(), spans.end());
  for (size_t i = 1; i < spans.size(); ++i) {
    const auto& prev = f.tensors_[spans[i - 1].second];
    PIKV_CHECK(spans[i].first >= prev.offset + prev.nbytes, "GGUF file '{}': tensors '{}' and '{}' overlap", path,
               prev.name, f.tensors_[spans[i].second].name);
  }
  // The layout every GGUF writer produces and llama.cpp insists on: tensors back to back in the order
  // of their infos, each padded to the alignment. A tensor whose type or dimensions were changed, or
  // an alignment other than the writer's, breaks it (and would read the wrong bytes).
  uint64_t expected = 0;
  for (const auto& t : f.tensors_) {
    PIKV_CHECK(t.offset == expected,
               "GGUF file '{}': tensor '{}' ({} [{}], {} bytes) starts at data offset {}, but the tensors before it "
               "end at {} (with general.alignment {}): a tensor type, dimension or the alignment is wrong",
               path, t.name, ggml_type_name(t.type), fmt::join(t.dims, ", "), t.nbytes, t.offset, expected, alignment);
    expected = align_up(t.offset + t.nbytes);
  }
  if (!f.tensors_.empty()) {
    const auto& last = f.tensors_.back();
    const uint64_t end = last.offset + last.nbytes;
    PIKV_CHECK(f.data_size_ - end < alignment,
               "GGUF file '{}': {} bytes follow the last tensor '{}', more than the padding general.alignment {} "
               "allows: the alignment (or a tensor size) is wrong and the data would be read from the wrong place",
               path, f.data_size_ - end, last.name, alignment);
  }
  return f;
}

PIKV_INLINE const GGUFTensorInfo& GGUFFile::tensor(const std::string& name) const {
  auto it = index_.find(name);
  PIKV_CHECK(it != index_.end(), "GGUF file '{}' has no tensor '{}'", path_, name);
  return tensors_[it->second];
}

PIKV_INLINE const uint8_t* GGUFFile::raw(const std::string& name) const { return data_ + tensor(name).offset; }

PIKV_INLINE at::Tensor GGUFFile::load(const std::string& name) const {
  const GGUFTensorInfo& t = tensor(name);
  const detail::TypeInfo* ti = detail::type_info(t.type);
  PIKV_CHECK(ti->supported, "GGUF file '{}': tensor '{}' has GGML type {}, which PiKVPress cannot dequantise "
             "(supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K)", path_, t.name, ti->name);
  at::Tensor out = at::empty(t.shape(), at::kFloat);
  dequantize(t.type, data_ + t.offset, out.numel(), out.data_ptr<float>());
  return out;
}

namespace detail {

// First index i < n whose bits (read at `stride`-byte steps from p, `Bits` wide, little-endian)
// have every exponent bit of `mask` set: NaN or infinity. Vectorisable: the common case (none) is
// one pass of OR-reductions.
template <typename Bits>
PIKV_INLINE int64_t first_all_ones(const uint8_t* p, int64_t n, size_t stride, Bits mask) {
  constexpr int64_t kChunk = 2048;
  Bits buf[kChunk];
  for (int64_t start = 0; start < n; start += kChunk) {
    const int64_t len = std::min<int64_t>(kChunk, n - start);
    const uint8_t* q = p + static_cast<size_t>(start) * stride;
    if (stride == sizeof(Bits)) {
      std::memcpy(buf, q, static_cast<size_t>(len) * sizeof(Bits));
    } else {
      for (int64_t i = 0; i < len; ++i) std::memcpy(&buf[i], q + static_cast<size_t>(i) * stride, sizeof(Bits));
    }
    Bits any = 0;
    for (int64_t i = 0; i < len; ++i) any |= static_cast<Bits>((buf[i] & mask) == mask);
    if (any == 0) continue;
    for (int64_t i = 0; i < len; ++i)
      if ((buf[i] & mask) == mask) return start + i;
  }
  return -1;
}

}  // namespace detail

PIKV_INLINE int64_t GGUFFile::first_non_finite(const std::string& name) const {
  const GGUFTensorInfo& t = tensor(name);
  const detail::TypeInfo* ti = detail::type_info(t.type);
  const uint8_t* p = data_ + t.offset;
  const int64_t blocks = static_cast<int64_t>(t.nbytes / static_cast<uint64_t>(ti->bytes));
  constexpr uint16_t kHalfMask = 0x7C00;
  // Quantised blocks: values are (small integer) x f16 scale (+ f16 offset), so a block holds a NaN or
  // infinity exactly when one of its f16 scales does, and then every value of the block does.
  auto scales = [&](std::initializer_list<size_t> at) -> int64_t {
    int64_t first = -1;
    for (size_t off : at) {
      const int64_t b = detail::first_all_ones<uint16_t>(p + off, blocks, static_cast<size_t>(ti->bytes), kHalfMask);
      if (b >= 0 && (first < 0 || b < first)) first = b;
    }
    return first < 0 ? -1 : first * ti->block;
  };
  switch (static_cast<GGMLType>(t.type)) {
    case GGMLType::F32: return detail::first_all_ones<uint32_t>(p, blocks, 4, 0x7F800000u);
    case GGMLType::F16: return detail::first_all_ones<uint16_t>(p, blocks, 2, kHalfMask);
    case GGMLType::BF16: return detail::first_all_ones<uint16_t>(p, blocks, 2, uint16_t{0x7F80});
    case GGMLType::Q8_0:
    case GGMLType::Q4_0:
    case GGMLType::Q5_0: return scales({0});
    case GGMLType::Q4_1:
    case GGMLType::Q5_1:
    case GGMLType::Q4_K:
    case GGMLType::Q5_K: return scales({0, 2});
    case GGMLType::Q6_K: return scales({208});
    default:
      PIKV_FAIL("GGUF file '{}': tensor '{}' has GGML type {}, which PiKVPress cannot dequantise", path_, t.name,
                ti->name);
  }
}

PIKV_INLINE std::optional<int64_t> GGUFFile::find_int(const std::string& key) const {
  auto it = metadata_.find(key);
  if (it == metadata_.end()) return std::nullopt;
  if (const auto* v = std::get_if<int64_t>(&it->second)) return *v;
  if (const auto* b = std::get_if<bool>(&it->second)) return *b ? 1 : 0;
  PIKV_FAIL("GGUF file '{}': metadata '{}' is not an integer", path_, key);
}

PIKV_INLINE std::optional<double> GGUFFile::find_float(const std::string& key) const {
  auto it = metadata_.find(key);
  if (it == metadata_.end()) return std::nullopt;
  if (const auto* v = std::get_if<double>(&it->second)) return *v;
  if (const auto* v = std::get_if<int64_t>(&it->second)) return static_cast<double>(*v);
  PIKV_FAIL("GGUF file '{}': metadata '{}' is not a number", path_, key);
}

PIKV_INLINE int64_t GGUFFile::get_int(const std::string& key) const {
  auto v = find_int(key);
  PIKV_CHECK(v.has_value(), "GGUF file '{}' lacks metadata '{}'", path_, key);
  return *v;
}

PIKV_INLINE double GGUFFile::get_float(const std::string& key) const {
  auto v = find_float(key);
  PIKV_CHECK(v.has_value(), "GGUF file '{}' lacks metadata '{}'", path_, key);
  return *v;
}

PIKV_INLINE std::string GGUFFile::get_string(const std::string& key) const {
  auto it = metadata_.find(key);
  PIKV_CHECK(it != metadata_.end(), "GGUF file '{}' lacks metadata '{}'", path_, key);
  const auto* s = std::get_if<std::string>(&it->second);
  PIKV_CHECK(s != nullptr, "GGUF file '{}': metadata '{}' is not a string", path_, key);
  return *s;
}

}  // namespace pikv::io
