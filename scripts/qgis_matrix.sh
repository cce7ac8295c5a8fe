#!/bin/sh
# The plugin tests on several QGIS versions: 3.22 from this machine's apt (Debian 12), 3.40 LTR
# from a Debian 13 chroot and 3.44 from a Debian unstable chroot, both built once with
# mmdebstrap and cached under .qgis-chroots/ (gitignored).
#
# usage: sh scripts/qgis_matrix.sh [--build-only] [VERSION ...]   (default: 3.22 3.40 3.44)
#
# Inside a chroot the checkout is bind-mounted at the same path, and so are the base Python of
# .venv (its interpreter lives outside the venv), so the backend the tests start runs the
# venv's Python exactly as on the host, and the sample data beside the checkout (../shared).
# Needs root (mmdebstrap, mount, chroot).
set -eu

REPO=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${QGIS_CHROOTS:-$REPO/.qgis-chroots}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# python3-venv: the set-up dialog makes the backend's environment with QGIS's Python.
PACKAGES=python3-qgis,qgis-providers,qgis,python3-pytest,python3-gdal,python3-numpy,python3-venv
PYTEST_ARGS=${PYTEST_ARGS:--q}

suite_of() {
    case "$1" in
        3.22) echo host ;;
        3.40) echo trixie ;;
        3.44) echo sid ;;
        *) echo "error: unknown QGIS version '$1' (use 3.22, 3.40 or 3.44)" >&2; exit 2 ;;
    esac
}

need_root() {
    if [ "$(id -u)" != "0" ]; then
        echo "error: building and entering the QGIS chroots needs root (mmdebstrap, mount)" >&2
        exit 2
    fi
}

# Build $CACHE/<suite> once: into a temporary folder first, so an interrupted build leaves
# nothing that looks finished.
build() {
    suite=$1
    dir=$CACHE/$suite
    if [ -f "$dir/.built" ]; then
        # A chroot built with an older package list gets the packages added since.
        if [ "$(cat "$dir/.packages" 2>/dev/null)" != "$PACKAGES" ]; then
            need_root
            echo "qgis-matrix: adding packages to the $suite chroot"
            cp /etc/resolv.conf "$dir/etc/resolv.conf"
            unshare --mount --propagation private sh -eu -c '
                mount --rbind /proc "$1/proc"; mount --rbind /dev "$1/dev"
                chroot "$1" /usr/bin/env DEBIAN_FRONTEND=noninteractive \
                    PATH=/usr/sbin:/usr/bin:/sbin:/bin sh -euc "
                    apt-get -q -o Acquire::Check-Valid-Until=false update
                    apt-get install -y -q $2"
            ' sh "$dir" "$(echo "$PACKAGES" | tr , ' ')"
            echo "$PACKAGES" > "$dir/.packages"
        fi
        return 0
    fi
    need_root
    command -v mmdebstrap >/dev/null 2>&1 || apt-get install -y -q mmdebstrap
    mkdir -p "$CACHE"
    rm -rf "$dir.tmp"
    start=$(date +%s)
    echo "qgis-matrix: building the $suite chroot (once; several minutes)"
    # Unstable's Release file is valid for a week only: a machine whose clock runs ahead of
    # the mirror would refuse it.
    mmdebstrap --variant=apt --include="$PACKAGES" \
        --aptopt='Acquire::Check-Valid-Until "false"' "$suite" "$dir.tmp" "$MIRROR"
    rm -rf "$dir"
    mv "$dir.tmp" "$dir"
    echo "$PACKAGES" > "$dir/.packages"
    echo "$(( $(date +%s) - start ))" > "$dir/.built"
    echo "qgis-matrix: $suite chroot built in $(cat "$dir/.built") s"
}

# Run the plugin tests inside $CACHE/<suite>, in a private mount namespace (the bind mounts
# vanish with it).
run_chroot() {
    suite=$1
    dir=$CACHE/$suite
    need_root
    base=$("$REPO/.venv/bin/python" -c 'import sys; print(sys.base_prefix)')
    shared=$(dirname "$REPO")/shared
    [ -d "$shared" ] || shared=""
    unshare --mount --propagation private sh -eu -c '
        dir=$1; repo=$2; base=$3; args=$4; shared=$5
        mount --rbind /proc "$dir/proc"
        mount --rbind /dev "$dir/dev"
        mount --rbind /sys "$dir/sys"
        mount -t tmpfs tmpfs "$dir/tmp"
        for p in "$repo" "$base" $shared; do
            mkdir -p "$dir$p"
            mount --bind "$p" "$dir$p"
        done
        cp /etc/resolv.conf "$dir/etc/resolv.conf" 2>/dev/null || true
        exec chroot "$dir" /usr/bin/env -C "$repo" QT_QPA_PLATFORM=offscreen \
            HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin \
            /usr/bin/python3 -m pytest -p no:cacheprovider tests/plugin $args
    ' sh "$dir" "$REPO" "$base" "$PYTEST_ARGS" "$shared"
}

run_host() {
    sh "$REPO/scripts/install_qgis_deps.sh"
    # shellcheck disable=SC2086
    (cd "$REPO" && QT_QPA_PLATFORM=offscreen /usr/bin/python3 -m pytest -p no:cacheprovider \
        tests/plugin $PYTEST_ARGS)
}

build_only=0
if [ "${1:-}" = "--build-only" ]; then
    build_only=1
    shift
fi
[ $# -gt 0 ] || set -- 3.22 3.40 3.44

failed=""
for version in "$@"; do
    suite=$(suite_of "$version")
    if [ "$suite" = host ]; then
        [ $build_only = 1 ] && continue
        echo "qgis-matrix: QGIS $version (this machine)"
        run_host || failed="$failed $version"
        continue
    fi
    build "$suite"
    [ $build_only = 1 ] && continue
    echo "qgis-matrix: QGIS $version ($suite chroot)"
    run_chroot "$suite" || failed="$failed $version"
done

if [ -n "$failed" ]; then
    echo "qgis-matrix: plugin tests failed on QGIS$failed" >&2
    exit 1
fi
[ $build_only = 1 ] || echo "qgis-matrix: plugin tests passed on QGIS $*"
