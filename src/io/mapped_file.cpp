#include "mapped_file.h"

#include <pikv/core/detail/check.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace pikv::io {

std::shared_ptr<const MappedFile> MappedFile::open(const std::string& path, const char* kind) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  PIKV_CHECK(fd >= 0, "cannot open {} file '{}': {}", kind, path, std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    PIKV_FAIL("'{}' is not a readable regular file", path);
  }
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

MappedFile::~MappedFile() {
  if (addr_ != nullptr) munmap(addr_, size_);
}

}  // namespace pikv::io
