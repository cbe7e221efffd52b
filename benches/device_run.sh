#!/usr/bin/env bash
# One prepared benchmark run on a lent NVIDIA GPU (H100/H200), as recorded in BENCHMARKS.md:
# stylize bench at each size in f32 and mixed precision (with each kernel's time), Winograd against the
# default convolution, the PyTorch baseline with TF32 off
# and on, the GPU test suites on this card, and `cargo bench`. Carried: .dev/{stylize,gpu_ops,
# network,mixed,mixed_network,kernels} (benches/device_prepare.sh) and .gl/*.deb (the Vulkan loader).
# Writes $OUT/log, $OUT/stylize_bench.txt and $OUT/cargo_bench.txt.
set -u
. benches/device_env.sh
SIZES=${SIZES:-"128 256 512 1024 2048"}
echo "== $(date -u +%FT%TZ)"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.sm --format=csv
.dev/stylize devices || exit 1

# The card's memory in use (MiB), sampled every 50 ms while "$@" runs: the peak over the idle
# baseline is what the process held, driver context and allocator slack included.
with_memory_peak() {
  local idle samples pid
  idle=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1)
  samples=$(mktemp)
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 50 > "$samples" &
  pid=$!
  "$@"
  kill $pid; wait $pid 2>/dev/null
  echo "device memory in use: peak $(sort -n "$samples" | tail -1) MiB, idle $idle MiB"
}
iterations() { case $1 in 128|256) echo 50 ;; 512) echo 30 ;; 1024) echo 10 ;; *) echo 4 ;; esac; }

echo "== stylize bench (PRECISIONS: f32, then mixed on the matrix units)"
for p in ${PRECISIONS:-f32 mixed}; do
for s in $SIZES; do
  echo "### size $s precision $p" >> "$OUT/stylize_bench.txt"
  with_memory_peak .dev/stylize bench --size "$s" --iterations "$(iterations "$s")" --warmup 3 --profile --json \
    --precision "$p" 2>&1 | tee -a "$OUT/stylize_bench.txt" | grep -Ev '^  |^(kernel times|convolutions)'
done
done

echo "== Winograd F(2x2, 3x3) against the default rule (STYLIZE_CONV=tiled, ConvAlgorithm::choose), f32, 10 steps"
# The one measurement that keeps conv3x3_winograd: no rule picks it yet; a transform-based 3x3 is
# the planned route past cuDNN (BENCHMARKS.md). Under a minute: 15 s at most a run.
for s in ${WINOGRAD_SIZES:-256 512}; do
  for v in tiled winograd; do
    echo "### size $s conv $v" >> "$OUT/stylize_bench.txt"
    STYLIZE_CONV=$v timeout 15 .dev/stylize bench --size "$s" --iterations 10 --warmup 2 --profile --json --precision f32 \
      2>&1 | tee -a "$OUT/stylize_bench.txt" | grep -E '^ms/step' | sed "s/^/$s $v: /"
  done
done

echo "== tiled steps (TILED: size:tile pairs; each beside the untiled step of the same size where it fits)"
for pair in ${TILED:-2048:1024 2048:off 4096:2048}; do
  s=${pair%%:*}; t=${pair##*:}
  echo "### size $s tile $t" >> "$OUT/stylize_bench.txt"
  with_memory_peak .dev/stylize bench --size "$s" --iterations 3 --warmup 1 --json --precision f32 --tile "$t" \
    --memory-budget 120 2>&1 | tee -a "$OUT/stylize_bench.txt" | grep -E '^(tiled|ms/step|GPU memory|\{)|device memory'
done

echo "== one real step past one binding (BIG: sizes, default 8192; 16384 takes ~1 min a step): tiled, image state in bands"
for s in ${BIG:-8192}; do
  echo "### size $s tile auto" >> "$OUT/stylize_bench.txt"
  with_memory_peak timeout 400 .dev/stylize bench --size "$s" --iterations 1 --warmup 0 --json --precision f32 \
    --tile auto --memory-budget 120 2>&1 | tee -a "$OUT/stylize_bench.txt" | grep -E '^(tiled|ms/step|GPU memory|\{)|device memory'
done

echo "== PyTorch (cudnn.benchmark on): TF32 off, one process per size; TF32 on, one process"
for s in $SIZES; do
  with_memory_peak env PYTHONUNBUFFERED=1 $PYTHON benches/pytorch_baseline.py --size "$s" --iterations 20 \
    --warmup 5 --device cuda --tf32 off --cudnn-benchmark on --json 2>&1 | grep -v Warning
done
PYTHONUNBUFFERED=1 $PYTHON benches/pytorch_baseline.py --size $SIZES --iterations 20 --warmup 5 --device cuda \
  --tf32 on --cudnn-benchmark on --json 2>&1 | grep -v Warning

echo "== the GPU tests on this card"
for t in gpu_ops network mixed mixed_network; do
  STYLIZE_REQUIRE_MATRIX_UNITS=1 timeout 300 .dev/$t --test-threads 1 2>&1 | grep -E "^test result|FAILED|panicked|SKIPPED" | head -20
done

echo "== cargo bench (kernels at VGG-19's 512 x 512 shapes, training steps at 256 and 512)"
STYLIZE_BENCH_SECS=1 timeout 240 .dev/kernels --bench > "$OUT/cargo_bench.txt" 2>&1
grep -E "^stylize benches|^[a-z_0-9]+/|time:|thrpt:" "$OUT/cargo_bench.txt" | head -120
echo "== done $(date -u +%FT%TZ)"
