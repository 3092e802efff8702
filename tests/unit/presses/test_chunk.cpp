// Chunked presses (presses/chunk.h, block.h, chunkkv.h).
#include <pikv/pikv.h>

#include <gtest/gtest.h>

#include "helpers.h"

#include <ATen/ATen.h>
#include <cmath>
#include <numeric>

using namespace pikv;
using pikv::test::random_context;

TEST(Chunking, ChunkKeepsPerChunkAndBlockEqualsGlobalForPerTokenScores) {
  AttentionContext ctx = random_context(1, 2, 50, 8, 9);
  ChunkPress chunk(std::make_shared<KnormPress>(KnormOptions().compression_ratio(0.5)), ChunkOptions().chunk_length(16));
  CompressedKV c = chunk.compress(ctx);
  // Chunks of 16, 16, 16, 2 keep 8 + 8 + 8 + 1.
  ASSERT_EQ(c.kept(), 25);
  EXPECT_EQ((c.indices[0][0] < 16).sum().item<int64_t>(), 8);
  EXPECT_EQ((c.indices[0][0] >= 48).sum().item<int64_t>(), 1);
  BlockPress block(std::make_shared<KnormPress>(KnormOptions().compression_ratio(0.7)), BlockOptions().block_size(7));
  KnormPress global(KnormOptions().compression_ratio(0.7));
  EXPECT_TRUE(pikv::test::tensors_equal(block.compress(ctx).indices, global.compress(ctx).indices));
  ChunkKVPress chunkkv(std::make_shared<KnormPress>(KnormOptions().compression_ratio(0.5)), ChunkKVOptions().chunk_length(10));
  CompressedKV k = chunkkv.compress(ctx);
  EXPECT_EQ(k.kept(), 20) << "5 chunks of 10 -> the best int(5 * 0.5) = 2 chunks";
  EXPECT_TRUE(at::equal(k.indices[0][0], k.indices[0][1])) << "the same chunks for every head";
}
