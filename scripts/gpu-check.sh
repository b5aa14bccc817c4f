#!/usr/bin/env bash
# gpu-check.sh: on a GPU node: builds moeq's kernels (MOEQ_KERNELS_ONLY, CUDA, Release), runs their tests
# (label gpu, then the rest) and, when they pass and a GPU is visible, the three GPU benchmarks; logs and
# JSON go to one folder. With --deps, OpenBLAS, LAPACKE, cmocka and pkg-config come from a tarball made by
# scripts/gpu-deps.sh (nodes without a package registry), unpacked under the build folder.
# With --full: the whole of moeq (MPI, HDF5 layers, `moeq`), the gpu tests, the pipeline tests that use
# the device (test_device_e2e, test_cuda_module*, test_quantize_e2e) and `moeq quantize --device cuda` of
# mixtral-tiny on 1 and 2 ranks, whose artifacts must be identical (scripts/gpu-check-full.sh); --deps
# then takes a tarball from scripts/gpu-deps.sh --full.
# Does not: install anything, or judge benchmark figures (bench/README.md does).
set -euo pipefail

usage() {
    cat <<'EOF'
usage: scripts/gpu-check.sh [--full] [--deps TARBALL] [--out DIR] [--build DIR] [--shared DIR]
                            [--targets "T ..."] [--no-bench] [-- CMAKE_ARGS ...]

Builds moeq's kernels with CUDA (cmake -DMOEQ_KERNELS_ONLY=ON -DMOEQ_CUDA=ON -DCMAKE_BUILD_TYPE=Release,
CUDA architecture `native` when a GPU is visible, else the project's default), runs `ctest -L gpu`, then
the other tests, then, if they passed and a GPU is visible, the GPU benchmarks into DIR as JSON:
    moeq-bench-kernels --device cuda --reps 3                        -> bench_kernels_cuda.json
    moeq-bench-kernels tensor --device cuda                          -> bench_tensor_cuda.json
    moeq-bench-infer --device cuda --iters 30 --batch 1,2,4,8,16     -> bench_infer_cuda.json
Exits non-zero when a step fails; the log of every step is in DIR/gpu-check.log.

With --full, the whole project instead (MOEQ_KERNELS_ONLY off: MPI, HDF5, jansson, yaml, xxhash too),
Release, CUDA architecture `native`, tests on, in build-gpu-full/; then `ctest -L gpu`, then
test_device_e2e, test_cuda_module* and test_quantize_e2e, then, where a GPU is visible,
    mpirun -n 1 moeq quantize --device cuda --model SHARED/models/mixtral-tiny
            --recipe configs/mixtral-tiny-milo3.yaml, the same with -n 2, and cmp of the two artifacts
(no GPU: these three steps are skipped, and said so). No benchmarks (run without --full for them).
On a GPU node lent through the device tool, carrying out/moeq-gpu-deps-full.tar.gz (scripts/gpu-deps.sh
--full) and out/shared/models/mixtral-tiny (see --shared):
    scripts/gpu-check.sh --full --deps out/moeq-gpu-deps-full.tar.gz --out $OUT/gc

  --full           the whole project and the pipeline checks above
  --deps TARBALL   take OpenBLAS, LAPACKE, cmocka and pkg-config (--full: and Open MPI, HDF5, jansson,
                   yaml, xxhash, h5dump, jq) from TARBALL (scripts/gpu-deps.sh [--full]), unpacked to
                   BUILD/deps/ (again only when the tarball changed); without it, the node's own packages
                   (pkg-config must find openblas, lapacke, cmocka; --full: also hdf5-openmpi, jansson,
                   yaml-0.1, libxxhash, and mpicc, mpirun, h5dump, jq must be on PATH)
  --out DIR        logs, test results and JSON (default: out/gpu-check-DATE-TIME)
  --build DIR      build folder (default: build-gpu, with --full build-gpu-full)
  --shared DIR     --full: the folder with models/mixtral-tiny (default: the first of ../shared, shared/,
                   out/shared/ that has it); a node lent through the device tool gets no ../shared: carry
                   out/shared after `mkdir -p out/shared/models && cp -r ../shared/models/mixtral-tiny
                   out/shared/models/ && rm out/shared/models/mixtral-tiny/model.fp32.safetensors`
                   (10 MiB; the fp32 copy is read only by tests --full does not run)
  --targets "T .." build only these CMake targets (e.g. moeq-bench-infer); the tests are then not run
                   and the benchmarks are those of the three whose executable was built
  --no-bench       stop after the tests
  -- CMAKE_ARGS    passed to the configure step, e.g. -- -DCMAKE_CUDA_ARCHITECTURES=90
  -h, --help       this text

After a --deps run, `. BUILD/deps/moeq-gpu-deps/env.sh` before running a built program by hand.
EOF
}

die() { # MESSAGE [HINT]
    echo "gpu-check: error: $1" >&2
    [ $# -lt 2 ] || echo "---> HINT: $2" >&2
    exit 1
}

repo=$(cd "$(dirname "$0")/.." && pwd -P)
deps="" out="" build="" targets="" bench=1 full=0 shared=""
cmake_extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --deps | --out | --build | --targets | --shared)
            [ $# -ge 2 ] || die "$1 needs a value" "scripts/gpu-check.sh --help"
            case "$1" in
                --deps) deps=$2 ;;
                --out) out=$2 ;;
                --build) build=$2 ;;
                --targets) targets=$2 ;;
                --shared) shared=$2 ;;
            esac
            shift 2 ;;
        --no-bench) bench=0; shift ;;
        --full) full=1; shift ;;
        --) shift; cmake_extra=("$@"); break ;;
        *) die "unknown argument '$1'" "scripts/gpu-check.sh --help" ;;
    esac
done
abspath() { # PATH: absolute (relative paths are relative to the current folder); the folder must exist
    (cd "$(dirname "$1")" && echo "$(pwd -P)/$(basename "$1")")
}
if [ -n "$deps" ]; then
    [ -f "$deps" ] || die "--deps: '$deps' is not a file" "make it with scripts/gpu-deps.sh on a Debian 12 machine"
    deps=$(abspath "$deps")
fi
if [ -n "$shared" ]; then
    [ "$full" = 1 ] || die "--shared is for --full" "scripts/gpu-check.sh --help"
    [ -d "$shared" ] || die "--shared: '$shared' is not a folder" "it must hold models/mixtral-tiny"
    shared=$(cd "$shared" && pwd -P)
fi
out=${out:-$repo/out/gpu-check-$(date +%Y%m%d-%H%M%S)}
build=${build:-$repo/build-gpu$([ "$full" = 0 ] || echo -full)}
mkdir -p "$out" "$build"
out=$(abspath "$out")
build=$(abspath "$build")

# Everything below goes to the terminal and to DIR/gpu-check.log: run this script again under tee.
if [ -z "${MOEQ_GPU_CHECK_LOGGING:-}" ]; then
    args=(--out "$out" --build "$build")
    [ -z "$deps" ] || args+=(--deps "$deps")
    [ -z "$targets" ] || args+=(--targets "$targets")
    [ "$bench" = 1 ] || args+=(--no-bench)
    [ "$full" = 0 ] || args+=(--full)
    [ -z "$shared" ] || args+=(--shared "$shared")
    set +e
    MOEQ_GPU_CHECK_LOGGING=1 "$BASH" "$0" "${args[@]}" -- "${cmake_extra[@]}" 2>&1 | tee "$out/gpu-check.log"
    exit "${PIPESTATUS[0]}"
fi

# ---- steps: a line when each starts, its seconds and status in the summary ----
t_start=$SECONDS
step_names=() step_status=() step_secs=()
step_t0=0
step() { # DESCRIPTION: starts a step
    step_t0=$SECONDS
    step_names+=("$1")
    echo
    echo "== gpu-check [$(date +%H:%M:%S)] step ${#step_names[@]}: $1"
}
step_end() { # STATUS (ok, FAILED, skipped: why, ...)
    step_status+=("$1")
    step_secs+=($((SECONDS - step_t0)))
    echo "== gpu-check: step ${#step_names[@]} $1 ($((SECONDS - step_t0)) s)"
}
summary() { # EXIT_CODE: prints the table of steps (also to DIR/summary.txt) and exits
    {
        echo
        echo "== gpu-check summary ($(date '+%Y-%m-%d %H:%M:%S'), $((SECONDS - t_start)) s in all)"
        for i in "${!step_names[@]}"; do
            printf '  %-72s %5s s  %s\n' "${step_names[$i]}" "${step_secs[$i]:--}" "${step_status[$i]:-not finished}"
        done
        echo "  logs and results: $out"
        if [ "$1" -eq 0 ]; then echo "== gpu-check: PASSED"; else echo "== gpu-check: FAILED (exit $1)"; fi
    } | tee "$out/summary.txt"
    exit "$1"
}
fail() { # STATUS MESSAGE [HINT]: ends the step as failed, prints the summary, exits 1
    step_end "$1"
    echo "gpu-check: error: $2" >&2
    [ $# -lt 3 ] || echo "---> HINT: $3" >&2
    summary 1
}
# shellcheck disable=SC2317 # called by the EXIT trap
on_exit() { # set -e stopped the script in the middle of a step
    local rc=$?
    if [ "$rc" -ne 0 ] && [ "${#step_status[@]}" -lt "${#step_names[@]}" ]; then
        step_status+=("FAILED (exit $rc)")
        step_secs+=($((SECONDS - step_t0)))
        trap - EXIT
        summary "$rc"
    fi
}
trap on_exit EXIT
if [ "$full" = 1 ]; then
    # shellcheck source=scripts/gpu-check-full.sh
    . "$repo/scripts/gpu-check-full.sh" # full_check_deps, full_tests, full_quantize
fi

nproc=$(nproc)
echo "gpu-check: moeq $(git -C "$repo" describe --always --dirty 2>/dev/null || echo '(no git)') in $repo"
echo "gpu-check: host $(hostname), $nproc cores, $(uname -m), $(getconf GNU_LIBC_VERSION 2>/dev/null || echo 'glibc ?')"
echo "gpu-check: $([ "$full" = 1 ] && echo 'full build (--full)' || echo 'kernels only'), build $build, out $out," \
    "deps ${deps:-system packages}"

# ---- 1. tools ----
step "tools (cmake, nvcc, C compiler)"
command -v cmake >/dev/null || fail FAILED "cmake not found" "load or install CMake >= 3.22"
cmake_version=$(cmake --version | sed -n '1s/.* //p')
echo "cmake $cmake_version ($(command -v cmake))"
if [ -z "${CUDACXX:-}" ] && ! command -v nvcc >/dev/null; then
    for d in /usr/local/cuda/bin /opt/cuda/bin; do
        if [ -x "$d/nvcc" ]; then
            echo "nvcc is not on PATH: using $d/nvcc"
            PATH=$d:$PATH
            break
        fi
    done
fi
nvcc=${CUDACXX:-$(command -v nvcc || true)}
[ -n "$nvcc" ] || fail FAILED "no nvcc" "put the CUDA toolkit's bin/ on PATH (e.g. module load cuda) or set CUDACXX"
echo "nvcc $("$nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p') ($nvcc)"
cc=${CC:-$(command -v cc || command -v gcc || true)}
[ -n "$cc" ] || fail FAILED "no C compiler" "install gcc or set CC"
echo "cc $("$cc" --version | head -n 1) ($cc)"
generator=()
if [ ! -f "$build/CMakeCache.txt" ] && command -v ninja >/dev/null; then
    generator=(-G Ninja)
fi
step_end ok

# ---- 2. dependencies ----
if [ -n "$deps" ]; then
    step "dependencies from $(basename "$deps")"
    sha=$(sha256sum "$deps" | cut -d' ' -f1)
    prefix=$build/deps/moeq-gpu-deps
    if [ -f "$prefix/env.sh" ] && [ "$(cat "$build/deps/tarball.sha256" 2>/dev/null)" = "$sha" ]; then
        echo "already unpacked in $prefix (same sha256)"
    else
        rm -rf "$build/deps"
        mkdir -p "$build/deps"
        tar -xzf "$deps" -C "$build/deps" || fail FAILED "cannot unpack $deps" "is it a tarball from scripts/gpu-deps.sh?"
        [ -f "$prefix/env.sh" ] || fail FAILED "$deps has no moeq-gpu-deps/env.sh" "make it with scripts/gpu-deps.sh"
        echo "$sha" >"$build/deps/tarball.sha256"
        echo "unpacked to $prefix"
    fi
    grep -v '^package=' "$prefix/MANIFEST" | sed 's/^/  /'
    flavour=$(sed -n 's/^flavour=//p' "$prefix/MANIFEST")
    if [ "$full" = 1 ] && [ "${flavour:-kernels}" != full ]; then
        fail FAILED "$(basename "$deps") is a kernels-only bundle: --full needs MPI, HDF5, jansson, yaml, xxhash" \
            "make the full one (scripts/gpu-deps.sh --full: out/moeq-gpu-deps-full.tar.gz) and pass it to --deps"
    fi
    # the bundle's libraries run here only on the same architecture and a glibc at least as new
    arch=$(sed -n 's/^arch=//p' "$prefix/MANIFEST")
    case "$arch:$(uname -m)" in
        amd64:x86_64 | arm64:aarch64 | ppc64el:ppc64le) ;;
        *) fail FAILED "the bundle is for $arch, this node is $(uname -m)" \
                "run scripts/gpu-deps.sh on a Debian 12 machine of the node's architecture" ;;
    esac
    need=$(sed -n 's/^glibc_min=//p' "$prefix/MANIFEST")
    have=$(getconf GNU_LIBC_VERSION 2>/dev/null | sed -n 's/^glibc //p')
    if [ -n "$have" ] && [ "$need" != unknown ] &&
        [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n 1)" != "$need" ]; then
        fail FAILED "the bundle needs glibc >= $need, this node has $have" \
            "make the bundle on a system with glibc <= $have, or use the node's packages"
    fi
    # shellcheck disable=SC1091
    . "$prefix/env.sh"
    deps_mode="bundle $sha"
else
    step "dependencies from this node's packages"
    command -v pkg-config >/dev/null || command -v pkgconf >/dev/null ||
        fail FAILED "no pkg-config" \
            "install pkg-config (or pkgconf); on a node without a package registry pass --deps TARBALL (scripts/gpu-deps.sh)"
    deps_mode=system
fi
pkgconfig=$(command -v pkg-config || command -v pkgconf)
echo "pkg-config: $pkgconfig, PKG_CONFIG_LIBDIR=${PKG_CONFIG_LIBDIR:-(its default)}"
modules=(openblas lapacke cmocka)
[ "$full" = 0 ] || modules+=(hdf5-openmpi jansson yaml-0.1 libxxhash)
for m in "${modules[@]}"; do
    "$pkgconfig" --exists "$m" ||
        fail FAILED "pkg-config does not find '$m'" \
            "install libopenblas-dev liblapacke-dev libcmocka-dev$([ "$full" = 0 ] ||
                echo ' libhdf5-openmpi-dev libjansson-dev libyaml-dev libxxhash-dev') (Debian names), or pass" \
            "--deps TARBALL from scripts/gpu-deps.sh$([ "$full" = 0 ] || echo ' --full')"
    echo "  $m $("$pkgconfig" --modversion "$m"): $("$pkgconfig" --variable=pcfiledir "$m")/$m.pc"
done
[ "$full" = 0 ] || full_check_deps # mpicc, mpirun, h5dump, jq, python3, cmp; the shared/ folder
# pkg_check_modules keeps what it found in the cache: a build folder configured with other deps starts over
if [ -f "$build/CMakeCache.txt" ] && [ "$(cat "$build/.gpu-check-deps" 2>/dev/null)" != "$deps_mode" ]; then
    echo "$build was configured with other dependencies ($(cat "$build/.gpu-check-deps" 2>/dev/null || echo 'by hand')):" \
        "removing its CMakeCache.txt"
    rm -f "$build/CMakeCache.txt"
    generator=()
    command -v ninja >/dev/null && generator=(-G Ninja)
    rm -rf "$build/CMakeFiles"
fi
echo "$deps_mode" >"$build/.gpu-check-deps"
step_end ok

# ---- 3. GPU ----
step "GPU (nvidia-smi -L)"
n_gpus=0
if command -v nvidia-smi >/dev/null; then
    if nvidia-smi -L >"$out/nvidia-smi.txt" 2>&1; then
        n_gpus=$(grep -c '^GPU ' "$out/nvidia-smi.txt" || true)
    fi
    cat "$out/nvidia-smi.txt"
    nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total --format=csv >>"$out/nvidia-smi.txt" 2>&1 || true
else
    echo "nvidia-smi not found"
fi
cuda_arch=()
if [ "$n_gpus" -gt 0 ]; then
    if [ "$(printf '%s\n3.24\n' "$cmake_version" | sort -V | head -n 1)" = 3.24 ]; then
        cuda_arch=(-DCMAKE_CUDA_ARCHITECTURES=native)
    else # CMake < 3.24 has no `native`: the first GPU's compute capability
        cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d '. ')
        [ -z "$cap" ] || cuda_arch=(-DCMAKE_CUDA_ARCHITECTURES="$cap")
    fi
    step_end "ok: $n_gpus GPU(s)"
else
    echo "gpu-check: NO GPU FOUND: building for the project's default CUDA architectures; the gpu tests" \
        "skip their device cases and the benchmarks are not run"
    if grep -qE '^CMAKE_CUDA_ARCHITECTURES:[A-Z]+=native$' "$build/CMakeCache.txt" 2>/dev/null; then
        echo "the build folder was configured for a GPU (CMAKE_CUDA_ARCHITECTURES=native): unsetting it"
        cuda_arch=(-UCMAKE_CUDA_ARCHITECTURES)
    fi
    step_end "no GPU found"
fi

# ---- 4. configure ----
step "configure (cmake)"
if [ "$full" = 1 ]; then
    layers=(-DMOEQ_KERNELS_ONLY=OFF -DMOEQ_BUILD_TESTS=ON -DMOEQ_SHARED_DIR="$shared")
else
    layers=(-DMOEQ_KERNELS_ONLY=ON)
fi
cmake_args=(-S "$repo" -B "$build" "${generator[@]}" "${layers[@]}" -DMOEQ_CUDA=ON
            -DCMAKE_BUILD_TYPE=Release "${cuda_arch[@]}" "${cmake_extra[@]}")
echo "cmake ${cmake_args[*]}"
cmake "${cmake_args[@]}" || fail FAILED "cmake configure failed" "see the CMake error above"
echo "resolved (CMakeCache.txt, compile_commands.json):"
grep -E '^(PKG_CONFIG_EXECUTABLE|CMAKE_CUDA_COMPILER|pkgcfg_lib_[A-Z]+_[a-z0-9_]+|[A-Z]+_INCLUDE_DIRS|MPI_C_COMPILER|MPIEXEC_EXECUTABLE|MPI_mpi_LIBRARY|MPI_C_HEADER_DIR|MOEQ_SHARED_DIR):' \
    "$build/CMakeCache.txt" | sed 's/^/  /'
echo "  CUDA code: $(grep -o 'arch=compute_[0-9a-z]*,code=[^ "]*' "$build/compile_commands.json" | sort -u | tr '\n' ' ')"
step_end ok

# ---- 5. build ----
step "build (${targets:-all targets}, -j $nproc)"
target_args=()
for t in $targets; do target_args+=(--target "$t"); done
cmake --build "$build" -j "$nproc" "${target_args[@]}" || fail FAILED "build failed" "see the compiler error above"
for exe in "$build/bench/moeq-bench-kernels" "$build/bench/moeq-bench-infer"; do
    if [ -x "$exe" ] && command -v ldd >/dev/null; then
        echo "run-time BLAS/LAPACK libraries of $(basename "$exe") (ldd):"
        ldd "$exe" | grep -E 'blas|lapack|gfortran|not found' | sed 's/^[[:space:]]*/  /' || true
        break
    fi
done
step_end ok

# ---- 6, 7. tests ----
ctest_run() { # NAME CTEST_ARGS...: one ctest run; keeps its JUnit XML and full output in DIR
    local name=$1 rc=0
    shift
    ctest --test-dir "$build" --output-on-failure --output-junit "$out/ctest-$name.xml" "$@" || rc=$?
    cp "$build/Testing/Temporary/LastTest.log" "$out/ctest-$name.log" 2>/dev/null || true
    return "$rc"
}
if [ -n "$targets" ]; then
    step "tests"
    step_end "skipped: --targets builds only part of the tests"
else
    step "tests, label gpu (ctest -L gpu)"
    ctest_run gpu -L gpu || fail FAILED "gpu tests failed" "output above; all of it in $out/ctest-gpu.log"
    if [ "$n_gpus" -eq 0 ]; then
        skips=$(grep -c '^\[  SKIPPED \]' "$out/ctest-gpu.log" || true)
        echo "gpu-check: no GPU: the gpu tests passed by skipping their device cases ($skips cmocka SKIPPED" \
            "lines in $out/ctest-gpu.log)"
        step_end "ok (no GPU: $skips device cases skipped)"
    else
        step_end ok
    fi
    if [ "$full" = 1 ]; then
        full_tests # test_device_e2e, test_cuda_module*, test_quantize_e2e
    else
        step "tests, the others (ctest -LE gpu)"
        ctest_run other -LE gpu || fail FAILED "tests failed" "output above; all of it in $out/ctest-other.log"
        step_end ok
    fi
fi

# ---- 8. benchmarks ----
bench_failed=0
bench_run() { # NAME JSON ARGS...: one benchmark, JSON on stdout into DIR/JSON
    local exe=$build/bench/$1 json=$2
    shift 2
    step "benchmark $(basename "$exe") $*"
    if [ -n "$targets" ] && [[ " $targets " != *" $(basename "$exe") "* ]]; then
        step_end "skipped: not in --targets"
        return 0
    fi
    if [ ! -x "$exe" ]; then
        bench_failed=1
        step_end "FAILED: $exe was not built"
        return 0
    fi
    local rc=0
    "$exe" "$@" >"$out/$json" || rc=$?
    if [ "$rc" -ne 0 ]; then
        bench_failed=1
        rm -f "$out/$json"
        step_end "FAILED (exit $rc)"
    elif command -v python3 >/dev/null && ! python3 -m json.tool "$out/$json" >/dev/null; then
        bench_failed=1
        step_end "FAILED: $json is not valid JSON"
    else
        step_end "ok: $json"
    fi
}
if [ "$full" = 1 ]; then
    full_quantize # --device cuda on 1 and 2 ranks, cmp
    step "benchmarks"
    step_end "skipped: --full (run gpu-check.sh without --full for them)"
elif [ "$bench" = 0 ]; then
    step "benchmarks"
    step_end "skipped: --no-bench"
elif [ "$n_gpus" -eq 0 ]; then
    step "benchmarks"
    echo "gpu-check: NO GPU FOUND: benchmarks skipped"
    step_end "skipped: no GPU found"
else
    bench_run moeq-bench-kernels bench_kernels_cuda.json --device cuda --reps 3
    bench_run moeq-bench-kernels bench_tensor_cuda.json tensor --device cuda
    bench_run moeq-bench-infer bench_infer_cuda.json --device cuda --iters 30 --batch 1,2,4,8,16
fi
summary "$bench_failed"
