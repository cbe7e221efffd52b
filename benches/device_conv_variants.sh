#!/usr/bin/env bash
# Every tiling of the convolution (STYLIZE_CONV) on a lent GPU, per layer: `stylize bench
# --profile` at each size with each forced tiling, to choose the rule of ConvAlgorithm::choose.
# Carried: .dev/stylize (benches/device_prepare.sh) and .gl/*.deb. Logs under $OUT.
set -u
OUT=${OUT:-/tmp/stylize-device-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/log") 2>&1
. benches/device_env.sh
SIZES=${SIZES:-"256 512 1024"}
VARIANTS=${VARIANTS:-"tiled tiled64 wide square"}
echo "== $(date -u +%FT%TZ)"
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
for s in $SIZES; do
  for v in $VARIANTS; do
    iterations=${ITERATIONS:-$(( 20 * 512 * 512 / (s * s) + 5 ))}
    STYLIZE_CONV=$v .dev/stylize bench --size "$s" --iterations $iterations --warmup 3 --profile --json \
      > "$OUT/conv_${v}_$s.txt" 2>&1
    echo "$s $v $(grep -E '^ms/step' "$OUT/conv_${v}_$s.txt")"
  done
done
echo "== done $(date -u +%FT%TZ)"
