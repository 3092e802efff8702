#!/usr/bin/env bash
# Writes the headers CMake generates (pikv/version.h, pikv/presses.h) into DIR/pikv/, for the builds
# that compile the header-only library without CMake (tests/sanitize, tests/fuzz). Run from the root.
set -euo pipefail
DIR=$1
mkdir -p "$DIR/pikv"
ver=$(sed -n 's/^project(PiKVPress VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
IFS=. read -r MA MI PA <<< "$ver"
sed -e "s/@PROJECT_VERSION_MAJOR@/$MA/; s/@PROJECT_VERSION_MINOR@/$MI/; s/@PROJECT_VERSION_PATCH@/$PA/" \
  -e "s/@PROJECT_VERSION@/$ver/" cmake/version.h.in > "$DIR/pikv/version.h"
# Every press header, as src/CMakeLists.txt generates the umbrella.
{ echo '#pragma once'; for h in include/pikv/presses/*.h; do echo "#include <pikv/presses/${h##*/}>"; done; } \
  > "$DIR/pikv/presses.h"
