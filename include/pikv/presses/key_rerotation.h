#pragma once
// KeyRerotation: keeps the wrapped scorer's tokens, sorted by position, and re-rotates each kept key
// from its old position p to its new slot i (RoPE rotation by (i - p) * inv_freq, the layer's raw
// inverse frequencies, so scaled RoPE variants are honoured). Later tokens then continue from the
// compressed length (CompressedKV::positions_reset). https://arxiv.org/abs/2309.17453 (sink re-indexing)

#include <pikv/core/press.h>

#include <memory>

namespace pikv {

class KeyRerotationPress : public ScorerWrapperBase<KeyRerotationPress, NoOptions> {
 public:
  static constexpr const char* kName = "key_rerotation";
  using ScorerWrapperBase::ScorerWrapperBase;  // (std::shared_ptr<ScorerPress>, const NoOptions& = {})
  PressRequirements requirements() const override;

  // Rotates keys [B, Hkv, k, d] by angle delta[b, h, j] * inv_freq (half-split RoPE on the first
  // 2 * inv_freq.size(0) channels; the rest is left as is). delta: [B, Hkv, k] -> [B, Hkv, k, d].
  static at::Tensor rotate(const at::Tensor& keys, const at::Tensor& delta, const at::Tensor& inv_freq);

 protected:
  // keys/values [B, Hkv, n, d] -> [B, Hkv, k, d], keys re-rotated to positions 0..k-1.
  CompressedKV compress_wrapped(const AttentionContext& ctx, double ratio) override;
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/presses/detail/key_rerotation-inl.h>
#endif
