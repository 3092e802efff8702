#pragma once
// Build configuration of the library's headers.
//
// PiKVPress is header-heavy in the way spdlog and fmt are: every public header declares, and the heavy
// LibTorch bodies live in include/pikv/<layer>/detail/*-inl.h. By default those bodies are compiled
// once into libpikv (fast consumer builds: a consumer TU parses declarations only). A consumer that
// defines PIKV_HEADER_ONLY (the CMake target pikv::pikv_header_only does) gets the bodies included by
// the headers themselves and compiles everything with its own flags and LibTorch.

#ifdef PIKV_HEADER_ONLY
#define PIKV_INLINE inline
#else
#define PIKV_INLINE
#endif
