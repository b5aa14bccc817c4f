#!/usr/bin/env bash
# The CLI a new user meets (issue 25 item 3): "did you mean" for mistyped commands and options; the built-in
# default recipe said in one line; a missing recipe and a file given as --model are exit 3 with a hint;
# source locations (file.c:line) only with -v; --log-file / --log-format json (one object per line, fields
# on progress lines, one file per rank with %r); schema_version in plan/inspect --json and --stats; eval's
# perplexity progress counts the whole job's windows (2 ranks), not rank 0's share; --resume with nothing
# to resume says it starts fresh. About 10 s on 2 cores.
. "$(dirname "$0")/common.sh" # strict mode, Open MPI env, $MPIEXEC, $tmp, fail()
: "${MOEQ:?}" "${MOEQ_SHARED_DIR:?}" "${MOEQ_SOURCE_DIR:?}"
tiny="$MOEQ_SHARED_DIR/models/mixtral-tiny"

# run CODE CMD...: CMD exits CODE; stdout in $tmp/out, stderr in $tmp/err
run() {
    local code=$1 rc=0
    shift
    "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
    [ "$rc" = "$code" ] || { cat "$tmp/err"; fail "$*: exit $rc, want $code"; }
}
has() { grep -qF -- "$1" "$tmp/err" || { cat "$tmp/err"; fail "stderr has no '$1'"; }; }
hasnt() { ! grep -qE -- "$1" "$tmp/err" || { cat "$tmp/err"; fail "stderr has '$1'"; }; }

# 1. did you mean: commands (a transposition counts one edit) and long options; nothing far-fetched
run 2 "$MOEQ" qunatize
has "did you mean 'moeq quantize'?"
run 2 "$MOEQ" frobnicate
has "moeq --help lists the commands"
hasnt "did you mean"
run 2 "$MOEQ" plan --model "$tiny" --rankz 4
has "option --rankz is not known" && has "did you mean --ranks?"
run 2 "$MOEQ" plan --model "$tiny" --explian=x
has "did you mean --explain?"
run 2 "$MOEQ" plan --model "$tiny" --json=yes
has "option --json=yes takes no value"
run 2 "$MOEQ" plan --model "$tiny" --log-format xml
has "--log-format takes text or json"

# 2. the built-in default recipe is said (one line), a given recipe is not; a missing one is exit 3 with a hint
run 0 "$MOEQ" plan --model "$tiny"
[ "$(grep -c "built-in default recipe" "$tmp/err")" = 1 ] || { cat "$tmp/err"; fail "default recipe line"; }
run 0 "$MOEQ" plan --model "$tiny" --recipe "$MOEQ_SOURCE_DIR/configs/mixtral-tiny-milo3.yaml"
hasnt "built-in default"
run 3 "$MOEQ" plan --model "$tiny" --recipe "$tmp/nope.yaml"
has "recipe $tmp/nope.yaml does not exist" && has "---> HINT: --recipe takes a YAML file" && has "configs/"

# 3. a file where a checkpoint directory is expected: exit 3 (was 4, ENOTDIR), naming the directory to give
run 3 "$MOEQ" plan --model "$tiny/model-00001-of-00002.safetensors"
has "a file, not a checkpoint directory" && has "(here perhaps $tiny)"
run 3 "$MOEQ" inspect "$tiny/config.json"
has "a file, not a checkpoint directory"

# 4. source locations only with -v (in the error detail and in log lines)
run 3 "$MOEQ" plan --model "$tiny" --recipe "$tmp/nope.yaml"
hasnt '[a-z_]+/[a-z_]+\.c:[0-9]+'
run 3 "$MOEQ" plan -v --model "$tiny" --recipe "$tmp/nope.yaml"
grep -qE 'error: not found: schedulers/recipe\.c:[0-9]+: recipe' "$tmp/err" || { cat "$tmp/err"; fail "-v: no file:line"; }
run 0 "$MOEQ" plan -v --model "$tiny"
grep -qE '\] \[pipeline/run_common\.c:[0-9]+\] INFO: no --recipe' "$tmp/err" || { cat "$tmp/err"; fail "-v log line"; }
run 0 "$MOEQ" plan --model "$tiny"
hasnt '\] \[[a-z_]+/[a-z_]+\.c:[0-9]+\] '

# 5. schema_version in the JSON outputs
"$MOEQ" plan --model "$tiny" --json >"$tmp/plan.json" 2>/dev/null
"$MOEQ" inspect --json "$tiny" >"$tmp/inspect.json"
"$MOEQ" synth --layers 1 --hidden 64 --intermediate 64 --experts 2 --heads 2 --kv-heads 1 --vocab 65 "$tmp/m" >/dev/null
"$MPIEXEC" -n 2 "$MOEQ" quantize --simulate --model "$tmp/m" --out "$tmp/sim.h5" --stats "$tmp/sim.json" \
    >"$tmp/sim.log" 2>&1 || { cat "$tmp/sim.log"; fail "simulate"; }

# 6. --log-file per rank (%r) in JSON, --stats, and --resume with nothing to resume
run 0 "$MPIEXEC" -n 2 "$MOEQ" quantize --model "$tmp/m" --out "$tmp/a.h5" --resume --stats "$tmp/stats.json" \
    --log-file "$tmp/log.%r.jsonl" --log-format json
hasnt 'INFO'
python3 - "$tmp" <<'PY' || fail "JSON outputs and log lines"
import json, sys
d = sys.argv[1]
for f in ("plan.json", "inspect.json", "stats.json", "sim.json"):
    v = json.load(open(f"{d}/{f}")).get("schema_version")
    assert v == 1, (f, v)
for r in (0, 1):
    lines = open(f"{d}/log.{r}.jsonl").read().splitlines()
    recs = [json.loads(l) for l in lines]  # every line one object
    assert recs or r == 1, r  # the file exists for every rank; rank 1 may have nothing to say
    for x in recs:
        assert x["rank"] == r and x["level"] in ("DEBUG", "INFO", "WARN", "ERROR"), x
        assert x["time"].endswith("Z") and x["message"] and x["file"].endswith(".c") and x["line"] > 0, x
recs = [json.loads(l) for l in open(f"{d}/log.0.jsonl")]
msgs = [x["message"] for x in recs]
assert any("nothing to resume at" in m and "starting a new artifact" in m for m in msgs), msgs
prog = [x for x in recs if x.get("progress") == "units"]
assert prog and prog[-1]["final"] is True and prog[-1]["done"] == prog[-1]["total"] > 0, prog
PY
# an error reaches the log file as a record too, and the terminal as its line
run 3 "$MOEQ" plan --model "$tiny" --recipe "$tmp/nope.yaml" --log-file "$tmp/err.jsonl" --log-format json
has "error: not found: recipe"
python3 -c "import json,sys; r=[json.loads(l) for l in open(sys.argv[1])]; assert r[-1]['level']=='ERROR' and 'nope.yaml' in r[-1]['message'], r" \
    "$tmp/err.jsonl" || fail "error record"

# 7. eval's perplexity progress is the job's: with 2 ranks the last line counts every window
"$MPIEXEC" -n 2 "$MOEQ" quantize -q --model "$tiny" --out "$tmp/t.h5" || fail "quantize tiny"
head -c 6000 "$tiny/val.txt" >"$tmp/text.txt"
run 0 "$MPIEXEC" -n 2 "$MOEQ" eval --progress 1 --model "$tiny" "$tmp/t.h5" --text "$tmp/text.txt" --json "$tmp/e.json"
nw=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['perplexity']['windows'])" "$tmp/e.json")
[ "$nw" -ge 4 ] || fail "too few windows ($nw) to tell the job from rank 0's share"
has "eval: perplexity (original + quantized): $nw/$nw windows of the job (100.0%), elapsed"
hasnt "of its windows"
echo PASS
