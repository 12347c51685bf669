#!/usr/bin/env bash
# System packages the tests need, from Debian's archive (idempotent; needs root):
#  - chromium: browser tests (Playwright drives /usr/bin/chromium)
#  - ffmpeg: MP4 (H.264) videos in dq compare (without it, only animated WebP is written)
#  - mesa-vulkan-drivers from bookworm-backports: lavapipe, a software Vulkan driver new enough for
#    onnxruntime's WebGPU provider (Debian 12's own Mesa 22.3 is not), so the WebGPU path runs without a GPU.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
lavapipe_ok() { have mesa-vulkan-drivers && dpkg --compare-versions "$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers)" ge 25; }

if have chromium && have ffmpeg && lavapipe_ok; then
  echo "system deps: already installed"
  exit 0
fi

# Add bookworm-backports from the same mirror the machine already uses (no host is hard-coded here).
if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  uri=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -n1 | awk '{print $2}')
  [ -n "$uri" ] || uri=$(grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | grep -v security | head -n1 | awk '{print $2}')
  [ -n "$uri" ] || { echo "cannot find the Debian mirror in apt's sources" >&2; exit 1; }
  printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$uri" \
    > /etc/apt/sources.list.d/backports.sources
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core ffmpeg >/dev/null
apt-get install -y -qq --no-install-recommends -t bookworm-backports mesa-vulkan-drivers libvulkan1 >/dev/null
echo "system deps: chromium $(dpkg-query -W -f='${Version}' chromium), ffmpeg $(dpkg-query -W -f='${Version}' ffmpeg), mesa-vulkan-drivers $(dpkg-query -W -f='${Version}' mesa-vulkan-drivers)"
