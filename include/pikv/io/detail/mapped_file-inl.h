#pragma once

#include <pikv/core/config.h>
#include <pikv/io/detail/mapped_file.h>

#include <pikv/core/detail/check.h>
#include <pikv/io/files.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace pikv::io {
namespace detail {

PIKV_INLINE const char* file_kind(mode_t mode) {
  if (S_ISDIR(mode)) return "a folder";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

// Opens `path` read-only without blocking (a FIFO with no writer would block a plain open) and checks
// that it is a regular file; returns the descriptor and fills *st.
PIKV_INLINE int open_regular(const std::string& path, std::string_view what, struct stat* st) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  PIKV_CHECK(fd >= 0, "cannot open {} file '{}': {}", what, path, std::strerror(errno));
  if (::fstat(fd, st) != 0) {
    const int err = errno;
    ::close(fd);
    PIKV_FAIL("cannot stat {} file '{}': {}", what, path, std::strerror(err));
  }
  if (!S_ISREG(st->st_mode)) {
    ::close(fd);
    PIKV_FAIL("{} file '{}' is {}, not a regular file: refusing to read it", what, path, file_kind(st->st_mode));
  }
  return fd;
}

}  // namespace detail

PIKV_INLINE std::shared_ptr<const MappedFile> MappedFile::open(const std::string& path, const char* kind) {
  struct stat st {};
  const int fd = detail::open_regular(path, kind, &st);
  std::shared_ptr<MappedFile> m(new MappedFile());
  m->size_ = static_cast<uint64_t>(st.st_size);
  if (m->size_ > 0) {
    void* addr = mmap(nullptr, m->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    const int err = errno;
    ::close(fd);
    PIKV_CHECK(addr != MAP_FAILED, "cannot map {} file '{}': {}", kind, path, std::strerror(err));
    m->addr_ = addr;
  } else {
    ::close(fd);
  }
  return m;
}

PIKV_INLINE MappedFile::~MappedFile() {
  if (addr_ != nullptr) munmap(addr_, size_);
}

PIKV_INLINE std::string read_text_file(const std::string& path, std::string_view what, uint64_t max_bytes) {
  struct stat st {};
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } file{detail::open_regular(path, what, &st)};
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  PIKV_CHECK(size <= max_bytes, "{} file '{}' has {} bytes, more than the {} bytes such a file may have", what, path,
             size, max_bytes);
  std::string out(static_cast<size_t>(size), '\0');
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::read(file.fd, &out[done], out.size() - done);
    if (n < 0 && errno == EINTR) continue;
    PIKV_CHECK(n >= 0, "reading {} file '{}' failed: {}", what, path, std::strerror(errno));
    if (n == 0) break;  // the file shrank while we read it: keep what is there
    done += static_cast<size_t>(n);
  }
  out.resize(done);
  return out;
}

PIKV_INLINE void write_file_atomically(const std::string& path, std::string_view content, std::string_view what) {
  const std::string tmp = path + ".tmp" + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  PIKV_CHECK(fd >= 0, "cannot write {} '{}': {}", what, path, std::strerror(errno));
  size_t written = 0;
  int error = 0;
  while (written < content.size()) {
    const ssize_t n = ::write(fd, content.data() + written, content.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      error = n < 0 ? errno : EIO;
      break;
    }
    written += static_cast<size_t>(n);
  }
  if (error == 0 && ::fsync(fd) != 0) error = errno;
  if (::close(fd) != 0 && error == 0) error = errno;
  if (error == 0 && ::rename(tmp.c_str(), path.c_str()) != 0) error = errno;
  if (error != 0) {
    ::unlink(tmp.c_str());
    PIKV_FAIL("writing {} '{}' failed: {}{}", what, path, std::strerror(error),
              error == ENOSPC || error == EFBIG ? " (disk full?)" : "");
  }
}

}  // namespace pikv::io
