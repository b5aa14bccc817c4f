#!/usr/bin/env bash
# gpu-deps-hide.sh: runs a command where this machine's own copies of what a gpu-deps bundle provides are
# hidden, to check that the bundle alone suffices (as on a GPU node without those packages). In a private
# mount namespace (unshare -m; root), /usr/bin, /usr/include, /usr/lib/TRIPLET, /usr/share, /etc/openmpi
# and /etc/alternatives get an overlay on a tmpfs in which every file of the bundle's packages (MANIFEST's
# package= lines, less those marked private) and of the --also packages is deleted, then every link left
# dangling (the alternatives: mpirun, mpicc, libblas.so.3, cblas.h, hdf5.pc, ...). Nothing outside the
# namespace changes; it ends with the command.
# Not hidden: the bundle's private libraries (libcurl, libssl, zlib, ...: this machine's cmake, git and gcc
# load them; the bundle's own libraries reach their copies through RUNPATH, which `ldd` shows).
set -euo pipefail

die() { # MESSAGE [HINT]
    echo "gpu-deps-hide: error: $1" >&2
    [ $# -lt 2 ] || echo "---> HINT: $2" >&2
    exit 1
}

usage() {
    cat <<'EOF'
usage: scripts/gpu-deps-hide.sh [--also "PKG ..."] BUNDLE_DIR -- COMMAND [ARGS ...]

Runs COMMAND in a mount namespace where the files of the Debian packages listed in BUNDLE_DIR/MANIFEST
(BUNDLE_DIR: an unpacked moeq-gpu-deps folder), and of the --also packages, are deleted from an overlay
of /usr/bin, /usr/include, /usr/lib/TRIPLET, /usr/share, /etc/openmpi and /etc/alternatives, with the
links left dangling by that. Needs root (unshare -m, mount). Example, the full bundle:
    scripts/gpu-deps-hide.sh --also "libblas3 liblapack3 pkgconf" /tmp/b/moeq-gpu-deps -- \
        bash -c '. /tmp/b/moeq-gpu-deps/env.sh && cmake -S . -B build-ns -DMOEQ_CUDA=ON && ...'
EOF
}

also=""
while [ $# -gt 0 ]; do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --also) [ $# -ge 2 ] || die "--also needs a value" "scripts/gpu-deps-hide.sh --help"; also=$2; shift 2 ;;
        --) shift; break ;;
        -*) die "unknown option '$1'" "scripts/gpu-deps-hide.sh --help" ;;
        *) [ -z "${bundle:-}" ] || die "one BUNDLE_DIR expected" "scripts/gpu-deps-hide.sh --help"
           bundle=$1; shift ;;
    esac
done
[ -f "${bundle:-/nonexistent}/MANIFEST" ] || die "no MANIFEST in '${bundle:-}'" "pass the unpacked moeq-gpu-deps folder"
[ $# -gt 0 ] || die "no command after --" "scripts/gpu-deps-hide.sh --help"
[ "$(id -u)" -eq 0 ] || die "needs root (unshare -m, mount)" "run it as root"
command -v unshare >/dev/null || die "unshare not found" "apt-get install util-linux"
triplet=$(sed -n 's/^triplet=//p' "$bundle/MANIFEST")
# package=NAME VERSION; the private ones have a third field
pkgs=$(sed -n 's/^package=\([^ ]*\) [^ ]*$/\1/p' "$bundle/MANIFEST" | tr '\n' ' ')
[ -n "$pkgs" ] || die "no package= lines in $bundle/MANIFEST" "make the bundle with scripts/gpu-deps.sh"

# shellcheck disable=SC2016 # the inner script's variables are its own
inner='
set -euo pipefail
triplet=$1 pkgs=$2; shift 2
roots=(/usr/bin /usr/include "/usr/lib/$triplet" /usr/share /etc/alternatives)
[ ! -d /etc/openmpi ] || roots+=(/etc/openmpi)
scratch=$(mktemp -d /tmp/gpu-deps-hide.XXXXXX)
mount -t tmpfs gpu-deps-hide "$scratch"
i=0
for r in "${roots[@]}"; do
    i=$((i + 1))
    mkdir -p "$scratch/$i/up" "$scratch/$i/work"
    mount -t overlay gpu-deps-hide -o "lowerdir=$r,upperdir=$scratch/$i/up,workdir=$scratch/$i/work" "$r"
done
under_root() { local r; for r in "${roots[@]}"; do case "$1" in "$r"/*) return 0 ;; esac; done; return 1; }
n=0 outside=() missing=""
for p in $pkgs; do
    if ! list=$(dpkg -L "$p" 2>/dev/null); then missing+=" $p"; continue; fi
    dirs=()
    while IFS= read -r f; do
        [ -n "$f" ] && [ "$f" != /. ] || continue
        # /lib -> usr/lib (merged /usr): the folder as it resolves, the name as it is
        g=$(readlink -f "$(dirname "$f")" 2>/dev/null)/$(basename "$f") || continue
        if [ -d "$g" ] && [ ! -L "$g" ]; then dirs+=("$g"); continue; fi
        [ -e "$g" ] || [ -L "$g" ] || continue
        if under_root "$g"; then rm -f "$g"; n=$((n + 1)); else outside+=("$g"); fi
    done <<<"$list"
    for ((k = ${#dirs[@]} - 1; k >= 0; k--)); do # the package folders that are empty now
        if under_root "${dirs[$k]}"; then rmdir "${dirs[$k]}" 2>/dev/null || true; fi
    done
done
links=0
for r in "${roots[@]}"; do
    while IFS= read -r -d "" l; do rm -f "$l"; links=$((links + 1)); done < <(find "$r" -xtype l -print0)
done
echo "gpu-deps-hide: hid $n files and $links dangling links under ${roots[*]}${missing:+; not installed here:$missing}"
[ ${#outside[@]} -eq 0 ] || echo "gpu-deps-hide: not hidden (outside those folders): ${outside[*]:0:12}$(
    [ ${#outside[@]} -le 12 ] || echo " ... (${#outside[@]} in all)")"
exec "$@"
'
exec unshare -m --propagation private bash -c "$inner" gpu-deps-hide "$triplet" "$pkgs $also" "$@"
