#pragma once

#include <pikv/core/budget.h>
#include <pikv/core/config.h>
#include <pikv/core/registry.h>
#include <pikv/presses/compression_ratio_decoding.h>

#include <algorithm>

namespace pikv {

PIKV_INLINE CompressionRatioDecodingPress::CompressionRatioDecodingPress(std::shared_ptr<ScorerPress> base,
                                                                         const CompressionRatioDecodingOptions& options)
    : DecodingPress(std::move(base),
                    (validate_options(options),
                     Schedule{options.compression_interval(), 0, options.hidden_states_buffer_size()}),
                    kName),
      options_(options) {}

PIKV_INLINE std::string CompressionRatioDecodingPress::describe() const {
  return describe_wrapper(name(), press(), describe_options(options_));
}

PIKV_INLINE int64_t CompressionRatioDecodingPress::target(const AttentionContext& ctx) const {
  const int64_t seen = ctx.position_offset + ctx.forward_length();  // last position + 1
  return std::max<int64_t>(1, n_kept(seen, options_.target_compression_ratio()));
}

PIKV_REGISTER_PRESS(CompressionRatioDecodingPress,
                    wrapper_press<CompressionRatioDecodingPress>("compress during decoding to a fraction of the tokens seen",
                                                                 PressKind::decoding,
                                                                 InnerSpec{"press", "inner.", "base", false}));

}  // namespace pikv
