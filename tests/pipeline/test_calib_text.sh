#!/usr/bin/env bash
# scripts/calib-text.sh (issue 22's calibration text for bench/gptq_vs_gptqmodel.py): the same bytes on every
# run, exactly CHARS characters, every one in the test models' vocabulary (tokenizer.json), 32768 by default;
# exit 2 for a bad CHARS, 3 when the license texts are too short or one is missing (MOEQ_LICENSE_DIR).
. "$(dirname "$0")/common.sh" # strict mode, $tmp, fail()
: "${MOEQ_SOURCE_DIR:?}" "${MOEQ_SHARED_DIR:?}"
s="$MOEQ_SOURCE_DIR/scripts/calib-text.sh"
[ -d /usr/share/common-licenses ] || { echo "no /usr/share/common-licenses (not Debian): skipped"; exit 77; }
"$s" "$tmp/a.txt" >"$tmp/a.out" || fail "default run"
"$s" "$tmp/b.txt" 1000 >/dev/null || fail "1000 characters"
"$s" "$tmp/c.txt" >/dev/null || fail "second run"
cmp -s "$tmp/a.txt" "$tmp/c.txt" || fail "two runs differ"
[ "$(wc -c <"$tmp/a.txt")" -eq 32768 ] || fail "default size $(wc -c <"$tmp/a.txt")"
[ "$(wc -c <"$tmp/b.txt")" -eq 1000 ] || fail "1000: size $(wc -c <"$tmp/b.txt")"
cmp -s "$tmp/b.txt" <(head -c 1000 "$tmp/a.txt") || fail "1000 is not the prefix of the default text"
[ "$(cut -d' ' -f1 "$tmp/a.out")" = "$(sha256sum "$tmp/a.txt" | cut -d' ' -f1)" ] || fail "printed hash"
python3 - "$MOEQ_SHARED_DIR/models/mixtral-tiny/tokenizer.json" "$tmp/a.txt" <<'PY' || fail "vocabulary"
import json, sys
vocab = set(json.load(open(sys.argv[1], encoding="utf-8"))["vocab"])
text = open(sys.argv[2], encoding="utf-8", newline="").read()
bad = set(text) - vocab
assert not bad, sorted(bad)
assert "  " not in text and "\n\n\n" not in text, "runs of spaces or blank lines left"
PY
rc=0; "$s" "$tmp/x.txt" 0 2>/dev/null || rc=$?
[ "$rc" -eq 2 ] || fail "CHARS 0: exit $rc, expected 2"
rc=0; "$s" "$tmp/x.txt" 10000000 2>"$tmp/err" || rc=$?
[ "$rc" -eq 3 ] && grep -q "only" "$tmp/err" || fail "too long: exit $rc"
mkdir "$tmp/lic"
rc=0; MOEQ_LICENSE_DIR="$tmp/lic" "$s" "$tmp/x.txt" 2>"$tmp/err" || rc=$?
[ "$rc" -eq 3 ] && grep -q "GPL-3 is missing" "$tmp/err" || fail "missing license: exit $rc"
[ ! -e "$tmp/x.txt" ] || fail "an output was left after a failure"
echo "calib-text: $(cat "$tmp/a.out")"
