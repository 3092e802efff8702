#pragma once
// Chunk and ChunkKV: chunked selection around a scorer.
//  - ChunkPress scores and selects independently inside consecutive chunks of chunk_length tokens
//    (each keeps max(1, int(len * (1 - ratio)))), so the kept tokens spread over the whole context.
//    A chunk's sub-context carries its own hidden states and positions.
//  - ChunkKVPress keeps whole chunks of chunk_length tokens: chunk score = mean over the chunk of the
//    scores summed over heads; the top max(1, int(C * (1 - ratio))) chunks (C incl. a partial last
//    one) are kept, the same for every head. https://arxiv.org/abs/2502.00299

#include <pikv/core/press.h>

#include <memory>

namespace pikv {

class ChunkPress : public Press {
 public:
  ChunkPress(std::shared_ptr<ScorerPress> press, int64_t chunk_length = 1024);
  std::string name() const override { return "chunk"; }
  std::string describe() const override;
  double compression_ratio() const override { return press_->compression_ratio(); }
  PressRequirements requirements() const override { return press_->requirements(); }
  // keys/values [B, Hkv, n, d] (a prefill: hidden_states [B, n, Dm] when the scorer needs them)
  CompressedKV compress(const AttentionContext& ctx) override;

 private:
  std::shared_ptr<ScorerPress> press_;
  int64_t chunk_length_;
};

class ChunkKVPress : public Press {
 public:
  ChunkKVPress(std::shared_ptr<ScorerPress> press, int64_t chunk_length = 20);
  std::string name() const override { return "chunkkv"; }
  std::string describe() const override;
  double compression_ratio() const override { return press_->compression_ratio(); }
  PressRequirements requirements() const override { return press_->requirements(); }
  const ScorerPress* scorer() const override { return press_.get(); }
  CompressedKV compress(const AttentionContext& ctx) override;

 private:
  std::shared_ptr<ScorerPress> press_;
  int64_t chunk_length_;
};

// Block: a streaming simulation. Keeps the first n_kept tokens, then for every next block of
// block_size tokens re-scores (kept + block) with the wrapped scorer and keeps the top n_kept. Equal to
// the global press for a per-token scorer (Knorm). Needs a scorer that reads only keys and values.
class BlockPress : public Press {
 public:
  BlockPress(std::shared_ptr<ScorerPress> press, int64_t block_size = 128);
  std::string name() const override { return "block"; }
  std::string describe() const override;
  double compression_ratio() const override { return press_->compression_ratio(); }
  const ScorerPress* scorer() const override { return nullptr; }
  CompressedKV compress(const AttentionContext& ctx) override;

 private:
  std::shared_ptr<ScorerPress> press_;
  int64_t block_size_;
};

}  // namespace pikv
