#pragma once
// CompressionRatioDecodingPress: DecodingPress (decoding.h) whose target is a fraction of the tokens
// seen: max(1, int(tokens seen * (1 - target_compression_ratio))).

#include <pikv/presses/decoding.h>

namespace pikv {

#define PIKV_COMPRESSION_RATIO_DECODING_OPTIONS(X)                                                                 \
  X(double, target_compression_ratio, 0.5, rule::ratio(), "fraction of the tokens seen that is removed")          \
  X(int64_t, compression_interval, 512, rule::at_least(1), "decoding steps between compressions")                \
  X(int64_t, hidden_states_buffer_size, 256, rule::at_least(0), "decoding steps whose hidden states are kept")

struct CompressionRatioDecodingOptions {
  PIKV_OPTIONS(CompressionRatioDecodingOptions, PIKV_COMPRESSION_RATIO_DECODING_OPTIONS)
};

class CompressionRatioDecodingPress : public DecodingPress {
 public:
  using Options = CompressionRatioDecodingOptions;
  static constexpr const char* kName = "compression_ratio_decoding";
  explicit CompressionRatioDecodingPress(std::shared_ptr<ScorerPress> base,
                                         const CompressionRatioDecodingOptions& options = {});
  std::string name() const override { return kName; }
  std::string describe() const override;
  double compression_ratio() const override { return options_.target_compression_ratio(); }

 protected:
  int64_t target(const AttentionContext& ctx) const override;

 private:
  CompressionRatioDecodingOptions options_;
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/presses/detail/compression_ratio_decoding-inl.h>
#endif
