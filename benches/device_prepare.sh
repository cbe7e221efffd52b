#!/usr/bin/env bash
# Builds the release binaries that benches/device_run.sh runs on a device machine and copies them,
# stripped, into .dev/ (ignored by git); fetches the Vulkan loader's .deb files into .gl/.
set -eu
cd "$(dirname "$0")/.."
mkdir -p .dev
exe() { cargo "$@" --message-format=json 2>/dev/null | python3 -c '
import sys, json
names = sys.argv[1:]
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] in names:
        print(m["target"]["name"], m["executable"])' gpu_ops network mixed mixed_network kernels stylize; }
cargo build --release --bin stylize
{ exe build --release --bin stylize; exe test --release --no-run --test gpu_ops --test network --test mixed --test mixed_network; exe bench --no-run --bench kernels; } |
  while read -r name path; do cp "$path" ".dev/$name"; strip ".dev/$name"; done
ls -la .dev
if [ ! -d .gl ] || [ -z "$(ls .gl/*.deb 2>/dev/null)" ]; then
  mkdir -p .gl /tmp/amd64/partial
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  apt-get $o update >/dev/null
  (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
fi
