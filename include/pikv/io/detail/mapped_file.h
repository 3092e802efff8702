#pragma once
// A read-only memory map of a whole file, shared by the safetensors and GGUF readers (tensors are
// copied out of it, so it lives as long as the reader).

#include <cstdint>
#include <memory>
#include <string>

namespace pikv::io {

class MappedFile {
 public:
  // Maps `path`; `kind` names the format in errors ("GGUF", "safetensors"). Refuses anything but a
  // regular file (a FIFO, a device, a folder) without blocking on it. An empty file maps to size 0
  // (the caller reports it as truncated).
  static std::shared_ptr<const MappedFile> open(const std::string& path, const char* kind);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return static_cast<const uint8_t*>(addr_); }
  uint64_t size() const { return size_; }

 private:
  MappedFile() = default;
  void* addr_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace pikv::io

#ifdef PIKV_HEADER_ONLY
#include <pikv/io/detail/mapped_file-inl.h>
#endif
