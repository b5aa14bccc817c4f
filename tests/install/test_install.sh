#!/usr/bin/env bash
# `cmake --install build --prefix P` gives a tree that works on its own, moved elsewhere included:
# P/bin/moeq (--version, --help), P/lib/libmoeq_cuda.so in CUDA builds and found by the installed binary
# (not the build tree's), the batch jobs in P/share/moeq/slurm (executable), the recipes in
# P/share/moeq/configs, the docs in P/share/doc/moeq; the installed moeq, moved to another prefix, quantizes
# the tiny model with an installed recipe under mpirun -n 2 into the build's artifact, byte for byte.
. "$MOEQ_SOURCE_DIR/tests/pipeline/common.sh" # strict mode, Open MPI env, $MPIEXEC, $tmp, fail()
: "${MOEQ:?}" "${MOEQ_SHARED_DIR:?}" "${MOEQ_BINARY_DIR:?}"
"${CMAKE:-cmake}" --install "$MOEQ_BINARY_DIR" --prefix "$tmp/p" >"$tmp/install.log" || { cat "$tmp/install.log"; fail "cmake --install"; }
for f in bin/moeq share/moeq/slurm/quantize.sbatch share/moeq/slurm/eval.sbatch share/moeq/slurm/env.sh \
    share/moeq/slurm/README.md share/moeq/configs/mixtral-tiny-rtn3.yaml share/moeq/configs/README.md \
    share/doc/moeq/README.md share/doc/moeq/ARTIFACT.md; do
    [ -s "$tmp/p/$f" ] || fail "no $f in the installed tree"
done
for f in "$tmp"/p/share/moeq/slurm/*.sbatch "$tmp/p/bin/moeq"; do [ -x "$f" ] || fail "$f is not executable"; done
[ "$(ls "$tmp"/p/share/moeq/slurm/*.sbatch | wc -l)" -eq "$(ls "$MOEQ_SOURCE_DIR"/slurm/*.sbatch | wc -l)" ] \
    || fail "not every batch job was installed"
# relocatable: the tree moved after installing still finds its parts
mv "$tmp/p" "$tmp/q"
P=$tmp/q
"$P/bin/moeq" --version >"$tmp/v.txt" || fail "moeq --version"
grep -q "^moeq [0-9]" "$tmp/v.txt" || { cat "$tmp/v.txt"; fail "--version"; }
if [ -e "$MOEQ_BINARY_DIR/libmoeq_cuda.so" ]; then # a CUDA build: the installed module, relative to bin/
    [ -s "$P/lib/libmoeq_cuda.so" ] || fail "no lib/libmoeq_cuda.so installed"
    grep -qx "cuda backend: $P/bin/../lib/libmoeq_cuda.so" "$tmp/v.txt" || { cat "$tmp/v.txt"; fail "the installed moeq must load the installed module"; }
else
    ! ls "$P"/lib*/libmoeq_cuda.so >/dev/null 2>&1 || fail "a CPU-only build installed a CUDA module"
    grep -q "^cuda backend: none (.*no CUDA backend" "$tmp/v.txt" || { cat "$tmp/v.txt"; fail "--version's cuda line"; }
fi
"$P/bin/moeq" --help >"$tmp/h.txt" && grep -q "^  quantize " "$tmp/h.txt" || fail "moeq --help"
# a tiny job with the installed binary and recipe; the build's binary gives the same bytes
tiny="$MOEQ_SHARED_DIR/models/mixtral-tiny"
"$MPIEXEC" --oversubscribe -n 2 "$P/bin/moeq" quantize -q --progress 0 --model "$tiny" \
    --recipe "$P/share/moeq/configs/mixtral-tiny-rtn3.yaml" --out "$tmp/inst.h5" || fail "installed moeq quantize"
"$MPIEXEC" --oversubscribe -n 2 "$MOEQ" quantize -q --progress 0 --model "$tiny" \
    --recipe "$P/share/moeq/configs/mixtral-tiny-rtn3.yaml" --out "$tmp/build.h5" || fail "build's moeq quantize"
cmp "$tmp/inst.h5" "$tmp/build.h5" || fail "the installed moeq's artifact differs from the build's"
echo PASS
