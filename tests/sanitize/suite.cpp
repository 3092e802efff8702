// The suites tests/sanitize/run_sanitized.sh compiles under a sanitizer, as ONE translation unit: the
// header-only library is compiled once, with them (a separate instrumented build of libpikv would cost
// ~15 minutes on 2 cores). Untrusted input: every malformed-file test (the Untrusted* suites, in the
// files of the units that parse the input). Guards and threads: press installation, the per-thread
// press slot, and several threads on one model. The files hold their units' other tests too.
#include "../unit/core/test_hookable_model.cpp"
#include "../unit/io/test_files.cpp"
#include "../unit/io/test_gguf.cpp"
#include "../unit/io/test_tokenizer.cpp"
#include "../unit/models/test_config.cpp"
#include "../unit/models/test_loader.cpp"
#include "../unit/presses/test_duo_attention.cpp"
#include "../unit/presses/test_kvcompose.cpp"
#include "../unit/presses/test_kvzip.cpp"
