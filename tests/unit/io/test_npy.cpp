// The .npy reader and writer (io/npy.h).
#include <pikv/pikv.h>

#include <gtest/gtest.h>

#include "helpers.h"
#include "test_files.h"

#include <ATen/ATen.h>
#include <cmath>
#include <fstream>

using namespace pikv;
using pikv::test::read_bytes;
using pikv::test::write_bytes;
using pikv::test::randn;

TEST(Npy, WritesWhatNumpyReadsAndReadsItBack) {
  const std::string dir = test::temp_dir("npy");
  const at::Tensor curve = randn({99, 3, 2}, 1, at::kDouble);
  io::write_npy(dir + "/c.npy", curve);
  const std::string bytes = read_bytes(dir + "/c.npy");
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  EXPECT_NE(bytes.find("{'descr': '<f8', 'fortran_order': False, 'shape': (99, 3, 2), }"), std::string::npos);
  EXPECT_EQ((bytes.size() - 99 * 3 * 2 * 8) % 64, 0u) << "the data starts 64-byte aligned";
  EXPECT_TRUE(test::tensors_equal(io::read_npy(dir + "/c.npy"), curve));
  for (const at::Tensor& t : {at::arange(5, at::kInt), at::tensor({1, 0}).to(at::kBool), at::zeros({0, 4}, at::kFloat),
                              at::full({}, 2.5, at::kHalf)}) {
    io::write_npy(dir + "/t.npy", t);
    const at::Tensor back = io::read_npy(dir + "/t.npy");
    EXPECT_EQ(back.scalar_type(), t.scalar_type());
    EXPECT_TRUE(test::tensors_equal(back, t));
  }
}

TEST(Npy, MalformedFilesAreRefusedWithTheirFault) {
  const std::string dir = test::temp_dir("npy-bad");
  io::write_npy(dir + "/good.npy", at::ones({4, 2}, at::kDouble));
  const std::string good = read_bytes(dir + "/good.npy");
  auto with = [&](const std::string& bytes) {
    write_bytes(dir + "/bad.npy", bytes);
    return dir + "/bad.npy";
  };
  EXPECT_PIKV_ERROR(io::read_npy(with("PK\x03\x04 not numpy")), "is not a .npy file");
  EXPECT_PIKV_ERROR(io::read_npy(with(good.substr(0, good.size() - 8))), "needs 64 bytes of data, the file holds 56");
  EXPECT_PIKV_ERROR(io::read_npy(with(good.substr(0, 20))), "truncated");
  std::string s = good;
  s.replace(s.find("False"), 5, "True ");
  EXPECT_PIKV_ERROR(io::read_npy(with(s)), "Fortran-ordered");
  s = good;
  s.replace(s.find("<f8"), 3, ">f8");
  EXPECT_PIKV_ERROR(io::read_npy(with(s)), "dtype '>f8' is not supported");
  s = good;
  s.replace(s.find("(4, 2)"), 6, "(4, 9)");
  EXPECT_PIKV_ERROR(io::read_npy(with(s)), "shape (4, 9) of <f8 needs 288 bytes");
  s = good;
  s.replace(s.find("(4, 2)"), 6, "(-1,2)");
  EXPECT_PIKV_ERROR(io::read_npy(with(s)), "is absurd");
  EXPECT_PIKV_ERROR(io::read_npy(dir + "/missing.npy"), "missing.npy");
}
