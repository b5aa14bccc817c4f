#!/usr/bin/env bash
# build-llama-tools.sh [SRC] [DEST]: builds llama.cpp's `llama-imatrix` and `llama-quantize` (CPU only, only
# those two targets and what they link) from the llama.cpp that llama-cpp-python's source distribution vendors,
# the same llama.cpp that build-venv's llama_cpp module runs (scripts/install-deps.sh), so the importance
# matrix, the quantizer and the perplexity all come from one llama.cpp. Used by bench/gptq_vs_gptqmodel.py
# (issue 22's q3_K peer). Outside the repository by default:
#   SRC  default /work/.llama-src/llama_cpp_python-0.3.36/vendor/llama.cpp, or unpacked from llama-cpp-python's
#        sdist (pip download --no-binary :all: --no-deps llama_cpp_python==0.3.36) when given a .tar.gz
#   DEST default /work/.llama-tools; the binaries land in DEST/bin.
# No network: libcurl, OpenSSL, the web UI, tests, examples and server are off. Idempotent (cmake rebuilds
# nothing when up to date). Niced, -j2 unless JOBS is set.
set -euo pipefail
src=${1:-/work/.llama-src/llama_cpp_python-0.3.36/vendor/llama.cpp}
dest=${2:-/work/.llama-tools}
jobs=${JOBS:-2}
if [[ "$src" == *.tar.gz ]]; then
    mkdir -p "$dest/src"
    tar -xzf "$src" -C "$dest/src"
    src=$(echo "$dest"/src/llama_cpp_python-*/vendor/llama.cpp)
fi
[ -f "$src/CMakeLists.txt" ] || { echo "build-llama-tools.sh: no llama.cpp source at $src" >&2; exit 3; }
mkdir -p "$dest"
cmake -S "$src" -B "$dest/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
    -DGGML_CUDA=OFF -DGGML_NATIVE=ON -DGGML_OPENMP=ON \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_BUILD_TOOLS=ON -DLLAMA_OPENSSL=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF \
    >"$dest/cmake.log"
nice cmake --build "$dest/build" -j"$jobs" --target llama-imatrix llama-quantize
# llama.cpp sets its own runtime output directory (build/bin); static libraries, so the binaries stand alone
mkdir -p "$dest/bin"
install -m 755 "$dest/build/bin/llama-imatrix" "$dest/build/bin/llama-quantize" "$dest/bin/"
help=$("$dest/bin/llama-quantize" --help 2>&1 || true) # --help exits 1
grep -q -- "--imatrix" <<<"$help" ||
    { echo "build-llama-tools.sh: $dest/bin/llama-quantize does not run" >&2; exit 1; }
echo "$dest/bin/llama-imatrix $dest/bin/llama-quantize"
