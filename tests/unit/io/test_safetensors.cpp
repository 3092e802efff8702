// safetensors reading/writing (io/safetensors.h), and every malformed file we can build: a clear
// pikv::Error each time.
#include <pikv/pikv.h>

#include <gtest/gtest.h>

#include "helpers.h"

#include <fstream>

using namespace pikv;
using pikv::io::SafetensorsFile;

namespace {

void write_raw(const std::string& path, const std::string& header, const std::string& data,
               int64_t declared_len = -1) {
  std::ofstream out(path, std::ios::binary);
  const uint64_t n = declared_len >= 0 ? static_cast<uint64_t>(declared_len) : header.size();
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>(n >> (8 * i)));
  out << header << data;
}

}  // namespace

TEST(Safetensors, RoundTripsEveryDtypeWithMetadata) {
  auto dir = test::temp_dir("safetensors-roundtrip");
  std::vector<std::pair<std::string, at::Tensor>> tensors = {
      {"f32", test::randn({3, 4}, 1)},
      {"f64", test::randn({2}, 2, at::kDouble)},
      {"bf16", test::randn({5, 1, 2}, 3, at::kBFloat16)},
      {"f16", test::randn({7}, 4, at::kHalf)},
      {"i64", at::arange(6, at::kLong).view({2, 3})},
      {"i32", at::arange(4, at::kInt)},
      {"u8", at::arange(10, at::kByte)},
      {"bool", at::tensor({1, 0, 1}).to(at::kBool)},
      {"empty", at::zeros({0, 3})},
      {"scalar", at::tensor(3.5f)},
      {"noncontig", test::randn({4, 6}, 5).t()},
  };
  const std::string path = dir + "/t.safetensors";
  io::save_safetensors(path, tensors, {{"press", "knorm"}, {"ratio", "0.5"}});
  SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_EQ(f.metadata().at("press"), "knorm");
  EXPECT_EQ(f.names().size(), tensors.size());
  for (const auto& [name, t] : tensors) {
    ASSERT_TRUE(f.contains(name)) << name;
    EXPECT_TRUE(test::tensors_equal(f.get(name), t.contiguous())) << name;
    EXPECT_EQ(f.shape(name), t.sizes().vec()) << name;
    EXPECT_EQ(f.dtype(name), t.scalar_type()) << name;
  }
  EXPECT_PIKV_ERROR(f.get("missing"), "has no tensor 'missing'", "t.safetensors");
  EXPECT_PIKV_ERROR(io::save_safetensors(path, {{"a", at::zeros({1})}, {"a", at::zeros({1})}}), "duplicate", "'a'");
  EXPECT_PIKV_ERROR(io::save_safetensors(path, {{"c", at::zeros({1}, at::kComplexFloat)}}), "unsupported dtype");
}

TEST(Safetensors, MalformedFilesGiveClearErrors) {
  auto dir = test::temp_dir("safetensors-bad");
  auto p = [&](const char* name) { return dir + "/" + name; };

  EXPECT_PIKV_ERROR(SafetensorsFile::open(p("nope.safetensors")), "cannot open", "nope.safetensors");

  { std::ofstream(p("short")) << "abc"; }
  EXPECT_PIKV_ERROR(SafetensorsFile::open(p("short")), "truncated", "3 bytes");

  write_raw(p("hugeheader"), "{}", "", 1000);
  EXPECT_PIKV_ERROR(SafetensorsFile::open(p("hugeheader")), "header length 1000", "larger than");

  write_raw(p("badjson"), "{\"a\": [", "");
  EXPECT_PIKV_ERROR(SafetensorsFile::open(p("badjson")), "not valid JSON");

  write_raw(p("notobject"), "[1, 2]", "");
  EXPECT_PIKV_ERROR(SafetensorsFile::open(p("notobject")), "JSON object");

  write_raw(p("dtype"), R"({"w": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 2]}})", "xx");
  EXPECT_PIKV_ERROR(SafetensorsFile::open(p("dtype")), "tensor 'w'", "unsupported dtype 'Q4'");

  write_raw(p("outside"), R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})", std::string(8, '\0'));
  EXPECT_PIKV_ERROR(SafetensorsFile::open(p("outside")), "tensor 'w'", "[0, 16]", "outside the 8 data bytes");

  write_raw(p("size"), R"({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", std::string(8, '\0'));
  EXPECT_PIKV_ERROR(SafetensorsFile::open(p("size")), "tensor 'w'", "needs 12 bytes", "span 8");

  write_raw(p("overlap"),
            R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
            std::string(12, '\0'));
  EXPECT_PIKV_ERROR(SafetensorsFile::open(p("overlap")), "'a' and 'b' overlap");

  write_raw(p("negdim"), R"({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}})", "");
  EXPECT_PIKV_ERROR(SafetensorsFile::open(p("negdim")), "tensor 'w'", "invalid dimension -1");

  write_raw(p("fields"), R"({"w": {"dtype": "F32"}})", "");
  EXPECT_PIKV_ERROR(SafetensorsFile::open(p("fields")), "tensor 'w'", "dtype, shape and data_offsets");

  write_raw(p("offsets"), R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [4]}})", "abcd");
  EXPECT_PIKV_ERROR(SafetensorsFile::open(p("offsets")), "data_offsets must be two");

  write_raw(p("meta"), R"({"__metadata__": {"k": 1}})", "");
  EXPECT_PIKV_ERROR(SafetensorsFile::open(p("meta")), "__metadata__ entry 'k'");

  // A valid file cut short: the header now claims data that is not there.
  const auto good = p("good.safetensors");
  io::save_safetensors(good, {{"x", test::randn({64}, 1)}});
  const int64_t size = test::file_size(good);
  test::copy_file(good, p("cut.safetensors"));
  ASSERT_EQ(::truncate(p("cut.safetensors").c_str(), size - 10), 0);
  EXPECT_PIKV_ERROR(SafetensorsFile::open(p("cut.safetensors")), "tensor 'x'", "outside");
  ASSERT_EQ(::truncate(p("cut.safetensors").c_str(), 20), 0);
  EXPECT_PIKV_ERROR(SafetensorsFile::open(p("cut.safetensors")), "larger than");
}
