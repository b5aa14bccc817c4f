# shellcheck shell=bash
# shellcheck disable=SC2034,SC2154 # shares its variables with gpu-deps.sh, which sources it
# gpu-deps-full.sh: the --full part of scripts/gpu-deps.sh, which sources it (not meant to be run): the
# packages and steps that add what the full moeq build and its end-to-end tests need to the bundle.
# Uses gpu-deps.sh's variables (work, stage, lib, triplet, manifest_pkgs) and die().
#
# Layout in the bundle (Debian's, so that the compiled-in relative paths still hold):
#   usr/bin/{mpirun,mpiexec -> orterun, mpicc -> opal_wrapper, orted, ompi_info, h5dump, h5ls, jq}
#   usr/lib/TRIPLET/            libmpi, libopen-pal/rte, libpmix, libhwloc, libevent, libhdf5_openmpi,
#                               libhdf5_serial (h5dump), jansson, yaml, xxhash, sz/aec, jq/onig
#   usr/lib/TRIPLET/openmpi/    include/ (mpi.h), lib/ (libmpi.so link, plugins in openmpi3/)
#   usr/lib/TRIPLET/pmix2/      PMIx (lib/, plugins in lib/pmix/, help texts in share/)
#   usr/lib/TRIPLET/hdf5/openmpi/, usr/include/hdf5/openmpi/   as Debian's libhdf5-openmpi-dev
#   usr/lib/TRIPLET/moeq-private/  libraries that only the bundle's libraries load (libcurl and its TLS,
#                               Kerberos, LDAP, IDN libraries, zlib, libudev, libmunge): not on
#                               LD_LIBRARY_PATH, where they would take the place of the node's own for
#                               every program (cmake, gcc, python3); found through RUNPATH instead
#   usr/share/openmpi/          help texts and mpicc's wrapper data;  etc/openmpi/  Open MPI's config
# RUNPATHs are rewritten with patchelf (a Debian package, unpacked here, not packed): Open MPI's absolute
# /usr/lib/TRIPLET/openmpi/lib becomes $ORIGIN-relative, and whatever needs a moeq-private library gets
# $ORIGIN/.../moeq-private.

# What the full build links and its tests run (tests/pipeline/*.sh: mpirun, h5dump, jq; python3 and cmp
# are the node's). libopenmpi-dev: mpi.h and the libmpi.so link; openmpi-common: help texts, wrapper data.
FULL_PKGS=(openmpi-bin openmpi-common libopenmpi3 libopenmpi-dev
           libpmix2 libhwloc15 libevent-core-2.1-7 libevent-pthreads-2.1-7
           libhdf5-openmpi-103-1 libhdf5-openmpi-dev libsz2 libaec0
           hdf5-tools libhdf5-103-1
           libjansson4 libjansson-dev libyaml-0-2 libyaml-dev libxxhash0 libxxhash-dev
           jq libjq1 libonig5)
# Loaded only by the libraries above (libhdf5: libcurl, libcrypto; libhwloc: libudev; libpmix: libmunge;
# libopen-rte: zlib); found with readelf -d, recursively (the closure check in gpu-deps.sh stops on a gap).
PRIVATE_PKGS=(libcurl4 libnghttp2-14 libidn2-0 librtmp1 libssh2-1 libpsl5 libssl3 libgssapi-krb5-2
              libldap-2.5-0 libzstd1 libbrotli1 zlib1g libunistring2 libgnutls30 libhogweed6 libnettle8
              libgmp10 libkrb5-3 libk5crypto3 libcom-err2 libkrb5support0 libsasl2-2 libp11-kit0
              libtasn1-6 libkeyutils1 libffi8 libudev1 libmunge2)
# Open MPI plugins for network hardware (InfiniBand verbs, libfabric, UCX, PSM) or netlink, whose
# libraries are not bundled, and OpenSHMEM's (moeq does not use it): removed, so that Open MPI does not
# try to open them (one node, shared memory and TCP: self, vader, tcp).
OMPI_DROP_PLUGINS=(btl_ofi btl_openib mtl_ofi mtl_psm mtl_psm2 pml_ucx osc_ucx reachable_netlink
                   atomic_basic atomic_ucx memheap_buddy memheap_ptmalloc scoll_basic scoll_mpi spml_ucx
                   sshmem_mmap sshmem_sysv sshmem_ucx)
# What stays in usr/bin (orterun is mpirun; opal_wrapper is mpicc; ompi_info tells where Open MPI looks)
FULL_BINS=(orterun orted opal_wrapper ompi_info h5dump h5ls jq)

full_download_private() { # downloads PRIVATE_PKGS and patchelf; moves their libraries to moeq-private/
    mkdir -p "$work/debs-private" "$work/private" "$work/tools"
    [ "$(id -u)" -ne 0 ] || ! id _apt >/dev/null 2>&1 || chown _apt "$work/debs-private"
    echo "gpu-deps: downloading ${#PRIVATE_PKGS[@]} packages of libraries that only the bundle loads, and patchelf"
    (cd "$work/debs-private" && apt-get download -q "${PRIVATE_PKGS[@]}" patchelf) ||
        die "apt-get download failed" "run 'apt-get update' (as root) first; package names are Debian 12's"
    local deb
    for deb in "$work"/debs-private/*.deb; do
        case "$(basename "$deb")" in
            patchelf_*) dpkg-deb -x "$deb" "$work/tools"; continue ;;
        esac
        dpkg-deb -x "$deb" "$work/private"
        manifest_pkgs+=("$(dpkg-deb -f "$deb" Package) $(dpkg-deb -f "$deb" Version) private")
    done
    patchelf=$work/tools/usr/bin/patchelf
    "$patchelf" --version >/dev/null || die "patchelf from Debian's package does not run here" "see the error above"
    priv=$lib/moeq-private
    mkdir -p "$priv"
    # the shared libraries (files and soname links) directly in lib/TRIPLET or usr/lib/TRIPLET; their
    # plugin folders (sasl, krb5, p11-kit, gnutls) are not needed to load them
    find "$work/private/lib/$triplet" "$work/private/usr/lib/$triplet" -maxdepth 1 -name 'lib*.so.*' \
        \( -type f -o -type l \) -exec mv -t "$priv" {} + 2>/dev/null || true
    if [ ! -e "$priv/libcurl.so.4" ] || [ ! -e "$priv/libz.so.1" ]; then
        die "libcurl.so.4 or libz.so.1 not found in the private packages" "the Debian package layout changed: update gpu-deps-full.sh"
    fi
}

full_prune() { # before gpu-deps.sh removes usr/share: what the full build does not need
    local omp=$lib/openmpi/lib p b
    mv "$stage/usr/share/openmpi" "$work/share-openmpi" ||
        die "usr/share/openmpi missing" "the Debian package layout changed: update gpu-deps-full.sh"
    # C only: no Fortran (fortran/ has a second copy of the headers and the .mod files), C++, Java
    # bindings; no OpenSHMEM; no libraries for network hardware
    rm -rf "$lib/fortran" "$stage/etc/gss"
    rm -f "$lib"/lib{mpi_cxx,mpi_java,mpi_mpifh,mpi_usempi_ignore_tkr,mpi_usempif08,oshmem}.so* \
          "$lib"/libmca_common_{ofi,ucx,verbs}.so* "$lib"/libmpi_*-gfortran.so* "$omp/ompi_monitoring_prof.so"
    for p in "${OMPI_DROP_PLUGINS[@]}"; do
        rm -f "$omp/openmpi3/mca_$p.so"
    done
    rm -rf "$lib/openmpi/include/openshmem" "$lib/openmpi/include/mpp"
    rm -f "$lib/openmpi/include"/{pshmem,pshmemx,shmem,shmemx,shmem-compat}.h "$lib/openmpi/include/shmem.fh"
    for b in "$stage"/usr/bin/*; do
        case " ${FULL_BINS[*]} pkgconf " in *" $(basename "$b") "*) ;; *) rm -f "$b" ;; esac
    done
    for b in "${FULL_BINS[@]}"; do
        [ -x "$stage/usr/bin/$b" ] || die "usr/bin/$b missing" "the Debian package layout changed: update gpu-deps-full.sh"
    done
    # help texts and the C wrapper's data only (mpicc reads mpicc-wrapper-data.txt, by its own name)
    find "$work/share-openmpi" -name '*-wrapper-data.txt' ! -name 'mpicc-wrapper-data.txt' -delete
    rm -rf "$work/share-openmpi/amca-param-sets"
    rm -f "$lib/pmix2/share/pmix/pmixcc-wrapper-data.txt" "$lib/pmix2/share/pmix/pmix-valgrind.supp"
}

full_finish() { # after the generic pruning: links, .pc files, RUNPATHs
    local pc=$lib/pkgconfig f
    mkdir -p "$stage/usr/share"
    mv "$work/share-openmpi" "$stage/usr/share/openmpi"
    # Debian's alternatives: mpirun, mpiexec, mpicc (the wrapper finds its data by the name it is called by)
    ln -sfn orterun "$stage/usr/bin/mpirun"
    ln -sfn orterun "$stage/usr/bin/mpiexec"
    ln -sfn opal_wrapper "$stage/usr/bin/mpicc"
    # the ompi .pc files (hdf5-openmpi.pc: Requires: ompi) are links into openmpi/lib/pkgconfig: copies,
    # since ${pcfiledir} is the folder of the path pkg-config opened
    for f in ompi ompi-c orte; do
        [ -f "$lib/openmpi/lib/pkgconfig/$f.pc" ] ||
            die "openmpi/lib/pkgconfig/$f.pc missing" "the Debian package layout changed: update gpu-deps-full.sh"
        rm -f "$pc/$f.pc"
        cp "$lib/openmpi/lib/pkgconfig/$f.pc" "$pc/$f.pc"
    done
    rm -rf "$lib/openmpi/lib/pkgconfig" "$pc"/ompi-{cxx,fort}.pc
    # links left pointing at what was not downloaded or was removed (C++, Fortran, hl)
    find "$stage" -xtype l -delete
    if find "$stage" -type l -lname '/*' | grep .; then
        die "absolute links above would point outside the bundle" "make them relative in gpu-deps-full.sh"
    fi
    full_runpaths
}

full_runpaths() { # RUNPATH: no absolute system folder; moeq-private where a library from there is needed
    local f dir old new entry needed rel n_set=0 entries
    while IFS= read -r -d '' f; do
        head -c 4 "$f" | grep -q ELF || continue
        dir=$(dirname "$f")
        old=$("$patchelf" --print-rpath "$f")
        new=""
        IFS=: read -r -a entries <<<"$old"
        for entry in "${entries[@]}"; do
            case "$entry" in
                /usr/* | /lib/*)
                    if [ -d "$stage$entry" ]; then
                        rel=$(realpath -m --relative-to="$dir" "$stage$entry")
                        new+="${new:+:}\$ORIGIN/$rel"
                    fi ;;
                *) ;; # Debian's build folders (/build/...), nothing there on any machine
            esac
        done
        for needed in $(readelf -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
            if [ -e "$priv/$needed" ]; then
                if [ "$dir" = "$priv" ]; then rel="\$ORIGIN"; else rel="\$ORIGIN/$(realpath -m --relative-to="$dir" "$priv")"; fi
                case ":$new:" in *":$rel:"*) ;; *) new+="${new:+:}$rel" ;; esac
                break
            fi
        done
        [ "$new" != "$old" ] || continue
        if [ -n "$new" ]; then
            "$patchelf" --set-rpath "$new" "$f"
        else
            "$patchelf" --remove-rpath "$f"
        fi
        n_set=$((n_set + 1))
    done < <(find "$stage" -type f -print0)
    echo "gpu-deps: RUNPATH rewritten in $n_set files (bundle-relative, moeq-private where needed)"
    if find "$stage" -type f -print0 | xargs -0 readelf -d 2>/dev/null | grep -E 'R(UN)?PATH' | grep -E '\[(/|.*:/)'; then
        die "absolute RUNPATH entries left (above)" "extend full_runpaths in gpu-deps-full.sh"
    fi
}

full_smoke() { # in an empty environment with env.sh: pkg-config, mpicc, mpirun, h5dump, jq from the bundle
    local flags
    # shellcheck disable=SC2016 # $1 is expanded by the inner bash
    flags=$(env -i PATH=/usr/bin:/bin bash -c '. "$1/env.sh" && pkg-config --cflags --libs hdf5-openmpi jansson yaml-0.1 libxxhash' \
            _ "$stage") || die "the bundle's pkg-config does not resolve hdf5-openmpi jansson yaml-0.1 libxxhash" "see the error above"
    case "$flags" in *" /usr/"* | *"-I/usr/"* | *"-L/usr/"*) die "pkg-config flags point outside the bundle: $flags" ;; esac
    # shellcheck disable=SC2016
    flags=$(env -i PATH=/usr/bin:/bin bash -c '. "$1/env.sh" && mpicc -showme' _ "$stage") ||
        die "the bundle's mpicc does not run" "see the error above"
    case "$flags" in *"$stage/usr/lib/$triplet/openmpi/include"*) ;; *) die "mpicc -showme does not name the bundle: $flags" ;; esac
    # shellcheck disable=SC2016
    env -i PATH=/usr/bin:/bin HOME="$work" TMPDIR="$work" bash -c '. "$1/env.sh" &&
        [ "$(command -v mpirun)" = "$1/usr/bin/mpirun" ] && [ "$(command -v h5dump)" = "$1/usr/bin/h5dump" ] &&
        h5dump --version >/dev/null && jq --version >/dev/null &&
        OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun --oversubscribe -n 2 true' _ "$stage" ||
        die "the bundle's mpirun -n 2, h5dump or jq failed" "see the error above"
    echo "gpu-deps: the bundle's pkg-config, mpicc, mpirun -n 2, h5dump and jq work in an empty environment"
}
