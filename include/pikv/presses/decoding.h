#pragma once
// DecodingPress: compresses during decoding. It buffers each layer's decoding hidden states; every
// compression_interval decoding forwards (or when one forward brings target_size tokens or more) it
// compresses the layer's whole cache to target_size tokens with the base scorer, at the ratio rho*
// with int(n (1 - rho*)) == target_size (bisection, as kvpress). The question forward counts as a
// decoding step. A head-wise base (AdaKV) is refused: its ragged cache would have to be re-compressed.
// compression_ratio_decoding.h and prefill_decoding.h build on it.

#include <pikv/core/press.h>

#include <map>
#include <memory>
#include <vector>

namespace pikv {

#define PIKV_DECODING_OPTIONS(X)                                                                                     \
  X(int64_t, compression_interval, 512, rule::at_least(1), "decoding steps between compressions")                  \
  X(int64_t, target_size, 2048, rule::at_least(1), "tokens kept per head after a compression")                     \
  X(int64_t, hidden_states_buffer_size, 256, rule::at_least(0), "decoding steps whose hidden states are kept")

struct DecodingOptions {
  PIKV_OPTIONS(DecodingOptions, PIKV_DECODING_OPTIONS)
};

class DecodingPress : public detail::Wrapping<Press> {
 public:
  using Options = DecodingOptions;
  static constexpr const char* kName = "decoding";
  explicit DecodingPress(std::shared_ptr<ScorerPress> base, const DecodingOptions& options = {});

  std::string name() const override { return kName; }
  std::string describe() const override;
  // The ratio of the last compression (0 before any).
  double compression_ratio() const override { return last_ratio_; }
  bool acts_during_decoding() const override { return true; }
  const ScorerPress* scorer() const override { return press_.get(); }
  bool should_compress(const AttentionContext& ctx) const override { return !ctx.is_prefill; }
  // Buffers ctx.hidden_states; returns a skipped result except on compression steps.
  CompressedKV compress(const AttentionContext& ctx) override;
  void reset() override;
  void on_detach() override;
  void on_prefill_begin() override { reset(); }  // a new request

  // The ratio rho with int(n (1 - rho)) == target found by kvpress's bisection (0 when n <= target).
  static double target_ratio(int64_t n, int64_t target);

 protected:
  // When to compress and what to keep, shared by the decoding presses.
  struct Schedule {
    int64_t compression_interval = 512;
    int64_t target_size = 2048;
    int64_t hidden_states_buffer_size = 256;
  };
  DecodingPress(std::shared_ptr<ScorerPress> base, const Schedule& schedule, const char* who);
  // Tokens to keep after this forward (DecodingPress: target_size).
  virtual int64_t target(const AttentionContext& ctx) const { return schedule_.target_size; }
  // Called for every decoding forward before the schedule is checked (CAM accumulates attention).
  virtual void observe_step(const AttentionContext& ctx) {}
  // Whether this forward compresses, after `steps` forwards since the last compression.
  virtual bool compression_due(const AttentionContext& ctx, int64_t steps, int64_t target_tokens) const {
    return steps >= schedule_.compression_interval || ctx.forward_length() >= target_tokens;
  }
  // The compression itself: `sub` is the context with the buffered forwards as its queries, `ratio`
  // the ratio that keeps target_tokens (DecodingPress: the base press's top-k at that ratio).
  virtual CompressedKV compress_buffered(const AttentionContext& sub, double ratio, int64_t target_tokens,
                                         int64_t steps) {
    return press_->compress_at(sub, ratio);
  }
  const Schedule& schedule() const { return schedule_; }

 private:
  Schedule schedule_;
  std::map<int64_t, std::vector<at::Tensor>> buffers_;  // layer -> hidden states [B, q, Dm] per forward
  std::map<int64_t, int64_t> steps_;                    // layer -> forwards since the last compression
  double last_ratio_ = 0.0;
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/presses/detail/decoding-inl.h>
#endif
