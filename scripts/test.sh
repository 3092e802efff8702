#!/usr/bin/env bash
# Installs what is missing, builds every target (the tests need them all), and runs every test: the
# GoogleTest suites and the parity tests against kvpress (a CTest fixture first writes their goldens
# with the pinned kvpress). Extra arguments go to ctest, e.g. ./scripts/test.sh -R Parity
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --with-gemma
export OMP_NUM_THREADS=2
# Idle OpenMP threads sleep instead of spinning: two tests share the 2 cores (see tests/CMakeLists.txt).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
exec ctest --test-dir build --output-on-failure -j 2 "$@"
