#!/usr/bin/env bash
# gpu-deps.sh: packs what a kernels-only CUDA build of moeq needs beyond gcc, CUDA, CMake and ninja
# (OpenBLAS, LAPACKE, cmocka, pkg-config) into one relocatable tarball, for GPU nodes without a package
# registry; scripts/gpu-check.sh --deps TARBALL unpacks and uses it there. With --full, also what the full
# build and its end-to-end tests need: Open MPI, HDF5 (openmpi flavour), jansson, libyaml, xxhash, h5dump
# and jq, with the libraries they load (gpu-deps-full.sh).
# Runs on a Debian 12 machine with apt: `apt-get download` + `dpkg-deb -x`, nothing is installed, no root.
# What dpkg -x does not do is done here: the alternatives links (libblas.so.3, liblapack.so.3, openblas.pc,
# cblas.h -> the openblas-pthread ones) and relocatable .pc files (prefix = ${pcfiledir}/../../..).
# Not done: other architectures than this machine's, other distributions. The libraries need the node's
# glibc to be at least the version printed at the end (gpu-check.sh checks it).
# Usage: scripts/gpu-deps.sh [--full] [OUT.tar.gz]
#        (default: out/moeq-gpu-deps.tar.gz, with --full out/moeq-gpu-deps-full.tar.gz, in the repository)
set -euo pipefail

die() { # MESSAGE [HINT]
    echo "gpu-deps: error: $1" >&2
    [ $# -lt 2 ] || echo "---> HINT: $2" >&2
    exit 1
}

usage() {
    cat <<'EOF'
usage: scripts/gpu-deps.sh [--full] [OUT.tar.gz]

Downloads (apt-get download, no install) the Debian packages a kernels-only CUDA build of moeq needs
besides gcc, CUDA, CMake and ninja, keeps their shared libraries, headers, .pc files and the pkg-config
binary, and packs them with an env.sh into OUT.tar.gz (default: out/moeq-gpu-deps.tar.gz in the
repository). On the GPU node: scripts/gpu-check.sh --deps OUT.tar.gz, or by hand:
    tar -xzf OUT.tar.gz -C DIR && . DIR/moeq-gpu-deps/env.sh
Run it on a Debian 12 machine of the node's CPU architecture, after apt-get update.

  --full   also what the full build (MPI, HDF5, jansson, yaml, xxhash) and its end-to-end tests need:
           Open MPI 4.1 (libraries, plugins, mpirun/mpiexec, orted, mpicc, help and wrapper data, its
           config), HDF5 1.10 openmpi (libraries, headers, .pc), h5dump and h5ls, jq, jansson, libyaml,
           xxhash and the libraries these load. Default OUT: out/moeq-gpu-deps-full.tar.gz. env.sh then
           also points Open MPI and PMIx at the bundle (OPAL_PREFIX, OPAL_SYSCONFDIR, PMIX_*). On the
           GPU node (device tool: carry out/moeq-gpu-deps-full.tar.gz, and out/shared with the tiny
           model, see scripts/gpu-check.sh --help, --shared):
               scripts/gpu-check.sh --full --deps out/moeq-gpu-deps-full.tar.gz --out $OUT/gc
EOF
}

# Debian 12 names. liblapack3/libblas3 (the reference builds) are not needed: libopenblas0-pthread ships
# libblas.so.3 and liblapack.so.3 (the alternatives made below). libtmglib3: liblapacke.so.3 needs it.
# libquadmath0: libgfortran.so.5 needs it. pkgconf-bin + libpkgconf3: the pkg-config binary (the pkgconf
# package itself only adds the pkg-config link, made below, and autoconf files).
PKGS=(libopenblas0-pthread libopenblas-pthread-dev
      liblapacke liblapacke-dev libtmglib3
      libgfortran5 libquadmath0
      libcmocka0 libcmocka-dev
      pkgconf-bin libpkgconf3)
# What every node with gcc has; a library the bundle needs must be one of these or be in the bundle.
BASE_LIBS=(libc.so.6 libm.so.6 libpthread.so.0 libdl.so.2 librt.so.1 libresolv.so.2 libutil.so.1 libgcc_s.so.1
           ld-linux-x86-64.so.2 ld-linux-aarch64.so.1 ld64.so.2)
NAME=moeq-gpu-deps

full=0 out=""
while [ $# -gt 0 ]; do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --full) full=1 ;;
        -*) usage >&2; die "unknown option '$1'" "options: --full, --help; then the tarball's path" ;;
        *) [ -z "$out" ] || die "one tarball path expected, got '$out' and '$1'" "scripts/gpu-deps.sh --help"
           out=$1 ;;
    esac
    shift
done
repo=$(cd "$(dirname "$0")/.." && pwd -P)
flavour=kernels
if [ "$full" = 1 ]; then
    flavour=full
    # shellcheck source=scripts/gpu-deps-full.sh
    . "$repo/scripts/gpu-deps-full.sh" # FULL_PKGS, PRIVATE_PKGS, full_* functions
    PKGS+=("${FULL_PKGS[@]}")
fi
out=${out:-$repo/out/$NAME$([ "$full" = 0 ] || echo -full).tar.gz}
case "$out" in
    *.tar.gz | *.tgz) ;;
    *) die "'$out' does not end in .tar.gz" "name the output OUT.tar.gz" ;;
esac
mkdir -p "$(dirname "$out")"
out=$(cd "$(dirname "$out")" && pwd -P)/$(basename "$out")

for tool in apt-get apt-cache dpkg dpkg-deb tar gzip sha256sum; do
    command -v "$tool" >/dev/null || die "'$tool' not found" "run this on a Debian 12 machine with apt"
done
# shellcheck disable=SC1091
os=$(. /etc/os-release 2>/dev/null && echo "${ID:-?} ${VERSION_ID:-?}")
[ "$os" = "debian 12" ] || echo "gpu-deps: warning: this is '$os', not Debian 12: package names or" \
    "layouts may differ (the checks below stop on what they find missing)" >&2
arch=$(dpkg --print-architecture)
case "$arch" in
    amd64) triplet=x86_64-linux-gnu ;;
    arm64) triplet=aarch64-linux-gnu ;;
    ppc64el) triplet=powerpc64le-linux-gnu ;;
    *) die "architecture '$arch' is not handled" "use an amd64, arm64 or ppc64el machine" ;;
esac

work=$(mktemp -d "${TMPDIR:-/tmp}/gpu-deps.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/debs" "$work/$NAME"
# Called by root, apt-get downloads as the user _apt, which must be able to write the folder (else a warning).
if [ "$(id -u)" -eq 0 ] && id _apt >/dev/null 2>&1; then
    chmod 755 "$work" && chown _apt "$work/debs"
fi
stage=$work/$NAME
lib=$stage/usr/lib/$triplet
obl=$lib/openblas-pthread

# ---- download and extract ----
echo "gpu-deps: downloading ${#PKGS[@]} packages for $arch: ${PKGS[*]}"
(cd "$work/debs" && apt-get download -q "${PKGS[@]}") ||
    die "apt-get download failed" "run 'apt-get update' (as root) first; package names are Debian 12's"
manifest_pkgs=()
for deb in "$work"/debs/*.deb; do
    dpkg-deb -x "$deb" "$stage"
    manifest_pkgs+=("$(dpkg-deb -f "$deb" Package) $(dpkg-deb -f "$deb" Version)")
done
priv=""
[ "$full" = 0 ] || full_download_private # sets priv (usr/lib/TRIPLET/moeq-private) and patchelf

# ---- keep only what a build needs: shared libraries, headers, .pc files, the pkg-config binary ----
[ "$full" = 0 ] || full_prune # (--full: and Open MPI's data in usr/share/openmpi, the programs tests run)
rm -rf "${stage:?}/usr/share" "$stage/usr/lib/pkgconfig" "$lib/cmake" "$obl/cmake" \
       "$stage/usr/include/cmockery" "$lib/libcmockery.so"
find "$stage" -name '*.a' -delete # static libraries and the links to them
find "$stage" -depth -type d -empty -delete

# ---- the Debian alternatives (update-alternatives, not in the .debs): the openblas-pthread ones ----
alt_link() { # DIR NAME TARGET (relative to DIR)
    [ -e "$1/$3" ] || die "alternative target $1/$3 is missing" "the Debian package layout changed: update gpu-deps.sh"
    ln -sfn "$3" "$1/$2"
}
for so in libblas.so.3 libblas.so liblapack.so.3 liblapack.so libopenblas.so.0 libopenblas.so; do
    alt_link "$lib" "$so" "openblas-pthread/$so"
done
for h in cblas.h f77blas.h openblas_config.h; do
    alt_link "$stage/usr/include/$triplet" "$h" "openblas-pthread/$h"
done
ln -sfn pkgconf "$stage/usr/bin/pkg-config"
# The .pc alternatives are copies, not links: ${pcfiledir} is the folder of the path pkg-config opened.
pc=$lib/pkgconfig
[ -d "$obl/pkgconfig" ] || die "$obl/pkgconfig is missing" "the Debian package layout changed: update gpu-deps.sh"
cp "$obl/pkgconfig/openblas.pc" "$pc/openblas.pc"
cp "$obl/pkgconfig/blas-openblas.pc" "$pc/blas.pc"
cp "$obl/pkgconfig/lapack-openblas.pc" "$pc/lapack.pc" # lapacke.pc: Requires.private: lapack
rm -rf "$obl/pkgconfig"
[ "$full" = 0 ] || full_finish # mpirun/mpiexec/mpicc links, ompi .pc copies, RUNPATHs

# ---- relocatable .pc files: /usr -> ${pcfiledir}/../../.. (pc = usr/lib/TRIPLET/pkgconfig) ----
# shellcheck disable=SC2016 # ${pcfiledir} is for pkg-config, not the shell
sed -E -i 's#(^|[=[:space:]]|-I|-L)/usr(/|$|[[:space:]])#\1${pcfiledir}/../../..\2#g' "$pc"/*.pc
# lapacke.pc names usr/include/TRIPLET, but Debian puts lapacke.h in usr/include (found there only because
# /usr/include is a default search path): add that folder.
# shellcheck disable=SC2016
sed -E -i 's#^(Cflags:.*)$#\1 -I${pcfiledir}/../../../include#' "$pc/lapacke.pc"
if grep -nE '(^|[=[:space:]]|-I|-L)/(usr|lib|opt)' "$pc"/*.pc; then
    die "absolute paths left in the .pc files above" "extend the rewrite in gpu-deps.sh"
fi

# ---- checks: every library the bundle needs is in it or in BASE_LIBS; the glibc it needs ----
glibc_min=unknown
if command -v readelf >/dev/null; then
    missing=""
    glibc_versions=""
    while IFS= read -r -d '' f; do
        head -c 4 "$f" | grep -q ELF || continue
        for needed in $(readelf -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
            case " ${BASE_LIBS[*]} " in *" $needed "*) continue ;; esac
            found=0
            for d in "$lib" "$obl" ${priv:+"$priv"}; do
                [ ! -e "$d/$needed" ] || found=1
            done
            [ "$found" = 1 ] || missing+=" $needed (for ${f#"$stage"/})"
        done
        glibc_versions+=" $(readelf -V -W "$f" | { grep -o 'GLIBC_[0-9][0-9.]*' || true; } | sort -u | tr '\n' ' ')"
    done < <(find "$stage/usr/lib" "$stage/usr/bin" -type f -print0)
    [ -z "$missing" ] || die "libraries needed but not bundled:$missing" \
        "add their packages to PKGS in gpu-deps.sh (or PRIVATE_PKGS in gpu-deps-full.sh); dpkg -S LIBRARY names a package"
    glibc_min=$(echo "$glibc_versions" | tr ' ' '\n' | sed -n 's/^GLIBC_//p' | sort -V | tail -n 1)
else
    echo "gpu-deps: warning: readelf (binutils) not found: library closure and glibc version not checked" >&2
fi

# ---- env.sh, MANIFEST ----
sed "s/@TRIPLET@/$triplet/g" "$repo/scripts/gpu-deps-env.sh" >"$stage/env.sh"
{
    echo "# $NAME: made by scripts/gpu-deps.sh ($(git -C "$repo" describe --always --dirty 2>/dev/null || echo '?'))"
    echo "# on $os $arch, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "arch=$arch"
    echo "triplet=$triplet"
    echo "flavour=$flavour"
    echo "glibc_min=$glibc_min"
    printf 'package=%s\n' "${manifest_pkgs[@]}"
} >"$stage/MANIFEST"

# ---- smoke test in an empty environment: the bundle's pkg-config finds the three modules in the bundle ----
# shellcheck disable=SC2016 # $1 is expanded by the inner bash
flags=$(env -i PATH=/usr/bin:/bin bash -c '. "$1/env.sh" && pkg-config --cflags --libs openblas lapacke cmocka' \
        _ "$stage") || die "the bundle's pkg-config does not resolve openblas lapacke cmocka" "see the error above"
case "$flags" in *" /usr/"* | *"-I/usr/"* | *"-L/usr/"*) die "pkg-config flags point outside the bundle: $flags" ;; esac
[ "$full" = 0 ] || full_smoke

# ---- pack ----
tar -C "$work" --owner=0 --group=0 --numeric-owner -czf "$out.tmp" "$NAME"
mv "$out.tmp" "$out"
bytes=$(stat -c %s "$out")
echo "gpu-deps: packages (${#manifest_pkgs[@]}):"
printf '    %s\n' "${manifest_pkgs[@]}"
echo "gpu-deps: needs glibc >= $glibc_min, arch $arch ($triplet)"
echo "gpu-deps: unpacked $(du -sh "$stage" | cut -f1), $(find "$stage" -type f | wc -l) files"
mib=$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1048576 }')
echo "gpu-deps: wrote $out ($mib MiB, sha256 $(sha256sum "$out" | cut -c1-16)...)"
# it travels with the repository to the node; 40 MiB (45 with --full) leaves room under a 64 MiB transfer limit
limit=$((full ? 45 : 40))
[ "$bytes" -lt $((limit * 1048576)) ] || echo "gpu-deps: warning: $mib MiB, over $limit MiB" >&2
echo "gpu-deps: on the GPU node, in the repository:" \
    "scripts/gpu-check.sh$([ "$full" = 0 ] || echo ' --full') --deps ${out#"$repo"/}"
