#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/tensor_checks.h>
#include <pikv/io/files.h>
#include <pikv/io/safetensors.h>

#include <pikv/io/detail/mapped_file.h>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>


#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>

namespace pikv::io {
namespace detail {

PIKV_INLINE constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // the format's own limit (100 MB)

struct DtypeInfo {
  const char* name;
  at::ScalarType type;
};
PIKV_INLINE constexpr DtypeInfo kDtypes[] = {
    {"F64", at::kDouble}, {"F32", at::kFloat},  {"F16", at::kHalf},  {"BF16", at::kBFloat16}, {"I64", at::kLong},
    {"I32", at::kInt},    {"I16", at::kShort},  {"I8", at::kChar},   {"U8", at::kByte},       {"BOOL", at::kBool},
};

PIKV_INLINE const char* safetensors_dtype(at::ScalarType t) {
  for (const auto& d : kDtypes)
    if (d.type == t) return d.name;
  return nullptr;
}

}  // namespace detail

PIKV_INLINE SafetensorsFile SafetensorsFile::open(const std::string& path) {
  SafetensorsFile f;
  f.path_ = path;
  f.mapping_ = MappedFile::open(path, "safetensors");
  const uint64_t size = f.mapping_->size();
  PIKV_CHECK(size >= 8, "safetensors file '{}' is truncated: {} bytes, but the format starts with an 8-byte header "
             "length", path, size);
  const uint8_t* bytes = f.mapping_->data();

  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];  // little-endian u64
  PIKV_CHECK(header_len <= size - 8,
             "safetensors file '{}': header length {} is larger than the {} bytes that follow it (file truncated or "
             "not safetensors)",
             path, header_len, size - 8);
  PIKV_CHECK(header_len <= detail::kMaxHeaderBytes, "safetensors file '{}': header length {} exceeds the 100 MB limit", path,
             header_len);
  const uint64_t data_size = size - 8 - header_len;
  f.data_ = bytes + 8 + header_len;

  nlohmann::json header;
  try {
    header = nlohmann::json::parse(reinterpret_cast<const char*>(bytes + 8),
                                   reinterpret_cast<const char*>(bytes + 8 + header_len));
  } catch (const nlohmann::json::exception& e) {
    PIKV_FAIL("safetensors file '{}': the header is not valid JSON ({})", path, e.what());
  }
  PIKV_CHECK(header.is_object(), "safetensors file '{}': the header must be a JSON object, got {}", path,
             header.type_name());

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& v = it.value();
    if (name == "__metadata__") {
      PIKV_CHECK(v.is_object(), "safetensors file '{}': __metadata__ must be an object of strings", path);
      for (auto m = v.begin(); m != v.end(); ++m) {
        PIKV_CHECK(m.value().is_string(), "safetensors file '{}': __metadata__ entry '{}' must be a string", path,
                   m.key());
        f.metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    PIKV_CHECK(v.is_object() && v.contains("dtype") && v.contains("shape") && v.contains("data_offsets"),
               "safetensors file '{}': tensor '{}' must have dtype, shape and data_offsets", path, name);
    PIKV_CHECK(v["dtype"].is_string(), "safetensors file '{}': tensor '{}' has a non-string dtype", path, name);
    const std::string dtype = v["dtype"].get<std::string>();
    const detail::DtypeInfo* info = nullptr;
    for (const auto& d : detail::kDtypes)
      if (dtype == d.name) info = &d;
    PIKV_CHECK(info != nullptr, "safetensors file '{}': tensor '{}' has unsupported dtype '{}'", path, name, dtype);
    Entry e{info->type, {}, 0, 0};
    PIKV_CHECK(v["shape"].is_array(), "safetensors file '{}': tensor '{}' shape must be an array", path, name);
    uint64_t numel = 1;
    int64_t span = 1;  // product of the non-zero dimensions: the largest stride must fit int64
    for (const auto& dim : v["shape"]) {
      PIKV_CHECK(dim.is_number_integer() && dim.get<int64_t>() >= 0,
                 "safetensors file '{}': tensor '{}' has an invalid dimension {}", path, name, dim.dump());
      const uint64_t d = dim.get<uint64_t>();
      PIKV_CHECK(checked_mul(numel, d, &numel) && (d == 0 || checked_mul(span, static_cast<int64_t>(d), &span)),
                 "safetensors file '{}': tensor '{}' shape {} overflows", path, name, v["shape"].dump());
      e.shape.push_back(static_cast<int64_t>(d));
    }
    const auto& off = v["data_offsets"];
    PIKV_CHECK(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() && off[1].is_number_unsigned(),
               "safetensors file '{}': tensor '{}' data_offsets must be two non-negative integers, got {}", path, name,
               off.dump());
    e.begin = off[0].get<uint64_t>();
    e.end = off[1].get<uint64_t>();
    PIKV_CHECK(e.begin <= e.end && e.end <= data_size,
               "safetensors file '{}': tensor '{}' data_offsets [{}, {}] lie outside the {} data bytes", path, name,
               e.begin, e.end, data_size);
    const uint64_t elem = at::elementSize(e.dtype);
    uint64_t nbytes = 0;
    PIKV_CHECK(checked_mul(numel, elem, &nbytes), "safetensors file '{}': tensor '{}' of shape [{}] {} overflows a "
               "64-bit byte count", path, name, fmt::join(e.shape, ", "), dtype);
    PIKV_CHECK(nbytes == e.end - e.begin,
               "safetensors file '{}': tensor '{}' of shape [{}] {} needs {} bytes but data_offsets span {}", path,
               name, fmt::join(e.shape, ", "), dtype, nbytes, e.end - e.begin);
    f.entries_.emplace(name, std::move(e));
  }

  std::vector<std::pair<uint64_t, std::string>> spans;
  for (const auto& [name, e] : f.entries_)
    if (e.end > e.begin) spans.emplace_back(e.begin, name);
  std::sort(spans.begin(), spans.end());
  for (size_t i = 1; i < spans.size(); ++i) {
    const Entry& prev = f.entries_.at(spans[i - 1].second);
    PIKV_CHECK(spans[i].first >= prev.end, "safetensors file '{}': tensors '{}' and '{}' overlap in the data section",
               path, spans[i - 1].second, spans[i].second);
  }
  return f;
}

PIKV_INLINE std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::pair<uint64_t, std::string>> order;
  for (const auto& [name, e] : entries_) order.emplace_back(e.begin, name);
  std::sort(order.begin(), order.end());
  std::vector<std::string> out;
  for (auto& o : order) out.push_back(std::move(o.second));
  return out;
}

PIKV_INLINE bool SafetensorsFile::contains(const std::string& name) const { return entries_.count(name) != 0; }

PIKV_INLINE std::vector<int64_t> SafetensorsFile::shape(const std::string& name) const {
  auto it = entries_.find(name);
  PIKV_CHECK(it != entries_.end(), "safetensors file '{}' has no tensor '{}'", path_, name);
  return it->second.shape;
}

PIKV_INLINE at::ScalarType SafetensorsFile::dtype(const std::string& name) const {
  auto it = entries_.find(name);
  PIKV_CHECK(it != entries_.end(), "safetensors file '{}' has no tensor '{}'", path_, name);
  return it->second.dtype;
}

PIKV_INLINE at::Tensor SafetensorsFile::get(const std::string& name) const {
  auto it = entries_.find(name);
  PIKV_CHECK(it != entries_.end(), "safetensors file '{}' has no tensor '{}'", path_, name);
  const Entry& e = it->second;
  at::Tensor t = at::empty(e.shape, at::TensorOptions().dtype(e.dtype));
  if (e.end > e.begin) std::memcpy(t.data_ptr(), data_ + e.begin, e.end - e.begin);
  return t;
}

PIKV_INLINE void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header;
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::set<std::string> seen;
  std::vector<at::Tensor> data;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    PIKV_CHECK(name != "__metadata__" && seen.insert(name).second,
               "save_safetensors('{}'): duplicate or reserved tensor name '{}'", path, name);
    PIKV_CHECK(tensor.defined(), "save_safetensors('{}'): tensor '{}' is undefined", path, name);
    const char* dtype = detail::safetensors_dtype(tensor.scalar_type());
    PIKV_CHECK(dtype != nullptr, "save_safetensors('{}'): tensor '{}' has unsupported dtype {}", path, name,
               pikv::dtype_name(tensor.scalar_type()));
    at::Tensor t = tensor.detach().to(at::kCPU).contiguous();
    const uint64_t nbytes = t.numel() * t.element_size();
    header[name] = {{"dtype", dtype}, {"shape", t.sizes().vec()}, {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
    data.push_back(std::move(t));
  }
  std::string json = header.dump();
  json.append((8 - json.size() % 8) % 8, ' ');  // keep the data section 8-byte aligned
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  PIKV_CHECK(out.good(), "cannot write safetensors file '{}': {}", path, std::strerror(errno));
  uint8_t len[8];
  uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
  out.write(reinterpret_cast<const char*>(len), 8);
  out.write(json.data(), static_cast<std::streamsize>(json.size()));
  for (const at::Tensor& t : data)
    out.write(static_cast<const char*>(t.data_ptr()), static_cast<std::streamsize>(t.numel() * t.element_size()));
  PIKV_CHECK(out.good(), "writing safetensors file '{}' failed", path);
}

}  // namespace pikv::io
