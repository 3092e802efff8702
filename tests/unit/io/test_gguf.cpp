// GGUF files (io/gguf.h) built here, valid and broken, and as untrusted input: sizes, alignment and
// layout. Every broken file must give a pikv::Error naming the file and problem.
#include <pikv/pikv.h>
#include <pikv/io/files.h>

#include <gtest/gtest.h>

#include "helpers.h"
#include "gguf_writer.h"
#include "test_files.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <sys/stat.h>
#include <sys/types.h>

using namespace pikv;
using pikv::test::GGUFBuilder;
using pikv::test::Gguf;
using pikv::test::kTF32;
using pikv::test::kTQ8_0;
using pikv::test::tiny_llama;
using pikv::test::values;
using pikv::test::write_file;

TEST(GGUF, ReadsMetadataAndTensors) {
  const std::string dir = test::temp_dir("gguf-good");
  GGUFBuilder b;
  b.kv_str("general.architecture", "llama");
  b.kv_u32("llama.block_count", 7);
  b.kv_f32("llama.rope.freq_base", 5000.0f);
  std::vector<float> values(32);
  for (int i = 0; i < 32; ++i) values[static_cast<size_t>(i)] = 0.5f * static_cast<float>(i);
  b.tensor_f32("w", {8, 4}, values);
  auto f = io::GGUFFile::open(write_file(dir, "good.gguf", b.bytes()));
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_int("llama.block_count"), 7);
  EXPECT_DOUBLE_EQ(f.get_float("llama.rope.freq_base"), 5000.0);
  EXPECT_EQ(f.tensor("w").shape(), (std::vector<int64_t>{4, 8}));
  EXPECT_TRUE(test::tensors_equal(f.load("w"), at::tensor(values).view({4, 8})));
  EXPECT_PIKV_ERROR(f.get_int("general.architecture"), "not an integer");
  EXPECT_PIKV_ERROR(f.get_string("missing.key"), "lacks metadata 'missing.key'");
  EXPECT_PIKV_ERROR(f.load("nope"), "has no tensor 'nope'");
}

TEST(GGUF, BrokenFilesGiveClearErrors) {
  const std::string dir = test::temp_dir("gguf-bad");
  GGUFBuilder b;
  b.kv_str("general.architecture", "llama");
  b.tensor_f32("w", {8, 4}, std::vector<float>(32, 1.0f));
  const std::string good = b.bytes();

  EXPECT_PIKV_ERROR(io::GGUFFile::open(dir + "/missing.gguf"), "cannot open GGUF file");
  EXPECT_PIKV_ERROR(io::GGUFFile::open(write_file(dir, "tiny.gguf", "GGUF")), "truncated", "24-byte header");
  EXPECT_PIKV_ERROR(io::GGUFFile::open(write_file(dir, "magic.gguf", "GGML" + good.substr(4))), "not a GGUF file");
  EXPECT_PIKV_ERROR(io::GGUFFile::open(write_file(dir, "v1.gguf", b.bytes(1))), "version 1");
  EXPECT_PIKV_ERROR(io::GGUFFile::open(write_file(dir, "cut.gguf", good.substr(0, 60))), "truncated");
  EXPECT_PIKV_ERROR(io::GGUFFile::open(write_file(dir, "nodata.gguf", good.substr(0, good.size() - 64))), "tensor 'w'",
                    "lies outside");

  GGUFBuilder huge;
  huge.kv_str("general.architecture", std::string(10, 'x'));
  std::string h = huge.bytes();
  const uint64_t claim = 1ull << 40;
  std::memcpy(&h[24 + 8 + 20 + 4], &claim, 8);  // the value string's length
  EXPECT_PIKV_ERROR(io::GGUFFile::open(write_file(dir, "huge.gguf", h)), "claims a string");

  GGUFBuilder outside;
  outside.tensor_f32("a", {8}, std::vector<float>(8, 1.0f));
  outside.tensor_raw("b", {8}, 0, 1024);
  EXPECT_PIKV_ERROR(io::GGUFFile::open(write_file(dir, "outside.gguf", outside.bytes())), "tensor 'b'", "outside");

  GGUFBuilder overlap;
  overlap.tensor_f32("a", {16}, std::vector<float>(16, 1.0f));
  overlap.tensor_raw("b", {8}, 0, 32);
  overlap.tensor_raw("c", {16}, 0, 0);
  EXPECT_PIKV_ERROR(io::GGUFFile::open(write_file(dir, "overlap.gguf", overlap.bytes())), "overlap");

  GGUFBuilder unknown;
  unknown.tensor_f32("a", {8}, std::vector<float>(8, 1.0f));
  unknown.tensor_raw("q", {32}, 99, 0);
  EXPECT_PIKV_ERROR(io::GGUFFile::open(write_file(dir, "unknown.gguf", unknown.bytes())), "tensor 'q'",
                    "unknown GGML type 99");

  GGUFBuilder blocks;
  blocks.tensor_f32("a", {64}, std::vector<float>(64, 1.0f));
  blocks.tensor_raw("q", {30}, 8, 0);  // Q8_0 rows must be multiples of 32
  EXPECT_PIKV_ERROR(io::GGUFFile::open(write_file(dir, "blocks.gguf", blocks.bytes())), "tensor 'q'", "Q8_0",
                    "multiple of the block size 32");

  GGUFBuilder unsupported;
  unsupported.tensor_bytes("q", {256}, 11, std::string(110, '\0'));  // Q3_K: a known type we do not decode
  auto f = io::GGUFFile::open(write_file(dir, "q3k.gguf", unsupported.bytes()));
  EXPECT_PIKV_ERROR(f.load("q"), "tensor 'q'", "Q3_K", "cannot dequantise");

  GGUFBuilder bert;
  bert.kv_str("general.architecture", "bert");
  bert.tensor_f32("token_embd.weight", {4, 8}, std::vector<float>(32, 0.0f));
  EXPECT_PIKV_ERROR(DecoderModel::load(write_file(dir, "bert.gguf", bert.bytes())), "architecture 'bert'",
                    "supported: llama");
  GGUFBuilder partial;
  partial.kv_str("general.architecture", "llama");
  partial.tensor_f32("token_embd.weight", {4, 8}, std::vector<float>(32, 0.0f));
  EXPECT_PIKV_ERROR(DecoderModel::load(write_file(dir, "partial.gguf", partial.bytes())),
                    "lacks metadata 'llama.embedding_length'");
}

// ---------------------------------------------------------------------------------------------------
// GGUF: sizes, alignment, layout
// ---------------------------------------------------------------------------------------------------

TEST(UntrustedGGUF, ByteCountsThatWouldWrapAreRefused) {
  const std::string dir = test::temp_dir("untrusted-wrap");
  // 2^32 x 2^30 float32 values: 2^62 elements, 2^64 bytes, which wraps to 0 in 64 bits and would pass
  // a bounds check against the data size.
  Gguf g;
  g.tensor_raw("w", {1ull << 32, 1ull << 30}, kTF32, "");
  EXPECT_PIKV_ERROR(io::GGUFFile::open(g.write(dir, "wrap.gguf")), "wrap.gguf", "tensor 'w'", "[4294967296, 1073741824]",
                    "4611686018427387904 elements");
  // Four dimensions whose product overflows 64 bits.
  Gguf h;
  h.tensor_raw("x", {1ull << 40, 1ull << 40, 1, 1}, kTF32, "");
  EXPECT_PIKV_ERROR(io::GGUFFile::open(h.write(dir, "overflow.gguf")), "tensor 'x'", "impossible dimension 1099511627776");
  // A zero dimension makes the byte count 0, but the strides of the others would still overflow.
  Gguf z;
  z.tensor_raw("z", {0, 1ull << 30, 1ull << 30}, kTF32, "");
  EXPECT_PIKV_ERROR(io::GGUFFile::open(z.write(dir, "zero.gguf")), "tensor 'z'", "[0, 1073741824, 1073741824]",
                    "spans 1152921504606846976 elements, more than any file can hold");
  const std::string st = dir + "/zero.safetensors";
  {
    const std::string header = R"({"z": {"dtype": "F32", "shape": [0, 4611686018427387904, 4611686018427387904],
                                         "data_offsets": [0, 0]}})";
    std::ofstream out(st, std::ios::binary);
    const uint64_t n = header.size();
    out.write(reinterpret_cast<const char*>(&n), 8);
    out << header;
  }
  EXPECT_PIKV_ERROR(io::SafetensorsFile::open(st), "zero.safetensors", "tensor 'z'",
                    "shape [0,4611686018427387904,4611686018427387904] overflows");
  // checked arithmetic helpers
  uint64_t u = 0;
  EXPECT_FALSE(io::checked_mul(uint64_t{1} << 32, uint64_t{1} << 32, &u));
  EXPECT_FALSE(io::checked_add(std::numeric_limits<uint64_t>::max(), uint64_t{1}, &u));
  EXPECT_TRUE(io::checked_mul(uint64_t{3}, uint64_t{5}, &u));
  EXPECT_EQ(u, 15u);
  int64_t i = 0;
  EXPECT_FALSE(io::checked_mul(int64_t{1} << 62, int64_t{4}, &i));
}

TEST(UntrustedGGUF, AlignmentThatWouldShiftReadsIsRefused) {
  const std::string dir = test::temp_dir("untrusted-align");
  Gguf g;
  g.str("general.architecture", "llama");
  g.tensor_f32("a", {8}, values(8, 1));  // 32 bytes: no padding after it
  g.tensor_f32("b", {8}, values(8, 2));
  auto good = io::GGUFFile::open(g.write(dir, "good.gguf"));
  EXPECT_TRUE(test::tensors_equal(good.load("b"), at::tensor(values(8, 2))));
  // Both tensors are 32 bytes (no padding between them), so only where the data section starts
  // differs. The header length is varied until the claimed alignment moves the start.
  for (uint32_t wrong : {1u, 16u}) {
    g.u32("general.alignment", wrong);
    auto shifted = [&] {
      const size_t h = g.header().size();
      return (h + wrong - 1) / wrong * wrong != (h + 31) / 32 * 32;
    };
    for (int n = 0; n < 64 && !shifted(); ++n) g.str("general.name", std::string(static_cast<size_t>(n), 'x'));
    ASSERT_TRUE(shifted());
    const std::string claim = fmt::format("general.alignment {} allows", wrong);
    EXPECT_PIKV_ERROR(io::GGUFFile::open(g.write(dir, "align.gguf")), "align.gguf", claim.c_str(),
                      "follow the last tensor 'b'");
  }
  // A tensor that is not a multiple of 32 bytes: with alignment 1 the next one would start right after it.
  Gguf p;
  p.tensor_f32("a", {5}, values(5, 3));
  p.tensor_f32("b", {8}, values(8, 4));
  p.u32("general.alignment", 1);
  EXPECT_PIKV_ERROR(io::GGUFFile::open(p.write(dir, "gap.gguf")), "tensor 'b'", "starts at data offset 32",
                    "end at 20", "general.alignment 1");
  for (int64_t bad : {0ll, 3ll, -32ll, 1ll << 40}) {
    Gguf q;
    q.i64("general.alignment", bad);
    q.tensor_f32("a", {8}, values(8, 5));
    const std::string expected = fmt::format("general.alignment {} is not a power of two", bad);
    EXPECT_PIKV_ERROR(io::GGUFFile::open(q.write(dir, "pow2.gguf")), expected.c_str());
  }
}

TEST(UntrustedGGUF, DuplicateMetadataKeysAreRefused) {
  const std::string dir = test::temp_dir("untrusted-dupkey");
  Gguf g = tiny_llama();
  g.duplicate_u32("llama.block_count", 1);
  EXPECT_PIKV_ERROR(io::GGUFFile::open(g.write(dir, "dup.gguf")), "dup.gguf", "metadata key 'llama.block_count' appears twice");
}

TEST(UntrustedGGUF, RetypedTensorsBreakTheLayout) {
  const std::string dir = test::temp_dir("untrusted-retype");
  Gguf g = tiny_llama();
  g.tensor("blk.0.attn_q.weight").type = kTQ8_0;  // same bytes, now read as Q8_0 (fewer bytes)
  EXPECT_PIKV_ERROR(io::GGUFFile::open(g.write(dir, "retyped.gguf")), "tensor 'blk.0.attn_k.weight'",
                    "a tensor type, dimension or the alignment is wrong");
  Gguf d = tiny_llama();
  d.tensor("blk.1.ffn_up.weight").dims = {32, 32};  // half the rows: the bytes no longer add up
  EXPECT_PIKV_ERROR(io::GGUFFile::open(d.write(dir, "dims.gguf")), "blk.1.ffn_down.weight", "starts at data offset");
}
