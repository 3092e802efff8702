#pragma once
// Small helpers shared by the test executables.

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <pikv/core/attention.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/detail/logging.h>
#include <pikv/core/error.h>
#include <pikv/fmt.h>

#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <sys/stat.h>
#include <unistd.h>
#include <string>

namespace pikv::test {

// Deterministic normal tensor from a CPU generator.
inline at::Tensor randn(at::IntArrayRef shape, uint64_t seed, at::ScalarType dtype = at::kFloat) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  return at::randn(shape, gen, at::kFloat).to(dtype);
}

// A prefill context over random keys/values [B, Hkv, n, d].
inline AttentionContext random_context(int64_t B, int64_t Hkv, int64_t n, int64_t d, uint64_t seed = 1,
                                       at::ScalarType dtype = at::kFloat) {
  AttentionContext ctx;
  ctx.num_layers = 1;
  ctx.keys = randn({B, Hkv, n, d}, seed, dtype);
  ctx.values = randn({B, Hkv, n, d}, seed + 1, dtype);
  return ctx;
}

#ifndef PIKV_TEST_TMP_DEFAULT
#define PIKV_TEST_TMP_DEFAULT "/tmp"
#endif

// A fresh folder for files a test writes (under PIKV_TEST_TMP, else the build tree's test-tmp/).
// POSIX only: libtorch.so exports its own copies of some std::filesystem symbols, and calls resolving
// to them crash.
inline std::string temp_dir(const std::string& name) {
  const char* root = std::getenv("PIKV_TEST_TMP");
  std::string base = root ? root : PIKV_TEST_TMP_DEFAULT;
  ::mkdir(base.c_str(), 0755);
  std::string pattern = base + "/pikv-" + name + "-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed for " + pattern);
  return pattern;
}

inline int64_t file_size(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : -1;
}

inline void copy_file(const std::string& from, const std::string& to) {
  std::ifstream in(from, std::ios::binary);
  std::ofstream out(to, std::ios::binary | std::ios::trunc);
  out << in.rdbuf();
}

// Exact equality with a readable failure (shape, dtype, max difference).
inline ::testing::AssertionResult tensors_equal(const at::Tensor& a, const at::Tensor& b) {
  if (a.sizes() != b.sizes()) {
    return ::testing::AssertionFailure() << "shapes differ: " << a.sizes() << " vs " << b.sizes();
  }
  if (a.scalar_type() != b.scalar_type()) {
    return ::testing::AssertionFailure() << "dtypes differ: " << a.scalar_type() << " vs " << b.scalar_type();
  }
  if (!at::equal(a, b)) {
    auto diff = (a.to(at::kDouble) - b.to(at::kDouble)).abs();
    return ::testing::AssertionFailure() << "tensors differ in " << diff.gt(0).sum().item<int64_t>()
                                         << " entries, max |difference| " << diff.max().item<double>();
  }
  return ::testing::AssertionSuccess();
}

// |a - b| <= atol + rtol * |b| everywhere.
inline ::testing::AssertionResult tensors_close(const at::Tensor& a, const at::Tensor& b, double rtol, double atol) {
  if (a.sizes() != b.sizes()) {
    return ::testing::AssertionFailure() << "shapes differ: " << a.sizes() << " vs " << b.sizes();
  }
  auto ad = a.to(at::kDouble), bd = b.to(at::kDouble);
  auto excess = (ad - bd).abs() - (atol + rtol * bd.abs());
  if (excess.gt(0).any().item<bool>()) {
    return ::testing::AssertionFailure() << "max |difference| " << (ad - bd).abs().max().item<double>()
                                         << " exceeds atol " << atol << " + rtol " << rtol;
  }
  return ::testing::AssertionSuccess();
}

}  // namespace pikv::test

// Expects `statement` to throw pikv::Error whose message contains every listed fragment.
#define EXPECT_PIKV_ERROR(statement, ...)                                                      \
  do {                                                                                         \
    try {                                                                                      \
      (void)(statement);                                                                       \
      ADD_FAILURE() << "expected pikv::Error from: " #statement;                               \
    } catch (const ::pikv::Error& e) {                                                         \
      const std::string message = e.what();                                                    \
      for (const char* fragment : {__VA_ARGS__}) {                                              \
        EXPECT_NE(message.find(fragment), std::string::npos)                                   \
            << "message '" << message << "' lacks '" << fragment << "'";                      \
      }                                                                                        \
    }                                                                                          \
  } while (0)
