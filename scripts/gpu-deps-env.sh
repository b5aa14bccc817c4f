# shellcheck shell=bash
# env.sh of a moeq GPU dependency bundle. scripts/gpu-deps.sh copies this file into the tarball (with
# @TRIPLET@ replaced); it is not meant to be sourced from scripts/. After unpacking the tarball anywhere:
#     . DIR/moeq-gpu-deps/env.sh          (bash or zsh; from another shell set MOEQ_DEPS_PREFIX=DIR/moeq-gpu-deps)
# Puts the bundle's pkg-config first on PATH and makes the bundle's .pc files the only ones pkg-config reads
# (PKG_CONFIG_LIBDIR; PKG_CONFIG_PATH starts with them too), so that a kernels-only configure cannot mix them
# with the node's own; adds the bundle's libraries to LD_LIBRARY_PATH (liblapacke.so.3 finds libblas.so.3 and
# liblapack.so.3 through it at run time) and LIBRARY_PATH, its headers to CPATH. Sourcing it twice adds
# nothing twice. A kernels-only bundle is not for a full moeq build (the node's HDF5, MPI, jansson .pc
# files would be hidden); a --full bundle is: it has them, with Open MPI, which this file then points at the
# bundle (below). moeq-private/ (libraries only the bundle's libraries load) is not put on LD_LIBRARY_PATH:
# they find it through their RUNPATH, and the node's programs keep the node's libcurl, libssl, zlib.
if [ -n "${BASH_VERSION:-}" ]; then
    _moeq_env_file=${BASH_SOURCE[0]}
elif [ -n "${ZSH_VERSION:-}" ]; then
    eval '_moeq_env_file=${(%):-%x}'
elif [ -n "${MOEQ_DEPS_PREFIX:-}" ]; then
    _moeq_env_file=$MOEQ_DEPS_PREFIX/env.sh
else
    echo "env.sh: cannot tell where this file is from this shell" >&2
    echo "---> HINT: use bash or zsh, or set MOEQ_DEPS_PREFIX to the unpacked moeq-gpu-deps folder" >&2
    # shellcheck disable=SC2317 # exit: when executed instead of sourced
    return 1 2>/dev/null || exit 1
fi
MOEQ_DEPS_PREFIX=$(cd "$(dirname "$_moeq_env_file")" && pwd -P) || return 1
export MOEQ_DEPS_PREFIX

_moeq_prepend() { # VAR DIR: puts DIR in front of the colon-separated list VAR, unless VAR has it already
    _moeq_old=
    eval "_moeq_old=\${$1:-}"
    case ":$_moeq_old:" in
        *":$2:"*) ;;
        *) eval "export $1=\"\$2\${_moeq_old:+:\$_moeq_old}\"" ;;
    esac
}
_moeq_lib=$MOEQ_DEPS_PREFIX/usr/lib/@TRIPLET@
_moeq_prepend PATH "$MOEQ_DEPS_PREFIX/usr/bin"
_moeq_prepend PKG_CONFIG_PATH "$_moeq_lib/pkgconfig"
export PKG_CONFIG_LIBDIR="$_moeq_lib/pkgconfig"
_moeq_prepend LD_LIBRARY_PATH "$_moeq_lib/openblas-pthread"
_moeq_prepend LD_LIBRARY_PATH "$_moeq_lib"
_moeq_prepend LIBRARY_PATH "$_moeq_lib/openblas-pthread"
_moeq_prepend LIBRARY_PATH "$_moeq_lib"
_moeq_prepend CPATH "$MOEQ_DEPS_PREFIX/usr/include/@TRIPLET@"
_moeq_prepend CPATH "$MOEQ_DEPS_PREFIX/usr/include"
if [ -d "$_moeq_lib/openmpi" ]; then
    # Open MPI 4.1 (--full): its folders are ${prefix}-relative but for the config folder (/etc/openmpi);
    # PMIx's are absolute (/usr/lib/TRIPLET/pmix2/...): each one named. mpirun, mpicc, ompi_info and the
    # ranks then read plugins, help texts, wrapper data and openmpi-mca-params.conf from the bundle.
    export OPAL_PREFIX="$MOEQ_DEPS_PREFIX/usr"
    export OPAL_SYSCONFDIR="$MOEQ_DEPS_PREFIX/etc/openmpi"
    export PMIX_PREFIX="$_moeq_lib/pmix2" PMIX_INSTALL_PREFIX="$_moeq_lib/pmix2"
    export PMIX_LIBDIR="$_moeq_lib/pmix2/lib" PMIX_PKGLIBDIR="$_moeq_lib/pmix2/lib/pmix"
    export PMIX_DATADIR="$_moeq_lib/pmix2/share" PMIX_PKGDATADIR="$_moeq_lib/pmix2/share/pmix"
    # One node, no ssh needed: mpirun's rsh launcher still looks for `ssh : rsh` on PATH and stops where
    # neither exists (containers); `false` satisfies it and is never run for local ranks. A value set
    # before sourcing this file is kept.
    export OMPI_MCA_plm_rsh_agent="${OMPI_MCA_plm_rsh_agent:-false}"
    # vader's single-copy path (CMA, process_vm_readv) is refused in containers without ptrace rights
    # (gVisor): plain shared-memory copies instead.
    export OMPI_MCA_btl_vader_single_copy_mechanism="${OMPI_MCA_btl_vader_single_copy_mechanism:-none}"
fi
unset -f _moeq_prepend
unset _moeq_env_file _moeq_lib _moeq_old
