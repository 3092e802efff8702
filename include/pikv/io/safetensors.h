#pragma once
// safetensors files: an 8-byte little-endian header length, a JSON header (name -> dtype, shape,
// data_offsets; optional "__metadata__" string map), then the raw little-endian data. Reading
// validates everything against the file before any tensor is touched: truncation, header length,
// JSON, dtypes, shapes, offsets outside the data or overlapping, sizes disagreeing with shapes. Every
// failure is a pikv::Error naming the file, the tensor and the problem.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace pikv::io {

class MappedFile;  // src/io/mapped_file.h

class SafetensorsFile {
 public:
  // Maps the file read-only and validates its header.
  static SafetensorsFile open(const std::string& path);

  const std::string& path() const { return path_; }
  std::vector<std::string> names() const;  // in file order of their data
  bool contains(const std::string& name) const;
  std::vector<int64_t> shape(const std::string& name) const;
  at::ScalarType dtype(const std::string& name) const;
  // A CPU tensor holding a copy of the named tensor's data. Throws if the name is missing.
  at::Tensor get(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  struct Entry {
    at::ScalarType dtype;
    std::vector<int64_t> shape;
    uint64_t begin, end;  // offsets into the data section
  };
  std::string path_;
  std::shared_ptr<const MappedFile> mapping_;
  const uint8_t* data_ = nullptr;  // start of the data section
  std::map<std::string, Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

// Writes tensors (any device; copied to the CPU, made contiguous) in the order given. Throws for
// duplicate names or unsupported dtypes.
void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace pikv::io

#ifdef PIKV_HEADER_ONLY
#include <pikv/io/detail/safetensors-inl.h>
#endif
