#pragma once
// Helpers for reading untrusted input files: checked size arithmetic (so a byte count cannot wrap
// around and slip past a bounds check) and bounded reads of small text files (config.json,
// tokenizer.json, ...) that refuse FIFOs, devices and folders instead of blocking or reading forever.

#include <cstdint>
#include <string>
#include <string_view>

namespace pikv::io {

// a * b and a + b; false (and *out untouched) when the result does not fit.
inline bool checked_mul(uint64_t a, uint64_t b, uint64_t* out) {
  uint64_t r;
  if (__builtin_mul_overflow(a, b, &r)) return false;
  *out = r;
  return true;
}
inline bool checked_add(uint64_t a, uint64_t b, uint64_t* out) {
  uint64_t r;
  if (__builtin_add_overflow(a, b, &r)) return false;
  *out = r;
  return true;
}
inline bool checked_mul(int64_t a, int64_t b, int64_t* out) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r)) return false;
  *out = r;
  return true;
}
inline bool checked_add(int64_t a, int64_t b, int64_t* out) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) return false;
  *out = r;
  return true;
}

// The most bytes read_text_file reads by default (tokenizer.json files are a few MB; 256 MB is far above).
constexpr uint64_t kMaxTextFileBytes = 256ull << 20;

// The whole content of `path`. Throws pikv::Error naming `what` ("model config", "tokenizer.json")
// and the path when the file is missing, unreadable, not a regular file (a FIFO, a device, a folder)
// or larger than `max_bytes`.
std::string read_text_file(const std::string& path, std::string_view what, uint64_t max_bytes = kMaxTextFileBytes);

// Writes `content` to `path` so that a reader (or a later run) sees the old file or the whole new one,
// never a torn one: the bytes go to a temporary file beside it, which replaces `path` once complete.
// Throws pikv::Error naming `what` and the path when the folder is not writable or the disk is full
// (the old file, if any, is then left as it was).
void write_file_atomically(const std::string& path, std::string_view content, std::string_view what);

}  // namespace pikv::io

#ifdef PIKV_HEADER_ONLY
#include <pikv/io/detail/mapped_file-inl.h>
#endif
