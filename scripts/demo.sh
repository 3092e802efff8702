#!/usr/bin/env bash
# The main job: installs what is missing, builds the CLI (the library and build/bin/pikv only: the
# tests and benchmarks are left for scripts/test.sh), and runs `pikv` (the demo). Arguments go to pikv,
# e.g. ./scripts/demo.sh demo --tokens 4096 --ratio 0.75
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --target pikv_cli
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
exec build/bin/pikv "$@"
