# Dependencies of the library target. Each is real and pinned where the project installs it:
#   LibTorch  - tensors, autograd, CPU/CUDA kernels; from the PyPI torch wheel (scripts/setup.sh pins it).
#   fmt       - formatting for errors, logs and stats; public (stats have formatters). The fmt 12 headers
#               that the torch wheel ships in its include tree are used header-only: that tree comes first
#               on every LibTorch user's include path and would shadow a system fmt (Debian's is fmt 9, so
#               mixing its library with those headers fails to link).
#   nlohmann  - JSON for safetensors headers and goldens (Debian nlohmann-json3-dev); private.
#   PCRE2     - the tokenizers' pre-tokenizer regexes need Unicode classes and lookahead, which
#               std::regex and RE2 lack (Debian libpcre2-dev); private.

# LibTorch: an explicit Torch_DIR / CMAKE_PREFIX_PATH wins; otherwise use the repository's own virtual
# environment (.venv, made by scripts/setup.sh) so a plain `cmake -S . -B build` works after set-up.
if(NOT Torch_DIR)
  set(_pikv_venv_python "${PROJECT_SOURCE_DIR}/.venv/bin/python")
  if(EXISTS "${_pikv_venv_python}")
    execute_process(
      COMMAND "${_pikv_venv_python}" -c "import torch.utils; print(torch.utils.cmake_prefix_path)"
      OUTPUT_VARIABLE _pikv_torch_prefix OUTPUT_STRIP_TRAILING_WHITESPACE
      RESULT_VARIABLE _pikv_torch_rc ERROR_QUIET)
    if(_pikv_torch_rc EQUAL 0 AND EXISTS "${_pikv_torch_prefix}")
      list(APPEND CMAKE_PREFIX_PATH "${_pikv_torch_prefix}")
    endif()
  endif()
endif()
# GLOBAL: when PiKVPress is added with add_subdirectory()/FetchContent, the parent project links
# pikv::pikv and therefore needs to see these imported targets too. A parent that already found
# Torch keeps its own.
if(CMAKE_VERSION VERSION_GREATER_EQUAL 3.24)
  set(_pikv_global GLOBAL)
endif()
if(NOT TARGET torch)
  find_package(Torch REQUIRED ${_pikv_global})
endif()
if(NOT TARGET nlohmann_json::nlohmann_json)
  find_package(nlohmann_json 3 REQUIRED ${_pikv_global})
endif()
# OpenMP: ATen's at::parallel_for is inline in its headers and runs in parallel only in translation
# units compiled with OpenMP; without it our kernels (quantized GEMV, half-precision decode attention)
# ran on one thread. LibTorch itself uses libgomp, which this links (one runtime per process: same
# soname).
if(NOT TARGET OpenMP::OpenMP_CXX)
  find_package(OpenMP REQUIRED COMPONENTS CXX ${_pikv_global})
endif()
find_package(PkgConfig REQUIRED)
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
