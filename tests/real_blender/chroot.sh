#!/usr/bin/env bash
# A Debian sid chroot with the distro's Blender (5.2 LTS), for testing the extension in a real Blender.
#
#   chroot.sh ensure           build the chroot, or bring an existing one up to date (idempotent)
#   chroot.sh run CMD [ARG..]  run CMD inside it: the checkout bound at /src, and $REAL_BLENDER_OUT (when set) at
#                              /out; anything else written inside (pip's cache in /root/.cache) stays in the chroot
#   chroot.sh path             print where the chroot lives
#
# Needs root (debootstrap, mount, chroot). Settings, all optional:
#   DIFFUSION_BENDER_CHROOT  where the chroot lives (default /var/cache/diffusion-bender/sid, outside the repo so
#                            that no tool walking the checkout descends into a whole Debian tree)
#   DEBIAN_MIRROR            the archive debootstrap and apt use (default http://deb.debian.org/debian)
# python3-numpy is deliberately not installed: the extension must register in a Blender without numpy.
set -euo pipefail

ROOT=${DIFFUSION_BENDER_CHROOT:-/var/cache/diffusion-bender/sid}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PACKAGES="blender xvfb xauth ffmpeg imagemagick x11-utils xdotool python3-pip ca-certificates"
# Bumped when the steps below change, so an older chroot is brought up to date rather than trusted.
RECIPE_VERSION=1
READY="$ROOT/.diffusion-bender-ready"
CHROOT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

die() { echo "chroot.sh: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, mount and chroot); run it as root or with sudo"

MOUNTED=()
unmount_all() {
    local i
    for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
        umount "${MOUNTED[$i]}" 2>/dev/null || umount -l "${MOUNTED[$i]}" 2>/dev/null || true
    done
    MOUNTED=()
}

# Several runs may share the chroot at once (a harness run beside a look at Blender's RNA): each holds a shared
# lock while it runs, and only the last one out unmounts, holding the lock exclusively so none starts meanwhile.
LOCK="$ROOT.lock"
mkdir -p "$(dirname "$ROOT")"
exec 9>>"$LOCK"
leave() {
    flock -u 9
    if flock -xn 9; then
        for m in out src dev/shm dev/pts dev sys proc; do
            if mountpoint -q "$ROOT/$m" 2>/dev/null; then
                umount "$ROOT/$m" 2>/dev/null || umount -l "$ROOT/$m" 2>/dev/null || true
            fi
        done
    fi
    MOUNTED=()
}
trap leave EXIT
trap 'exit 130' INT TERM

# A mount left by a killed earlier run is reused rather than stacked.
mount_once() {  # mount_once TARGET MOUNT-ARGS...
    local target=$1
    shift
    mkdir -p "$target"
    if mountpoint -q "$target"; then
        return 0
    fi
    mount "$@" "$target"
    MOUNTED+=("$target")
}

mount_system() {
    mount_once "$ROOT/proc" -t proc proc
    mount_once "$ROOT/sys" -t sysfs sysfs
    mount_once "$ROOT/dev" --bind /dev
    mount_once "$ROOT/dev/pts" --bind /dev/pts
    mount_once "$ROOT/dev/shm" -t tmpfs tmpfs
    cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
}

in_root() {  # in_root CMD...: a clean environment, so nothing of the host's leaks in
    chroot "$ROOT" /usr/bin/env -i HOME=/root PATH="$CHROOT_PATH" LANG=C.UTF-8 TERM=dumb \
        DEBIAN_FRONTEND=noninteractive "$@"
}

ensure() {
    flock -x 9
    local want="recipe=$RECIPE_VERSION packages=$PACKAGES mirror=$MIRROR"
    if [ -f "$READY" ] && [ "$(cat "$READY")" = "$want" ]; then
        echo "chroot.sh: reusing $ROOT"
        flock -s 9
        return 0
    fi
    command -v debootstrap >/dev/null || apt-get install -y debootstrap || die "install debootstrap first"
    if [ ! -x "$ROOT/usr/bin/apt-get" ] || [ -d "$ROOT/debootstrap" ]; then
        # No chroot, or debootstrap was interrupted (it leaves its work folder behind): start clean.
        unmount_all
        for m in dev/shm dev/pts dev sys proc src out; do
            if mountpoint -q "$ROOT/$m" 2>/dev/null; then umount -l "$ROOT/$m"; fi
        done
        rm -rf --one-file-system "$ROOT"
        mkdir -p "$ROOT"
        echo "chroot.sh: debootstrap sid into $ROOT (a few minutes)"
        debootstrap --variant=minbase sid "$ROOT" "$MIRROR"
    fi
    # A snapshot archive's Release file may be past its Valid-Until date.
    echo 'Acquire::Check-Valid-Until "false";' >"$ROOT/etc/apt/apt.conf.d/99no-valid-until"
    echo 'APT::Install-Recommends "false";' >"$ROOT/etc/apt/apt.conf.d/99no-recommends"
    echo "deb $MIRROR sid main" >"$ROOT/etc/apt/sources.list"
    # pip inside needs the CAs this machine trusts beyond Debian's (an egress proxy's, for instance).
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
        mkdir -p "$ROOT/usr/local/share/ca-certificates"
        cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/"
    fi
    mount_system
    in_root apt-get update
    # shellcheck disable=SC2086  # PACKAGES is a word list on purpose
    in_root apt-get install -y --no-install-recommends $PACKAGES
    in_root update-ca-certificates
    if in_root dpkg -s python3-numpy >/dev/null 2>&1; then
        die "python3-numpy is installed in $ROOT; remove it (apt-get purge python3-numpy) so the no-numpy check means something"
    fi
    local version
    version=$(in_root blender --version 2>/dev/null | grep -m1 '^Blender' || true)
    unmount_all
    echo "$want" >"$READY"
    echo "chroot.sh: ready at $ROOT (${version:-blender --version printed nothing})"
    flock -s 9
}

run() {
    [ -f "$READY" ] || die "no chroot at $ROOT yet; run '$0 ensure' first"
    flock -s 9
    mount_system
    mount_once "$ROOT/src" --bind "$SRC"
    if [ -n "${REAL_BLENDER_OUT:-}" ]; then
        mkdir -p "$REAL_BLENDER_OUT"
        mount_once "$ROOT/out" --bind "$REAL_BLENDER_OUT"
    fi
    in_root "$@"
}

main() {
    case "${1:-}" in
        ensure) ensure ;;
        run)
            shift
            [ $# -gt 0 ] || die "usage: $0 run CMD [ARG...]"
            run "$@"
            ;;
        path) echo "$ROOT" ;;
        *) die "usage: $0 ensure | run CMD [ARG...] | path" ;;
    esac
}

# One line: bash has read the whole script before anything runs, so editing it meanwhile is safe.
main "$@"; exit $?
