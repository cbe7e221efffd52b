#!/usr/bin/env bash
# Snapshot of the command line's observable behaviour: for each case, stdout, stderr and the exit
# code go to one file in OUT_DIR. Run it with the binary before and after a refactor, then
# `diff -r` the two directories: a structural change to the CLI must leave them byte-identical.
# Timings in a run's final line are masked (they are the only nondeterministic bytes).
#   scripts/cli_snapshot.sh path/to/stylize OUT_DIR
set -u
BIN=$(realpath "$1")
OUT=$2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=/tmp/stylize_cli_snapshot_work   # fixed, so that paths in messages match between runs
rm -rf "$WORK" "$OUT" && mkdir -p "$WORK" "$OUT"
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp} NO_COLOR=1 TERM=dumb
cd "$WORK"
cp "$ROOT/tests/fixtures/vgg19_tiny_legacy.pth" tiny.pth
printf 'not an image at all\x00\x01\x02' > garbage.png
printf 'nonsense' > garbage.pth
python3 - <<'PY' 2>/dev/null || cp "$ROOT/assets/"*.png . 2>/dev/null
import struct, zlib
def png(path, w, h, seed):
    rows = b''.join(b'\x00' + bytes(((x * 37 + y * 91 + seed * 13) % 256) for x in range(w * 3)) for y in range(h))
    def chunk(t, d):
        return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
    open(path, 'wb').write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0))
                           + chunk(b'IDAT', zlib.compress(rows)) + chunk(b'IEND', b''))
png('content.png', 24, 20, 1)
png('style.png', 17, 13, 2)
PY

case_() {  # name, then the arguments
    local name=$1; shift
    { "$BIN" "$@" >"$OUT/$name.stdout" 2>"$OUT/$name.stderr"; echo "rc=$?" >"$OUT/$name.rc"; } </dev/null
    sed -i -E -e 's/in [0-9]+\.[0-9] s \([0-9]+\.[0-9] steps\/s\)/in T s (R steps\/s)/' -e 's/[0-9.]+ s per step, about .* for the whole run/S s per step, about E for the whole run/' "$OUT/$name.stderr"
}

case_ help --help
case_ help_short -h
case_ version --version
case_ no_args
for sub in devices bench recolor weights plan help; do case_ "help_$sub" "$sub" --help; case_ "h_$sub" "$sub" -h; done
case_ help_weights_fetch weights fetch --help
case_ help_help help
case_ devices devices
case_ devices_gl devices --backend gl
case_ plan_256 plan --size 256
case_ plan_4096 plan --size 4096
case_ plan_8192_tile plan --size 8192 --tile 512 --memory-budget 2
case_ plan_json plan --size 1024 --json
case_ plan_bad_tile plan --size 256 --tile 17
case_ plan_small plan --size 8
case_ err_missing_content --content missing.png --style style.png --weights tiny.pth
case_ err_missing_style --content content.png --style missing.png --weights tiny.pth
case_ err_precision --content content.png --style style.png --precision f8
case_ err_unknown_option --content content.png --style style.png --frobnicate
case_ err_no_style --content content.png
case_ err_garbage_image --content garbage.png --style style.png --weights tiny.pth --iterations 1
case_ err_garbage_weights --content content.png --style style.png --weights garbage.pth --iterations 1
case_ err_bad_output --content content.png --style style.png --weights tiny.pth -o out.xyz
case_ err_layer --content content.png --style style.png --weights tiny.pth --content-layers relu9_9
case_ err_weights_len --content content.png --style style.png --weights tiny.pth --style-layer-weights 1,2
case_ err_mask_order --content content.png --mask content.png --style style.png --weights tiny.pth
case_ err_negative --content content.png --style style.png --style-weight -1
case_ err_tile --content content.png --style style.png --tile 13
case_ err_depth --content content.png --style style.png --output-depth 12
case_ err_recolor_missing recolor --content missing.png --style style.png -o r.png
case_ recolor recolor --content content.png --style style.png -o recolor.png
case_ run_tiny --content content.png --style style.png --weights tiny.pth --iterations 3 -o run.png \
    --loss-log losses.csv --print-every 1
case_ run_tiny_tiled --content content.png --style style.png --weights tiny.pth --iterations 2 -o run_tiled.png \
    --tile 16 --tv-weight 0.1 --optimizer lbfgs
case_ bench_tiny bench --size 16 --iterations 1 --warmup 0 --weights random:1
sed -i -E 's/[0-9]+\.[0-9]+/N/g' "$OUT/bench_tiny.stdout"
for f in recolor.png run.png losses.csv run_tiled.png; do
    [ -f "$f" ] && sha256sum "$f" >>"$OUT/files.sha256" || echo "$f missing" >>"$OUT/files.sha256"
done
echo "snapshot of $BIN in $OUT: $(ls "$OUT" | wc -l) files"
