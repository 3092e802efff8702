#pragma once
// Budget arithmetic shared by every press (docs/architecture.md, "Budgets"). Host-side integer
// math from shapes only, so selecting tokens never needs a device synchronisation.

#include <cstdint>
#include <string_view>
#include <vector>

namespace pikv {

// Throws pikv::Error unless 0 <= ratio < 1 (or <= 1 when allow_one). `what` names the parameter in
// the message, e.g. "KnormOptions.compression_ratio".
void check_compression_ratio(double ratio, std::string_view what, bool allow_one = false);

// Tokens kept out of n at compression ratio `ratio` (fraction REMOVED): trunc(n * (1 - ratio)) in
// double, as kvpress 0.5.4 computes it. (10, 0.9) -> 0, (100, 0.9) -> 9, (4096, 0.875) -> 512.
// ratio may be 1.0 (keeps 0: PerLayer allows it at run time). Throws for n < 0 or ratio outside [0, 1].
[[nodiscard]] int64_t n_kept(int64_t n, double ratio);

// Python's round(): half to even (round(2.5) == 2, round(3.5) == 4).
[[nodiscard]] double round_half_even(double x);

// Overall ratio of presses applied one after another: 1 - prod(1 - r_i).
[[nodiscard]] double composed_ratio(const std::vector<double>& ratios);

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/core/detail/budget-inl.h>
#endif
