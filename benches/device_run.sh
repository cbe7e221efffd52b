#!/usr/bin/env bash
# One prepared benchmark run on a lent NVIDIA GPU (H100/H200), as recorded in BENCHMARKS.md.
# Built elsewhere and carried: .dev/stylize, .dev/gpu_ops, .dev/network, .dev/kernels (release
# binaries, see benches/device_prepare.sh) and .gl/*.deb (the Vulkan loader, which the image lacks).
# Prints a log; with $OUT set, also writes it to $OUT/log.
set -u
OUT=${OUT:-/tmp/stylize-device-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/log") 2>&1
SIZES=${SIZES:-"128 256 512 1024 2048"}
. benches/device_env.sh
echo "== $(date -u +%FT%TZ)"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.sm --format=csv
.dev/stylize devices || exit 1

iterations() { case $1 in 128|256) echo 50 ;; 512) echo 30 ;; 1024) echo 10 ;; *) echo 4 ;; esac; }

echo "== stylize bench"
for s in $SIZES; do
  extra=""
  case $s in 512|1024) extra=--profile ;; esac
  .dev/stylize bench --size "$s" --iterations "$(iterations "$s")" --warmup 3 $extra --json 2>&1 | tee "$OUT/stylize_$s.txt" | grep -v '^  ' 
done

echo "== PyTorch (cudnn.benchmark on)"
for tf32 in off on; do
  PYTHONUNBUFFERED=1 $PYTHON benches/pytorch_baseline.py --size $SIZES --iterations 20 --warmup 5 \
    --device cuda --tf32 $tf32 --cudnn-benchmark on --json 2>&1 | grep -v Warning
done

echo "== the GPU tests on this card"
for t in gpu_ops network; do
  timeout 300 .dev/$t --test-threads 1 2>&1 | grep -E "^test result|FAILED|panicked|SKIPPED" | head -20
done

echo "== cargo bench (kernels, a few shapes)"
STYLIZE_BENCH_SECS=1 timeout 120 .dev/kernels --bench 'conv3x3/(forward|backward_input)/conv3_2|gram/forward/relu1_1|maxpool/backward/pool1|adam' 2>&1 \
  | grep -E "^[a-z_0-9]+/|time:|thrpt:|adapter|Benchmarking .*: Analyzing" | grep -v Analyzing | head -40
echo "== done $(date -u +%FT%TZ)"
