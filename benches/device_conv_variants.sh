#!/usr/bin/env bash
# Every tiling of the convolution (STYLIZE_CONV, in f32; winograd too) on a lent GPU, per layer: `stylize bench
# --profile` at each size with each forced tiling (split-K applies to each), to choose the rule
# of ConvAlgorithm::choose (`tiled` is ConvAlgorithm::Auto: that rule itself). Writes $OUT/log
# and $OUT/conv_variants.txt.
# Carried: .dev/stylize (benches/device_prepare.sh) and .gl/*.deb. Logs under $OUT.
set -u
. benches/device_env.sh
SIZES=${SIZES:-"128 256 512 1024"}
VARIANTS=${VARIANTS:-"tiled tiled64 wide square"}
echo "== $(date -u +%FT%TZ)"
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
for s in $SIZES; do
  for v in $VARIANTS; do
    iterations=${ITERATIONS:-$(( 20 * 512 * 512 / (s * s) + 5 ))}
    STYLIZE_CONV=$v .dev/stylize bench --size "$s" --iterations $iterations --warmup 3 --profile --json --precision f32 \
      > "$OUT/one.txt" 2>&1
    echo "### $s $v" >> "$OUT/conv_variants.txt"
    cat "$OUT/one.txt" >> "$OUT/conv_variants.txt"
    echo "$s $v $(grep -E '^ms/step' "$OUT/one.txt")"
  done
done
rm -f "$OUT/one.txt"
echo "== done $(date -u +%FT%TZ)"
