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

}  // namespace pikv::io
