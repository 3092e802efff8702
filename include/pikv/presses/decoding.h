#pragma once
// Presses that act during decoding.
//  - DecodingPress: buffers each layer's decoding hidden states; every compression_interval decoding
//    forwards (or when one forward brings target_size tokens or more) it compresses the layer's whole
//    cache to target_size tokens with the base scorer, at the ratio rho* with int(n (1 - rho*)) ==
//    target_size (bisection). The question forward counts as a decoding step.
//  - CompressionRatioDecodingPress: the same with target = max(1, int(tokens seen * (1 - r))).
//  - PrefillDecodingPress: one press for the prefill, one decoding press afterwards.
// A head-wise base (AdaKV) is refused: its ragged cache would have to be re-compressed.

#include <pikv/core/press.h>

#include <map>
#include <memory>
#include <vector>

namespace pikv {

struct DecodingOptions {
  int64_t compression_interval = 512;      // decoding forwards between compressions, >= 1
  int64_t target_size = 2048;              // tokens kept per head after a compression, >= 1
  int64_t hidden_states_buffer_size = 256;  // decoding forwards whose hidden states are kept, >= 0
};

class DecodingPress : public Press {
 public:
  DecodingPress(std::shared_ptr<ScorerPress> base, DecodingOptions options = {});
  std::string name() const override { return "decoding"; }
  std::string describe() const override;
  // The ratio of the last compression (0 before any).
  double compression_ratio() const override { return last_ratio_; }
  PressRequirements requirements() const override { return base_->requirements(); }
  bool acts_during_decoding() const override { return true; }
  const ScorerPress* scorer() const override { return base_.get(); }
  bool should_compress(const AttentionContext& ctx) const override { return !ctx.is_prefill; }
  // Buffers ctx.hidden_states; returns a skipped result except on compression steps.
  CompressedKV compress(const AttentionContext& ctx) override;
  void reset() override;
  void on_detach() override { reset(); }
  void on_prefill_begin() override { reset(); }  // a new request

  // The ratio rho with int(n (1 - rho)) == target found by kvpress's bisection (0 when n <= target).
  static double target_ratio(int64_t n, int64_t target);

 protected:
  // Tokens to keep after this forward (DecodingPress: target_size).
  virtual int64_t target(const AttentionContext& ctx) const { return options_.target_size; }

 private:
  std::shared_ptr<ScorerPress> base_;
  DecodingOptions options_;
  std::map<int64_t, std::vector<at::Tensor>> buffers_;  // layer -> hidden states [B, q, Dm] per forward
  std::map<int64_t, int64_t> steps_;                    // layer -> forwards since the last compression
  double last_ratio_ = 0.0;
};

class CompressionRatioDecodingPress : public DecodingPress {
 public:
  CompressionRatioDecodingPress(std::shared_ptr<ScorerPress> base, double target_compression_ratio = 0.5,
                                DecodingOptions options = {});
  std::string name() const override { return "compression_ratio_decoding"; }
  std::string describe() const override;
  double compression_ratio() const override { return ratio_; }

 protected:
  int64_t target(const AttentionContext& ctx) const override;

 private:
  double ratio_;
};

class PrefillDecodingPress : public Press {
 public:
  // Either press may be null (that phase is not compressed), not both.
  PrefillDecodingPress(std::shared_ptr<Press> prefilling_press, std::shared_ptr<DecodingPress> decoding_press);
  std::string name() const override { return "prefill_decoding"; }
  std::string describe() const override;
  double compression_ratio() const override;
  PressRequirements requirements() const override;
  bool head_wise() const override { return prefill_ && prefill_->head_wise(); }
  bool acts_during_decoding() const override { return decoding_ != nullptr; }
  const ScorerPress* scorer() const override;
  const ScorerPress* scorer_for(const AttentionContext& ctx) const override;
  bool should_compress(const AttentionContext& ctx) const override;
  CompressedKV compress(const AttentionContext& ctx) override;
  void on_attach(const HookableModel& model) override;
  void on_detach() override;
  void on_prefill_begin() override;
  void on_prefill_end() override;
  void reset() override;

 private:
  std::shared_ptr<Press> prefill_;
  std::shared_ptr<DecodingPress> decoding_;
};

}  // namespace pikv
