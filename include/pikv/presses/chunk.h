#pragma once
// Chunk: a scorer applied independently inside consecutive chunks of chunk_length tokens (each keeps
// max(1, int(len * (1 - ratio)))), so the kept tokens spread over the whole context. A chunk's
// sub-context carries its own hidden states and positions (kvpress gives every chunk the positions of
// the last window instead; key-only scorers are identical).

#include <pikv/core/press.h>

#include <memory>

namespace pikv {

#define PIKV_CHUNK_OPTIONS(X) X(int64_t, chunk_length, 1024, rule::at_least(1), "tokens per chunk")

struct ChunkOptions {
  PIKV_OPTIONS(ChunkOptions, PIKV_CHUNK_OPTIONS)
};

class ChunkPress : public ScorerWrapperBase<ChunkPress, ChunkOptions> {
 public:
  static constexpr const char* kName = "chunk";
  // Throws for a scorer that needs attention weights (they span the whole cache, not a chunk).
  explicit ChunkPress(std::shared_ptr<ScorerPress> press, const ChunkOptions& options = {});

 protected:
  // keys/values [B, Hkv, n, d] (a prefill: hidden_states [B, n, Dm] when the scorer needs them)
  CompressedKV compress_wrapped(const AttentionContext& ctx, double ratio) override;
};

// The sub-context of cached tokens [start, start + len) of a prefill: its keys, values, hidden states,
// queries and positions. Attention weights are not carried (they span the whole cache).
AttentionContext slice_context(const AttentionContext& ctx, int64_t start, int64_t len);

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/presses/detail/chunk-inl.h>
#endif
