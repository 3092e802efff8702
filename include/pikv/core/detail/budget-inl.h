#pragma once

#include <pikv/core/config.h>
#include <pikv/core/budget.h>
#include <pikv/core/detail/check.h>

#include <cfenv>
#include <cmath>

namespace pikv {

PIKV_INLINE void check_compression_ratio(double ratio, std::string_view what, bool allow_one) {
  const bool ok = std::isfinite(ratio) && ratio >= 0.0 && (allow_one ? ratio <= 1.0 : ratio < 1.0);
  PIKV_CHECK(ok, "{} must be in [0, {}, got {}", what, allow_one ? "1]" : "1)", ratio);
}

PIKV_INLINE int64_t n_kept(int64_t n, double ratio) {
  PIKV_CHECK(n >= 0, "token count must be >= 0, got {}", n);
  check_compression_ratio(ratio, "compression ratio", /*allow_one=*/true);
  // trunc(n * (1 - ratio)) in double, exactly as kvpress: n - n * ratio would round differently
  // ((10, 0.9) gives 1 instead of 0).
  return static_cast<int64_t>(static_cast<double>(n) * (1.0 - ratio));
}

PIKV_INLINE double round_half_even(double x) {
  // nearbyint honours the current rounding mode; the default (FE_TONEAREST) is half to even.
  return std::nearbyint(x);
}

PIKV_INLINE double composed_ratio(const std::vector<double>& ratios) {
  double kept = 1.0;
  for (double r : ratios) kept *= 1.0 - r;
  return 1.0 - kept;
}

}  // namespace pikv
