#!/usr/bin/env bash
# CPU speed in one run: PiKVPress (quantized weights + float16 cache, and the exact dequantised path),
# llama.cpp (llama-cpp-python, built into bench/.venv-llama by this script, never into the project's
# .venv or CI) and transformers (+ kvpress for the presses), on the same GGUF, the same token ids and
# thread count, at several context lengths, uncompressed and with SnapKV and AdaKV(ExpectedAttention)
# at 0.5 and 0.75. Writes OUT/results.jsonl, OUT/README.md (tables, the bound, the targets) and a plot.
#   bench/run_cpu_speed.sh [--tokens 1500,4000,8000] [--decode-steps 128] [--repeats 1]
#                          [--out docs/results/cpu_speed] [--parts pikv,llama,transformers] [--append]
# --parts runs some parts only; with --append their rows replace those of an earlier run in OUT.
# About 25 minutes on 2 cores with the defaults (each configuration prefills its context once).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
MODEL=${PIKV_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
BUILD=${PIKV_BUILD:-build}
TOKENS=1500,4000,8000 STEPS=128 REPEATS=1 OUT=docs/results/cpu_speed PARTS=pikv,llama,transformers APPEND=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --tokens) TOKENS=$2; shift 2 ;;
    --decode-steps) STEPS=$2; shift 2 ;;
    --repeats) REPEATS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --parts) PARTS=$2; shift 2 ;;
    --append) APPEND=1; shift ;;
    *) echo "usage: $0 [--tokens N,...] [--decode-steps S] [--repeats R] [--out DIR] [--parts pikv,llama,transformers] [--append]" >&2
       exit 2 ;;
  esac
done
PRESSES="none;snapkv;adakv:press=expected_attention"
RATIOS=0.5,0.75
mkdir -p "$OUT"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

has_part() { [[ ",$PARTS," == *",$1,"* ]]; }
# llama.cpp's Python binding in its own environment (compiled from source, ~10 minutes the first time).
if has_part llama && [[ ! -x bench/.venv-llama/bin/python ]] || ! bench/.venv-llama/bin/python -c "import llama_cpp" 2>/dev/null; then
  echo "installing llama-cpp-python into bench/.venv-llama (built from source) ..." >&2
  python3 -m venv bench/.venv-llama
  bench/.venv-llama/bin/pip install -q "llama-cpp-python==0.3.36" numpy
fi

echo "read bandwidth ..." >&2
.venv/bin/python - "$tmp/bandwidth.json" <<'PY'
import json, sys, time, torch
x = torch.ones(2**28)  # 1 GiB of float32
x.sum()
best = min((lambda t0: (x.sum(), time.perf_counter() - t0)[1])(time.perf_counter()) for _ in range(5))
json.dump({"read_gb_s": x.numel() * 4 / best / 1e9}, open(sys.argv[1], "w"))
print(f"  {x.numel() * 4 / best / 1e9:.1f} GB/s", file=sys.stderr)
PY

# The token ids every implementation reads: torch's CPU generator seeded with the length (what
# pikv_bench_model and transformers_bench.py draw themselves).
.venv/bin/python - "$TOKENS" "$MODEL" "$tmp/ids.json" <<'PY'
import json, sys, torch
from gguf import GGUFReader
vocab = len(GGUFReader(sys.argv[2]).fields["tokenizer.ggml.tokens"].data)
ids = {}
for n in map(int, sys.argv[1].split(",")):
    ids[n] = torch.randint(100, vocab, (1, n), generator=torch.Generator().manual_seed(n))[0].tolist()
json.dump(ids, open(sys.argv[3], "w"))
PY

[[ $APPEND == 1 ]] || : > "$OUT/results.jsonl"  # written as each part finishes
IFS=, read -ra lengths <<< "$TOKENS"
for n in "${lengths[@]}"; do  # one process per length and path: peak RSS is that run's
  has_part pikv || break
  "$BUILD/bin/pikv_bench_model" --model "$MODEL" --tokens "$n" --decode-steps "$STEPS" --repeats "$REPEATS" \
    --presses "$PRESSES" --ratios "$RATIOS" >> "$OUT/results.jsonl"
  "$BUILD/bin/pikv_bench_model" --model "$MODEL" --tokens "$n" --decode-steps "$STEPS" --repeats "$REPEATS" \
    --exact --presses "none" >> "$OUT/results.jsonl"
done
has_part llama && bench/.venv-llama/bin/python bench/cpu/llama_cpp_bench.py --model "$MODEL" --ids "$tmp/ids.json" \
  --decode-steps "$STEPS" --repeats "$REPEATS" >> "$OUT/results.jsonl"
if has_part transformers; then
  for n in "${lengths[@]}"; do
    .venv/bin/python bench/transformers_bench.py --model "$MODEL" --tokens "$n" --decode-steps "$STEPS" \
      --repeats "$REPEATS" --presses "$PRESSES" --ratios "$RATIOS" >> "$OUT/results.jsonl"
  done
fi
cp "$tmp/bandwidth.json" "$OUT/bandwidth.json"  # this run's measurement
.venv/bin/python bench/cpu/report.py "$OUT/results.jsonl" "$OUT/bandwidth.json" --out "$OUT" \
  --command "bench/run_cpu_speed.sh --tokens $TOKENS --decode-steps $STEPS --repeats $REPEATS --parts $PARTS"
