#!/bin/bash
# GPU benchmark in one command: builds pikv_bench_gpu against the CUDA LibTorch of the machine's torch
# wheel, then measures ours and transformers + kvpress on the same card, one after the other, and writes
# the comparison table. Works on a server without package registries: the C++ dependencies travel as
# Debian packages in .deps/ and the peer's Python packages as wheels in .deps/wheels/ (make both on a
# machine with registries: `bash bench/gpu/run.sh --fetch`).
#
#   bash bench/gpu/run.sh [--cases 1x4096,1x32768,8x4096,8x32768] [--presses "none;knorm;..."] [--out DIR]
#                         [--skip-peer|--skip-ours] [--longest N] [--fetch] [--config FILE --device cpu  (a check off the GPU)]
# --longest N: batch 1 at N tokens without a press and with Knorm only (peak memory of a long context),
# appended to the same results.
#
# Results: DIR/pikv.jsonl, DIR/peer.jsonl, DIR/gpu_<card>.md (default DIR: build-gpu/results).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
cases=1x4096,1x32768,8x4096,8x32768
longest=0
out=${OUT:-$root/build-gpu/results}
peer=1
ours=1
extra=()
py=${PYTHON:-python3}  # the Python that holds torch (its wheel carries LibTorch)
presses="none;knorm;snapkv;expected_attention;adakv:press=expected_attention"
ours_timeout=${PIKV_GPU_OURS_TIMEOUT:-300}
peer_timeout=${PIKV_GPU_PEER_TIMEOUT:-300}
while [ $# -gt 0 ]; do
  case "$1" in
    --cases) cases=$2; shift 2 ;;
    --presses) presses=$2; shift 2 ;;
    --config) extra+=(--config "$2"); shift 2 ;;
    --device) extra+=(--device "$2"); shift 2 ;;
    --out) out=$2; shift 2 ;;
    --skip-peer) peer=0; shift ;;
    --skip-ours) ours=0; shift ;;
    --longest) longest=$2; shift 2 ;;
    --fetch)
      # On a Debian machine with registries: the packages and wheels this script needs elsewhere.
      mkdir -p .deps/wheels
      (cd .deps && apt-get download libfmt-dev libfmt9 nlohmann-json3-dev libpcre2-dev libpcre2-8-0 libpcre2-16-0 \
        libpcre2-32-0 libpcre2-posix3 pkgconf pkgconf-bin libpkgconf3 >/dev/null)
      python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .deps/wheels transformers==5.2.0 kvpress==0.5.4 tokenizers==0.22.2
      ls .deps .deps/wheels; exit 0 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (--help)" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
step() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# C++ dependencies: the carried Debian packages when there are some (found first), else the system's.
prefix_path="$("$py" -c 'import torch; print(torch.utils.cmake_prefix_path)')"
if ls .deps/*.deb >/dev/null 2>&1; then
  step "unpacking $(ls .deps/*.deb | wc -l) Debian packages into .deps/root"
  mkdir -p .deps/root
  for f in .deps/*.deb; do dpkg -x "$f" .deps/root; done
  for pc in $(find .deps/root -name '*.pc'); do sed -i "s|^prefix=/usr\$|prefix=$root/.deps/root/usr|" "$pc"; done
  arch=$(ls .deps/root/usr/lib | grep -m1 linux-gnu || true)
  export PATH="$root/.deps/root/usr/bin:$PATH"
  export PKG_CONFIG_PATH="$root/.deps/root/usr/lib/$arch/pkgconfig:$root/.deps/root/usr/share/pkgconfig"
  export LD_LIBRARY_PATH="$root/.deps/root/usr/lib/$arch${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  prefix_path="$root/.deps/root/usr;$prefix_path"
fi

step "configuring and building pikv_bench_gpu"
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix_path" \
  -DPIKV_BUILD_TESTS=OFF -DPIKV_BUILD_EXAMPLES=OFF -DPIKV_BUILD_TOOLS=OFF -DPIKV_BUILD_BENCH=ON -DPIKV_INSTALL=OFF >"$out/cmake.log" 2>&1 ||
  { tail -30 "$out/cmake.log"; exit 1; }
cmake --build build-gpu --target pikv_bench_gpu >"$out/build.log" 2>&1 || { tail -40 "$out/build.log"; exit 1; }

card=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 || echo unknown)
step "card: $card"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-8}
site=/tmp/pikv-peer-site
if [ "$peer" = 1 ] && ls .deps/wheels/*.whl >/dev/null 2>&1 && [ ! -d "$site" ]; then
  step "installing the peer's wheels into $site"
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .deps/wheels/*.whl
fi
# One measurement round: ours, then the peer, on the given cases and presses; rows are appended.
measure() {
  local c=$1 p=$2
  if [ "$ours" = 1 ]; then
  step "pikv: cases $c"
  timeout "$ours_timeout" build-gpu/bin/pikv_bench_gpu --cases "$c" --presses "$p" "${extra[@]}" >>"$out/pikv.jsonl" ||
    step "pikv_bench_gpu stopped (exit $?); the table keeps what it measured"
  fi
  [ "$peer" = 1 ] || return 0
  step "transformers + kvpress: cases $c"
  PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 timeout "$peer_timeout" \
    "$py" bench/gpu/peer_bench.py --cases "$c" --presses "$p" "${extra[@]}" >>"$out/peer.jsonl" ||
    step "peer_bench.py stopped (exit $?); the table keeps what it measured"
}
: >"$out/pikv.jsonl"
: >"$out/peer.jsonl"
[ -n "$cases" ] && measure "$cases" "$presses"
[ "$longest" -gt 0 ] && measure "1x$longest" "none;knorm"

slug=$(echo "$card" | tr -cs 'A-Za-z0-9' '_' | sed 's/_$//')
"$py" bench/gpu/report.py --ours "$out/pikv.jsonl" --peer "$out/peer.jsonl" --card "$card" \
  --command "bash bench/gpu/run.sh --cases $cases" >"$out/gpu_$slug.md"
cat "$out/gpu_$slug.md"
