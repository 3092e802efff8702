#pragma once
// ChunkKV: keeps whole chunks of chunk_length tokens: chunk score = mean over the chunk of the scores
// summed over heads; the top max(1, int(C * (1 - ratio))) chunks (C incl. a partial last one) are
// kept, the same for every head. https://arxiv.org/abs/2502.00299. One selection for the whole batch
// from the batch mean (kvpress uses row 0; equal for batch 1).

#include <pikv/core/press.h>

#include <memory>

namespace pikv {

#define PIKV_CHUNKKV_OPTIONS(X) X(int64_t, chunk_length, 20, rule::at_least(1), "tokens per chunk")

struct ChunkKVOptions {
  PIKV_OPTIONS(ChunkKVOptions, PIKV_CHUNKKV_OPTIONS)
};

class ChunkKVPress : public ScorerWrapperBase<ChunkKVPress, ChunkKVOptions> {
 public:
  static constexpr const char* kName = "chunkkv";
  using ScorerWrapperBase::ScorerWrapperBase;  // (std::shared_ptr<ScorerPress>, const ChunkKVOptions& = {})

 protected:
  // keys/values [B, Hkv, n, d] -> [B, Hkv, k, d], whole chunks
  CompressedKV compress_wrapped(const AttentionContext& ctx, double ratio) override;
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/presses/detail/chunkkv-inl.h>
#endif
