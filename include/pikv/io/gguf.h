#pragma once
// GGUF files (llama.cpp's format): header "GGUF", version 2 or 3, typed metadata, tensor infos
// (dimensions fastest first) and aligned data. Reading validates the whole header against the file
// before any tensor is touched: counts and lengths against the file size, byte counts with checked
// arithmetic, unique metadata keys and tensor names, general.alignment a power of two, and the layout
// llama.cpp requires (tensors back to back in the order of their infos, each padded to the alignment,
// at most one alignment of padding after the last), so a wrong alignment or a retyped tensor cannot
// shift what is read. Tensors are dequantised to float32 on request. Supported tensor
// types: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K (others are rejected naming
// tensor and type).

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace pikv::io {

class MappedFile;  // src/io/mapped_file.h

// A metadata value: scalars widen to int64 / double; arrays keep their element kind.
using GGUFValue = std::variant<int64_t, double, bool, std::string, std::vector<int64_t>, std::vector<double>,
                               std::vector<std::string>>;

// ggml type ids as llama.cpp numbers them.
enum class GGMLType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9, Q2_K = 10, Q3_K = 11,
  Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15, BF16 = 30
};
std::string ggml_type_name(uint32_t type);

struct GGUFTensorInfo {
  std::string name;
  std::vector<int64_t> dims;  // as stored: fastest dimension first
  uint32_t type = 0;
  uint64_t offset = 0;        // from the start of the data section
  uint64_t nbytes = 0;

  // PyTorch shape: dims reversed ([out, in] for a Linear weight).
  std::vector<int64_t> shape() const { return {dims.rbegin(), dims.rend()}; }
};

class GGUFFile {
 public:
  static GGUFFile open(const std::string& path);

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  const std::map<std::string, GGUFValue>& metadata() const { return metadata_; }
  bool has(const std::string& key) const { return metadata_.count(key) != 0; }
  // Typed reads; throw pikv::Error naming the file and key when missing or of another kind.
  int64_t get_int(const std::string& key) const;
  double get_float(const std::string& key) const;  // accepts integers too
  std::string get_string(const std::string& key) const;
  std::optional<int64_t> find_int(const std::string& key) const;
  std::optional<double> find_float(const std::string& key) const;

  const std::vector<GGUFTensorInfo>& tensors() const { return tensors_; }
  const GGUFTensorInfo& tensor(const std::string& name) const;
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  // The tensor dequantised to float32 on the CPU, in PyTorch shape (dims reversed).
  at::Tensor load(const std::string& name) const;
  // The tensor's bytes as stored (valid while the file is open; tensor(name).nbytes of them).
  const uint8_t* raw(const std::string& name) const;
  // The flat index of the first value of the tensor that dequantises to NaN or infinity, or -1. Reads
  // the raw data only (every value of float types, the f16 block scales of quantised types), so it
  // costs a fraction of load().
  int64_t first_non_finite(const std::string& name) const;

 private:
  std::string path_;
  uint32_t version_ = 0;
  std::shared_ptr<const MappedFile> mapping_;
  const uint8_t* data_ = nullptr;
  uint64_t data_size_ = 0;
  std::map<std::string, GGUFValue> metadata_;
  std::vector<GGUFTensorInfo> tensors_;
  std::map<std::string, size_t> index_;
};

// Dequantises `count` values of ggml type `type` from `src` (count a multiple of the block size) into
// float32 `dst`. Exposed for tests. Throws for unsupported types.
void dequantize(uint32_t type, const uint8_t* src, int64_t count, float* dst);

}  // namespace pikv::io

#ifdef PIKV_HEADER_ONLY
#include <pikv/io/detail/gguf-inl.h>
#endif
