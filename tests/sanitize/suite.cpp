// The suites tests/sanitize/run_sanitized.sh compiles under a sanitizer, as ONE translation unit: the
// header-only library is compiled once, with them (a separate instrumented build of libpikv would cost
// ~15 minutes on 2 cores). Untrusted input: every malformed-file test. Guards and threads: press
// installation, the per-thread press slot, and several threads on one model.
#include "../unit/test_guard.cpp"
#include "../unit/test_untrusted_input.cpp"
