#pragma once
// Block: a streaming simulation. Keeps the first n_kept tokens, then for every next block of
// block_size tokens re-scores (kept + block) with the wrapped scorer and keeps the top n_kept. Equal to
// the global press for a per-token scorer (Knorm). Needs a scorer that reads only keys and values.

#include <pikv/core/press.h>

#include <memory>

namespace pikv {

#define PIKV_BLOCK_OPTIONS(X) X(int64_t, block_size, 128, rule::at_least(1), "tokens per block")

struct BlockOptions {
  PIKV_OPTIONS(BlockOptions, PIKV_BLOCK_OPTIONS)
};

class BlockPress : public ScorerWrapperBase<BlockPress, BlockOptions> {
 public:
  static constexpr const char* kName = "block";
  // Throws for a scorer that needs the forward's queries or attention.
  explicit BlockPress(std::shared_ptr<ScorerPress> press, const BlockOptions& options = {});
  // The kept tokens are not one scorer call's top-k: nothing to record as scores.
  const ScorerPress* scorer() const override { return nullptr; }

 protected:
  CompressedKV compress_wrapped(const AttentionContext& ctx, double ratio) override;
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/presses/detail/block-inl.h>
#endif
