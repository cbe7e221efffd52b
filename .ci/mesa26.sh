#!/usr/bin/env bash
# Builds (once per machine) a minimal Debian trixie root holding Mesa 26's lavapipe from
# trixie-backports, the CPU Vulkan driver that runs cooperative matrices (VK_KHR_cooperative_matrix,
# 8x8x8 f16 on AVX2 CPUs), and prints the root's path. bookworm's glibc is too old for those
# packages, so they live in a root of their own; binaries linked by .ci/run run against it without
# a chroot (their loader and libraries are the root's, see .ci/run).
#
# The root is kept between runs at $STYLIZE_MESA26_ROOT (default /var/cache/stylize/mesa26-root);
# a stamp records the Mesa version it holds, so a later run only checks it. A root that is
# incomplete (an interrupted build) has no stamp and is built again from scratch.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

root="${STYLIZE_MESA26_ROOT:-/var/cache/stylize/mesa26-root}"
stamp="$root/.stylize-mesa26"
mirror="${STYLIZE_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

log() { echo "mesa26: $*" >&2; }

if [ -f "$stamp" ] && [ -f "$root/usr/share/vulkan/icd.d/lvp_icd.json" ]; then
    log "mesa-vulkan-drivers $(cat "$stamp") in $root (cached)"
    echo "$root"
    exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
    apt-get update -qq >&2 || true
    apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

rm -rf "$root"
mkdir -p "$(dirname "$root")"
partial="$root.partial"
rm -rf "$partial"
log "debootstrap trixie into $partial"
debootstrap --variant=minbase trixie "$partial" "$mirror" >/tmp/stylize-mesa26-debootstrap.log 2>&1 || {
    tail -n 20 /tmp/stylize-mesa26-debootstrap.log >&2
    log "debootstrap failed"
    exit 1
}
echo "deb $mirror trixie-backports main" >"$partial/etc/apt/sources.list.d/backports.list"
# apt inside the root needs a resolver and /dev/null; the root's own files are enough otherwise.
cp /etc/resolv.conf "$partial/etc/resolv.conf" 2>/dev/null || true
chroot "$partial" apt-get update -qq >&2
chroot "$partial" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    -t trixie-backports mesa-vulkan-drivers libvulkan1 >/dev/null
version="$(chroot "$partial" dpkg-query -W -f='${Version}' mesa-vulkan-drivers)"
case "$version" in
    26.* | 2[7-9].* | [3-9]?.*) ;;
    *) log "trixie-backports gave mesa-vulkan-drivers $version, not 26 or later"; exit 1 ;;
esac
chroot "$partial" apt-get clean
echo "$version" >"$partial/.stylize-mesa26"
mv "$partial" "$root"
log "mesa-vulkan-drivers $version in $root"
echo "$root"
