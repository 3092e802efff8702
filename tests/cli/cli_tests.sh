#!/usr/bin/env bash
# The pikv command line as a user meets it: good runs produce output, bad input gives a clear message
# and a non-zero exit status, never a crash.
# Usage: cli_tests.sh PATH/TO/pikv                      the commands on the default model
#        cli_tests.sh PATH/TO/pikv EXPORT_DIR MODEL.gguf  the same commands on exported graphs (default.pt2,
#                                                         default.pt from reference.export_goldens)
set -u
PIKV=$1
EXPORTED=${2:-}
GGUF=${3:-}
fails=0
passes=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# expect STATUS "MESSAGE-FRAGMENT" -- ARGS...   (stdin from $STDIN if set)
expect() {
  local want_status=$1 fragment=$2
  shift 3
  local out status
  out=$("$PIKV" "$@" < "${STDIN:-/dev/null}" 2>&1)
  status=$?
  if [ "$status" -ne "$want_status" ] || ! grep -qF -- "$fragment" <<< "$out"; then
    echo "FAIL: pikv $* -> status $status (want $want_status), output lacks '$fragment':"
    echo "$out" | head -5
    fails=$((fails + 1))
  else
    passes=$((passes + 1))
  fi
}

if [ -n "$EXPORTED" ]; then
  cp "$EXPORTED/default.pt2" "$tmp/smol.pt2"
  cp "$EXPORTED/default.pt" "$tmp/smol.pt"
  ctx="The Zephyr project ships every Tuesday. Its lead engineer is Amara Osei, who joined in 2021."
  for graph in "$tmp/smol.pt2" "$tmp/smol.pt"; do
    expect 2 "is an exported graph without a tokenizer: pass --tokenizer" -- generate --model "$graph" --context "$ctx" \
      --question "Who is the lead engineer?"
    expect 0 "tokens, kept" -- generate --model "$graph" --tokenizer "$GGUF" --press knorm --ratio 0.5 --context "$ctx" \
      --question "Who is the lead engineer?" --max-new-tokens 4
    expect 0 "wrote logits [1, 4, 49152]" -- logits --model "$graph" --tokens "1 2 3 4" --out "$tmp/logits.safetensors"
    expect 0 "kept 2700 of 5490" -- score --model "$graph" --press snapkv --option window_size=4 --ratio 0.5 \
      --tokens "$(seq -s ' ' 100 160)" --out "$tmp/score.safetensors"
    expect 2 "calibrate-router needs a model PiKVPress runs itself" -- calibrate-router --model "$graph" --out "$tmp/gates.json"
    # The graph's own dtype and device may be asked for; others are refused, not ignored.
    expect 0 "wrote logits [1, 2, 49152]" -- logits --model "$graph" --dtype float32 --device cpu --tokens "1 2" \
      --out "$tmp/logits.safetensors"
    expect 2 "was exported in float32, LoadOptions asks for dtype bfloat16" -- logits --model "$graph" --dtype bfloat16 \
      --tokens "1 2" --out "$tmp/logits.safetensors"
    # A context beyond the graph's capacity (1024 for the default model): the clear message, before the graph runs.
    expect 2 "exceed the fixed capacity of" -- logits --model "$graph" --tokens "$(seq -s ' ' 1 5000)" \
      --out "$tmp/logits.safetensors"
    expect 2 "keeps its KV cache in float32" -- logits --model "$graph" --kv-dtype float16 --tokens "1 2" \
      --out "$tmp/logits.safetensors"
  done
  # A tokenizer found beside the graph: FILE.gguf next to FILE.pt2.
  ln -s "$(realpath "$GGUF")" "$tmp/smol.gguf"
  expect 0 "tokens, kept" -- generate --model "$tmp/smol.pt2" --press streaming_llm --ratio 0.5 --context "$ctx" \
    --question "Who?" --max-new-tokens 2
  printf 'not a package' > "$tmp/broken.pt2"
  expect 2 "broken.pt2" -- logits --model "$tmp/broken.pt2" --tokens "1 2" --out "$tmp/x.safetensors"
  echo "$passes passed, $fails failed"
  [ "$fails" -eq 0 ]
  exit
fi

expect 0 "needle-in-a-haystack" -- --help
expect 0 "pikv 0." -- --version
expect 0 "streaming_llm" -- presses
expect 2 "unknown command 'frobnicate'" -- frobnicate
expect 2 "needs a non-empty --context" -- generate --question "q?"
expect 2 "at least one --question" -- generate --context "c"
expect 2 "--ratio must be in [0, 1), got 1.5" -- generate --context c --question q --press knorm --ratio 1.5
expect 2 "unknown press 'snapk'; available presses: " -- generate --context c --question q --press snapk
expect 2 "press 'knorm' has no option 'n_sinks'" -- generate --context c --question q --press knorm --option n_sinks=3
expect 2 "--option needs KEY=VALUE" -- generate --context c --question q --press knorm --option n_sink
expect 2 "model path '/nonexistent/model.gguf' does not exist" -- generate --model /nonexistent/model.gguf --context c --question q
printf 'not a gguf at all, just text' > "$tmp/fake.gguf"
expect 2 "is not a GGUF file" -- generate --model "$tmp/fake.gguf" --context c --question q
printf 'bad \xc3\x28 utf8' > "$tmp/bad.txt"
expect 2 "not valid UTF-8" -- generate --context-file "$tmp/bad.txt" --question q
expect 2 "cannot read context file" -- generate --context-file "$tmp/missing.txt" --question q
expect 2 "--max-new-tokens needs an integer >= 1" -- generate --context c --question q --max-new-tokens 0
expect 2 "exactly one" -- generate --context c --question q --chat-template "no placeholder"

# Real runs on the default model.
expect 0 '"answers"' -- generate --context "The meeting is on Friday at noon." --question "When is the meeting?" \
  --press knorm --ratio 0.25 --max-new-tokens 6 --json
expect 0 "A: " -- generate --context "Paris is the capital of France." --question "What is the capital of France?" \
  --question "Which country?" --max-new-tokens 4
printf 'Hello world\n12 apples\n' > "$tmp/lines.txt"
STDIN="$tmp/lines.txt" expect 0 "19556 905" -- tokenize
printf '19556 905\n' > "$tmp/ids.txt"
STDIN="$tmp/ids.txt" expect 0 "Hello world" -- tokenize --decode
STDIN="$tmp/bad.txt" expect 2 "line 1 is not valid UTF-8" -- tokenize
expect 0 "wrote logits [1, 3, 49152]" -- logits --tokens "1 2 3" --out "$tmp/l.safetensors"
expect 2 "--tokens must be non-negative integers" -- logits --tokens "1 x" --out "$tmp/l.safetensors"
# The main job (`pikv demo`): the full cache, KVzip and query-aware AdaKV(ExpectedAttention) find the
# needle at 0.5 with half the cache really freed; the cheap contrast press is only required to run.
demo=$("$PIKV" demo 2>&1)
demo_status=$?
for row in "none (full cache)              100%  33.79 MiB  33.79 MiB" \
           "kvzip @ 0.5                     50%  33.79 MiB  16.90 MiB" \
           "adakv(EA) @ 0.5, query-aware    50%  33.99 MiB  16.98 MiB"; do
  line=$(grep -F -- "$row" <<< "$demo")
  if [ "$demo_status" -ne 0 ] || ! grep -qF "yes  The secret code for the vault is 7319" <<< "$line"; then
    echo "FAIL: pikv demo (status $demo_status): row '$row' is missing or lost the needle:"
    echo "$demo" | grep -v "% of layers" | tail -15
    fails=$((fails + 1))
  else
    passes=$((passes + 1))
  fi
done
if grep -qE "^knorm @ 0.5 +50%" <<< "$demo"; then
  passes=$((passes + 1))
else
  echo "FAIL: pikv demo lacks the knorm row"
  fails=$((fails + 1))
fi
ids=$(seq 100 180 | tr '\n' ' ')
expect 0 "kept 3600 of 7290" -- score --tokens "$ids" --press snapkv --option window_size=16 --out "$tmp/s.safetensors"
expect 0 "adakv(press=expected_attention" -- score --tokens "$ids" --press adakv --option press=expected_attention \
  --ratio 0.5 --out "$tmp/a.safetensors"
expect 0 "decoding(press=knorm" -- score --tokens "$ids" --press decoding --option press=knorm \
  --option target_size=40 --option compression_interval=2 --decode-tokens "5 6 7" --save-kv --out "$tmp/d.safetensors"
# One press spec syntax in every command: NAME:KEY=VALUE,... as eval and needles take it, --option beside it.
expect 0 "adakv(press=knorm" -- score --tokens "$ids" --press adakv:press=knorm,compression_ratio=0.25 \
  --out "$tmp/a2.safetensors"
expect 0 "tokens, kept" -- generate --context "The meeting is on Friday at noon." --question "When?" \
  --press streaming_llm:n_sink=2 --option compression_ratio=0.5 --max-new-tokens 2
expect 2 "option 'compression_ratio' is given twice" -- generate --context c --question q \
  --press knorm:compression_ratio=0.5 --option compression_ratio=0.25
expect 2 "unknown press 'snapk'" -- generate --context c --question q --press snapk:window_size=4
expect 2 "score needs --press NAME" -- score --tokens "1 2 3" --out "$tmp/s.safetensors"
expect 2 "press 'think' takes no --ratio" -- score --tokens "1 2 3" --press think --ratio 0.5 --out "$tmp/s.safetensors"
expect 2 "snapkv needs a prefill longer than its window: window_size=64" -- score --tokens "1 2 3 4 5" --press snapkv \
  --out "$tmp/s.safetensors"
expect 2 "expected_attention needs more cached tokens than n_sink=4" -- score --tokens "1 2 3" \
  --press expected_attention --out "$tmp/s.safetensors"
expect 2 "adakv needs a scorer press" -- score --tokens "1 2 3" --press adakv --option press=think --out "$tmp/s.safetensors"
expect 2 "press 'adakv' needs the option press=NAME" -- score --tokens "1 2 3" --press adakv --out "$tmp/s.safetensors"
expect 2 "is not KEY=VALUE" -- needles --press "snapkv:window_size" --cases 1
expect 2 "unknown task 'sudoku'" -- eval --tasks sudoku --out "$tmp/ev"
expect 2 "--ratios must be in [0, 1), got 1" -- eval --ratios 0.5,1 --out "$tmp/ev"
expect 2 "the grid sets compression_ratio" -- eval --press knorm:compression_ratio=0.5 --out "$tmp/ev"
expect 2 "context length 9000 is outside" -- eval --lengths 9000 --out "$tmp/ev"
expect 2 "eval needs --out DIR" -- eval --lengths 512
mkdir -p "$tmp/foreign"
printf '{"some": "other file"}\n' > "$tmp/foreign/results.jsonl"
expect 2 "not ours" -- eval --lengths 256 --samples 1 --tasks passkey --press knorm --ratios 0.5 --out "$tmp/foreign"
expect 0 "Context length 256 tokens" -- eval --lengths 256 --samples 1 --tasks passkey,multikey --press knorm \
  --ratios 0.5 --out "$tmp/evok"

# The router: calibration on the default model, its weights file, and its errors.
expect 2 "calibrate-router needs --out FILE" -- calibrate-router --samples 1
# pikv calibrate PRESS: an artefact for any model (here query statistics, the folder kvpress's loader reads).
expect 2 "calibrate needs the press" -- calibrate --out "$tmp/stats"
expect 2 "no artefact recipe for 'knorm'" -- calibrate knorm --out "$tmp/stats"
expect 2 "--model-type must be linear or mlp, got 'cnn'" -- calibrate kvzap --model-type cnn --out "$tmp/kz"
expect 2 "--scorer 'adakv:press=knorm' is not a scorer press" -- calibrate lukv --scorer adakv:press=knorm --out "$tmp/lk"
expect 2 "lukv needs its budget curve" -- generate --context "a b c d e f g h" --question "q" --press lukv --ratio 0.5 \
  --max-new-tokens 2
expect 2 "fastkvzip needs its gates" -- generate --context "a b c d e f g h" --question "q" --press fastkvzip --ratio 0.5 \
  --max-new-tokens 2
echo "not numpy" > "$tmp/bad.npy"
expect 2 "is not a .npy file" -- generate --context "a b" --question "q" --press lukv --option "curve=$tmp/bad.npy"
expect 2 "calibrate needs --out DIR" -- calibrate expected_attention_with_stats
expect 2 "fewer than one sample of --sample-seq-len 9999999" -- calibrate expected_attention_with_stats --sample-seq-len 9999999 \
  --out "$tmp/stats"
expect 0 "from 120 queries per head" -- calibrate expected_attention_with_stats --num-samples 2 --sample-seq-len 64 \
  --out "$tmp/stats"
grep -q '"n_sink": 4' "$tmp/stats/config.json" && test -s "$tmp/stats/model.safetensors" || { echo "FAIL: calibrate wrote no statistics"; fails=$((fails + 1)); }
expect 0 "expected_attention_with_stats(compression_ratio=0.5" -- generate --context "The ferry Lark left at noon. The cargo ship Albatross left at dawn." \
  --question "When did the Lark leave?" --press expected_attention_with_stats --option "stats_folder=$tmp/stats" \
  --max-new-tokens 4
expect 2 "expected_attention_with_stats needs query statistics" -- generate --context "a b c d e f g" --question "q" \
  --press expected_attention_with_stats --max-new-tokens 2
expect 0 "full_attention_heads.tsv (30 layers x 3 KV heads" -- calibrate duo_attention --num-samples 2 --sample-seq-len 64 \
  --q-len 100 --sink-size 8 --recent-size 32 --out "$tmp/duo"
expect 0 "attention_pattern=$tmp/duo" -- generate --context "The ferry Lark left at noon. The cargo ship Albatross left at dawn." \
  --question "When did the Lark leave?" --press duo_attention --option "attention_pattern=$tmp/duo" \
  --option head_compression_ratio=0.5 --max-new-tokens 4
expect 2 "choose one" -- generate --context "a b" --question "q" --press duo_attention --option "attention_pattern=$tmp/duo" \
  --option on_the_fly_scoring=true
printf '0.5\t0.25\tabc\n' > "$tmp/duo/full_attention_heads.tsv"
expect 2 "full_attention_heads.tsv' line 1: 'abc' is not a number" -- generate --context "a b" --question "q" \
  --press duo_attention --option "attention_pattern=$tmp/duo"
expect 0 "q_filters 30x3x64" -- calibrate qfilter --num-samples 2 --sample-seq-len 64 --svd-samples 100 --out "$tmp/qf"
grep -q '"kv_head_dim": 64' "$tmp/qf/config.json" || { echo "FAIL: calibrate qfilter wrote no config"; fails=$((fails + 1)); }
expect 0 "qfilter(compression_ratio=0.5" -- generate --context "The ferry Lark left at noon. The cargo ship Albatross left at dawn." \
  --question "When did the Lark leave?" --press qfilter --option "filters=$tmp/qf" --max-new-tokens 4
expect 2 "qfilter needs Q-filters" -- generate --context "a b c d" --question "q" --press qfilter --max-new-tokens 2
printf '{"num_layers": 30, "num_kv_heads": 5, "kv_head_dim": 64}\n' > "$tmp/qf/config.json"
expect 2 "says num_kv_heads = 5" -- generate --context "a b" --question "q" --press qfilter --option "filters=$tmp/qf"
expect 2 "model.safetensors" -- generate --context "a b" --question "q" --press qfilter --option "filters=$tmp/nowhere"
expect 2 "kvzap needs its surrogate model" -- generate --context "a b c d" --question "q" --press kvzap --max-new-tokens 2
expect 2 "is not a KVzap model config" -- generate --context "a b" --question "q" --press kvzap --option "kvzap_model=$tmp/qf"
expect 2 "model_type must be linear or mlp, got 'cnn'" -- generate --context "a b" --question "q" --press kvzap \
  --option model_type=cnn
expect 2 "--objective must be best, recall or task_loss, got 'magic'" -- calibrate-router --objective magic --out "$tmp/g.json"
expect 2 "the task_loss objective keeps its recorded samples in memory" -- calibrate-router --objective task_loss \
  --checkpoint "$tmp/ck.jsonl" --out "$tmp/g.json"
# The task-loss table: one expert per group of layers, written as a version-2 gate the press reads.
expect 0 "learned table" -- calibrate-router --objective task_loss --tasks passkey --samples 2 --length 192 --ratios 0.5 \
  --group 15 --sweeps 1 --out "$tmp/table.json" --report "$tmp/table.md"
grep -q '"layer_bias"' "$tmp/table.json" || { echo "FAIL: no per-layer table in the weights"; fails=$((fails + 1)); }
expect 0 "tokens, kept" -- generate --context "The code is 4417. $(seq 1 80 | tr '\n' ' ')" --question "What is the code?" \
  --press moe_router --option "weights=$tmp/table.json" --ratio 0.5 --max-new-tokens 4
expect 2 "is the evaluation haystack" -- calibrate-router --corpus "$(dirname "$PIKV")/../../models/haystack.txt" \
  --out "$tmp/g.json"
expect 0 "learned (top-1)" -- calibrate-router --tasks passkey,multikey --samples 2 --length 256 --epochs 30 \
  --out "$tmp/gate.json" --report "$tmp/calibration.md"
grep -q '"format": "pikv-router-weights"' "$tmp/gate.json" || { echo "FAIL: no weights file"; fails=$((fails + 1)); }

# Faults lose nothing: a calibration and an evaluation killed with SIGKILL mid-run, their files then torn
# mid-line as a kill during a write leaves them, resume and end exactly where uninterrupted runs end.
kill_at_lines() {  # FILE LINES PID: SIGKILL PID once FILE has LINES complete lines; 1 if PID ended first
  local i
  for i in $(seq 1 1200); do
    if [ -f "$1" ] && [ "$(wc -l < "$1")" -ge "$2" ]; then kill -9 "$3"; wait "$3" 2> /dev/null; return 0; fi
    kill -0 "$3" 2> /dev/null || return 1
    sleep 0.05
  done
  kill -9 "$3"
  return 1
}
cal=(calibrate-router --tasks passkey,multikey --samples 2 --length 256 --epochs 30)
"$PIKV" "${cal[@]}" --out "$tmp/gk.json" > /dev/null 2>&1 &
if kill_at_lines "$tmp/gk.json.samples.jsonl" 2 $!; then
  [ ! -e "$tmp/gk.json" ] || { echo "FAIL: a killed calibration left weights"; fails=$((fails + 1)); }
  printf '{"key": "multikey|1", "layers": [{"layer": 0, "feat' >> "$tmp/gk.json.samples.jsonl"
  PIKV_LOG_LEVEL=warn expect 0 "dropping the incomplete last line" -- "${cal[@]}" --out "$tmp/gk.json"
  expect 0 "resumed 4 of 4 samples" -- "${cal[@]}" --out "$tmp/gk.json"
  cmp -s "$tmp/gate.json" "$tmp/gk.json" || { echo "FAIL: resumed calibration differs"; fails=$((fails + 1)); }
else
  echo "FAIL: the calibration ended before it could be killed"
  fails=$((fails + 1))
fi
expect 2 "was recorded with length = 256, this run has 320" -- calibrate-router --tasks passkey,multikey --samples 2 \
  --length 320 --epochs 30 --out "$tmp/gk.json"
echo '{"key": "passkey|0", "layers": []}' >> "$tmp/gk.json.samples.jsonl"
expect 2 "line 6 is not a recorded sample: 0 layers recorded, the model has 30" -- "${cal[@]}" --out "$tmp/gk.json"
# Query-aware: the question compressed with the context; a results file holds one mode.
expect 2 "holds a query-agnostic run, this one is query-aware" -- eval --lengths 256 --samples 1 \
  --tasks passkey,multikey --press knorm --ratios 0.5 --query-aware --out "$tmp/evok"
expect 0 "query-aware (each question compressed with its context)" -- eval --lengths 256 --samples 1 --tasks passkey \
  --press snapkv --ratios 0.5 --query-aware --out "$tmp/evqa"
expect 0 "tokens, kept" -- generate --context "The meeting is on Friday at noon. $(seq 1 60 | tr '\n' ' ')" \
  --question "When is the meeting?" --question "What day?" --press snapkv --ratio 0.5 --query-aware --max-new-tokens 4
expect 0 "kvzip re-read its context: 1 extra forwards" -- generate --context "The meeting is on Friday at noon. \
$(seq 1 60 | tr '\n' ' ')" --question "When is the meeting?" --press kvzip --ratio 0.5 --max-new-tokens 4
ev=(eval --lengths 256 --samples 1 --tasks passkey,multikey --press knorm --ratios 0.5)
"$PIKV" "${ev[@]}" --out "$tmp/evkill" > /dev/null 2>&1 &
if kill_at_lines "$tmp/evkill/results.jsonl" 2 $!; then
  printf '{"answer": "12' >> "$tmp/evkill/results.jsonl"
  PIKV_LOG_LEVEL=warn expect 0 "dropping the incomplete last line" -- "${ev[@]}" --out "$tmp/evkill"
  # Timings differ between runs; everything else of every cell is the same.
  strip() { sed -E 's/"(answer_ms|compress_ms|kl)":[^,]*,//g' "$1" | sort; }
  diff <(strip "$tmp/evok/results.jsonl") <(strip "$tmp/evkill/results.jsonl") > /dev/null \
    || { echo "FAIL: the resumed evaluation's records differ"; fails=$((fails + 1)); }
else
  echo "FAIL: the evaluation ended before it could be killed"
  fails=$((fails + 1))
fi
expect 0 "gate=$tmp/gate.json" -- score --tokens "$ids" --press moe_router --option "weights=$tmp/gate.json" \
  --option window_size=16 --out "$tmp/s.safetensors"
sed 's/"num_kv_heads": 3/"num_kv_heads": 5/' "$tmp/gate.json" > "$tmp/gate5.json"
expect 2 "calibrated on a model with 5 KV heads" -- score --tokens "$ids" --press moe_router \
  --option "weights=$tmp/gate5.json" --option window_size=16 --out "$tmp/s.safetensors"
expect 0 "mean attention recall" -- generate --context "The meeting is on Friday at noon. $(seq 1 60 | tr '\n' ' ')" \
  --question "When is the meeting?" --press moe_router --option window_size=8 --max-new-tokens 4
expect 2 "option router_type must be one of pikv | topk_balanced" -- score --tokens "$ids" --press moe_router --option router_type=magic \
  --out "$tmp/s.safetensors"
expect 2 "capacity_factor has no effect with router_type=pikv" -- score --tokens "$ids" --press moe_router \
  --option capacity_factor=1.5 --out "$tmp/s.safetensors"
expect 2 "top_k must be in 1..num_experts (4), got 5" -- score --tokens "$ids" --press moe_router --option top_k=5 \
  --out "$tmp/s.safetensors"

# The argument parser (tools/pikv/args.h): per-command help, and bad input of every kind ends in a
# message naming the flag and the value, exit status 2.
expect 0 "Usage: pikv generate [options]" -- generate --help
expect 0 "--max-new-tokens N        tokens per answer (default 50)" -- generate -h
expect 0 "--haystack FILE" -- demo --help
expect 0 "Usage: pikv tokenize [--model PATH] [--decode]" -- tokenize --help
expect 2 "unknown option '--foo' for synthetic" -- synthetic --foo 1
expect 2 "unexpected argument 'foo' for generate" -- generate foo
expect 2 "--context needs a value (TEXT)" -- generate --question q --context
expect 2 "\`pikv presses\` takes no arguments" -- presses x
# An empty value is an error, never "no press".
expect 2 "--press needs a value (SPEC), got an empty one" -- generate --context c --question q --press ''
expect 2 "--haystack needs a value (FILE), got an empty one" -- demo --haystack ''
# Reals: NaN and infinities, ranges, garbage; a denormal is a number (strtod's ERANGE on underflow).
expect 2 "--depth needs a finite number, got 'nan'" -- demo --depth nan
expect 2 "--ratio needs a finite number, got 'inf'" -- needles --ratio inf
expect 2 "--depth must be in [0, 1], got 1.5" -- demo --depth 1.5
expect 2 "--query-aware applies to --press" -- demo --query-aware
expect 2 "needs the option press=NAME" -- demo --press adakv
expect 2 "--lr needs a number, got 'abc'" -- calibrate-router --lr abc --out "$tmp/g.json"
expect 2 "--lr must be > 0, got -0.1" -- calibrate-router --lr -0.1 --out "$tmp/g.json"
expect 2 "--objective must be best, recall or task_loss" -- calibrate-router --lr 1e-320 --objective magic --out "$tmp/g.json"
expect 2 "--ratio must be 0 or in [2.2250738585072014e-308, 1), got 1e-320" -- generate --context c --question q \
  --press knorm --ratio 1e-320
expect 2 "--ratios must be 0 or in [2.2250738585072014e-308, 1), got 4e-320" -- eval --ratios 0.5,4e-320 --out "$tmp/ev"
# --context and --context-file exclude each other.
expect 2 "--context and --context-file exclude each other" -- generate --context c --context-file "$tmp/lines.txt" \
  --question q
expect 2 "--context-file and --context exclude each other" -- generate --context-file "$tmp/lines.txt" --context c \
  --question q
# Integers: no saturation, no trailing garbage, no signs, bounded sizes.
expect 2 "--max-new-tokens is out of range: at most 10000000, got '99999999999999999999'" -- generate --context c \
  --question q --max-new-tokens 99999999999999999999
expect 2 "--max-new-tokens needs an integer >= 1, got '12x'" -- generate --context c --question q --max-new-tokens 12x
expect 2 "--tokens needs an integer >= 64, got '+100'" -- demo --tokens +100
expect 2 "--tokens is out of range: at most 10000000, got '20000000'" -- demo --tokens 20000000
expect 2 "--seed needs an integer >= 0, got '-1'" -- needles --seed -1
expect 2 "--seed is out of range: at most 18446744073709551615, got '18446744073709551616'" -- eval \
  --seed 18446744073709551616 --out "$tmp/ev"
expect 2 "--lengths needs an integer >= 1, got '1e3'" -- eval --lengths 512,1e3 --out "$tmp/ev"
expect 2 "--layers is out of range: at most 1000, got '5000'" -- synthetic --layers 5000
expect 2 "--tokens must be non-negative integers (token ids up to 2147483647), got '99999999999999999999'" -- logits \
  --tokens "1 99999999999999999999" --out "$tmp/l.safetensors"
printf '5 99999999999999999999\n' > "$tmp/bigids.txt"
STDIN="$tmp/bigids.txt" expect 2 "line 1: '99999999999999999999' is not a token id" -- tokenize --decode
# Files: only regular ones, at most 256 MiB (no endless read of /dev/zero, no blocking on a FIFO).
expect 2 "cannot read context file (--context-file) '/dev/zero': it is a character device, not a regular file" -- \
  generate --context-file /dev/zero --question q
mkfifo "$tmp/fifo"
expect 2 "it is a FIFO, not a regular file" -- generate --context-file "$tmp/fifo" --question q
truncate -s 300M "$tmp/big.txt"
expect 2 "has 314572800 bytes (300.0 MiB), more than the limit of 256 MiB" -- generate --context-file "$tmp/big.txt" \
  --question q
expect 2 "it is a directory, not a regular file" -- demo --haystack "$tmp"
# A single-valued flag given twice is an error; --question, --option and eval/needles' --press repeat.
expect 2 "--ratio is given twice ('0.5', then '0.6'); it takes one value" -- generate --context c --question q \
  --press knorm --ratio 0.5 --ratio 0.6
expect 2 "--json is given twice" -- generate --context c --question q --json --json
expect 2 "--tasks is given twice ('passkey', then 'multikey')" -- eval --tasks passkey --tasks multikey --out "$tmp/ev"
expect 2 "press spec 'snapkv:compression_ratio=0.5': the grid sets" -- eval --press knorm \
  --press snapkv:compression_ratio=0.5 --out "$tmp/ev"
expect 2 "press 'snapkv' has no option 'n_sinks'" -- needles --press knorm --press snapkv:n_sinks=3
expect 0 "fidelity" -- synthetic --tokens 64 --layers 2 --ratio 0.25 --seed 3

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
