//! TV-L1 optical flow (`ops::tvl1`): each kernel against its f64 reference on random inputs at
//! odd sizes, outputs poisoned (NaN) first, on the full and on a split (folded) grid; the whole
//! GPU flow against the f64 flow; and the flow's quality on pairs with exact ground truth made
//! from the sample images (endpoint errors and times printed).

mod common;

use std::path::Path;
use std::time::Instant;

use common::*;
use stylize::gpu::Context;
use stylize::image_io::{Image, load_image, resize_exact};
use stylize::ops::tvl1::{self, Axis, Size, Tvl1, Tvl1Config, reference};

/// (width, height): odd sides, one row, one column, one pixel.
const SIZES: [(usize, usize); 5] = [(37, 23), (5, 3), (1, 7), (9, 1), (1, 1)];

fn sizes() -> impl Iterator<Item = Size> {
    SIZES.iter().map(|&(width, height)| Size { width, height })
}

/// Uniform values in [lo, hi) as the GPU gets them (f32), back in f64: both sides see the same.
fn random(rng: &mut Rng, len: usize, lo: f64, hi: f64) -> Vec<f64> {
    to_f64(&to_f32(&rng.vec(len, lo, hi)))
}

/// Runs one kernel and reads `len` values of `out` (which the caller poisoned) back.
fn launch(
    ctx: &Context,
    kernel: Result<stylize::gpu::Kernel, stylize::gpu::GpuError>,
    out: &wgpu::Buffer,
    len: usize,
) -> Vec<f32> {
    run(ctx, &single(kernel));
    read(ctx, out, len)
}

#[test]
fn gpu_luma_matches_reference() {
    let mut rng = Rng::new(1);
    for (grid, ctx) in contexts("gpu_luma_matches_reference") {
        for size in sizes() {
            let rgb = random(&mut rng, 3 * size.len(), 0.0, 1.0);
            let out = poisoned(&ctx, size.len());
            let got = launch(&ctx, tvl1::luma(&ctx, size, &upload(&ctx, &rgb), &out), &out, size.len());
            assert_close(&format!("luma {size:?} {grid}"), &got, &reference::luma(size, &rgb), 1e-6);
        }
    }
}

#[test]
fn gpu_smooth_matches_reference() {
    let mut rng = Rng::new(2);
    for (grid, ctx) in contexts("gpu_smooth_matches_reference") {
        for size in sizes() {
            // 0.8 (the pre-smoothing), 1.04 (zoom 0.5's), 0.1 (no taps beside the centre).
            for (sigma, axis) in [(0.8, Axis::X), (1.0392, Axis::Y), (0.1, Axis::X), (2.5, Axis::Y)] {
                let plane = random(&mut rng, size.len(), 0.0, 255.0);
                let out = poisoned(&ctx, size.len());
                let kernel = tvl1::smooth(&ctx, size, sigma, axis, &upload(&ctx, &plane), &out);
                let got = launch(&ctx, kernel, &out, size.len());
                let want = reference::smooth(size, &plane, sigma, axis);
                assert_close(&format!("smooth {sigma} {axis:?} {size:?} {grid}"), &got, &want, 1e-6);
            }
        }
    }
}

/// (fine, coarse, zoom): the pyramid's steps at zoom 0.5 and one at another zoom.
fn zoom_pairs() -> Vec<(Size, Size, f64)> {
    let s = |width, height| Size { width, height };
    vec![(s(37, 23), s(19, 12), 0.5), (s(5, 3), s(3, 2), 0.5), (s(9, 1), s(5, 1), 0.5), (s(37, 23), s(28, 17), 0.75)]
}

#[test]
fn gpu_downsample_matches_reference() {
    let mut rng = Rng::new(3);
    for (grid, ctx) in contexts("gpu_downsample_matches_reference") {
        for (fine, coarse, zoom) in zoom_pairs() {
            let plane = random(&mut rng, fine.len(), 0.0, 255.0);
            let out = poisoned(&ctx, coarse.len());
            let kernel = tvl1::downsample(&ctx, fine, coarse, zoom, &upload(&ctx, &plane), &out);
            let got = launch(&ctx, kernel, &out, coarse.len());
            let want = reference::downsample(fine, &plane, coarse, zoom);
            assert_close(&format!("downsample {fine:?} -> {coarse:?} {grid}"), &got, &want, 1e-6);
        }
    }
}

#[test]
fn gpu_upsample_matches_reference() {
    let mut rng = Rng::new(4);
    for (grid, ctx) in contexts("gpu_upsample_matches_reference") {
        for (fine, coarse, zoom) in zoom_pairs() {
            let flow = random(&mut rng, 2 * coarse.len(), -4.0, 4.0);
            let out = poisoned(&ctx, 2 * fine.len());
            let kernel = tvl1::upsample(&ctx, coarse, fine, zoom, &upload(&ctx, &flow), &out);
            let got = launch(&ctx, kernel, &out, 2 * fine.len());
            let want = reference::upsample(coarse, &flow, fine, zoom);
            assert_close(&format!("upsample {coarse:?} -> {fine:?} {grid}"), &got, &want, 1e-6);
        }
    }
}

#[test]
fn gpu_warp_matches_reference() {
    let mut rng = Rng::new(5);
    for (grid, ctx) in contexts("gpu_warp_matches_reference") {
        for size in sizes() {
            let first = random(&mut rng, size.len(), 0.0, 255.0);
            let second = random(&mut rng, size.len(), 0.0, 255.0);
            // Up to 4 px: many landings (and their gradient's neighbours) outside, clamped.
            let flow = random(&mut rng, 2 * size.len(), -4.0, 4.0);
            let out = poisoned(&ctx, 3 * size.len());
            let (a, b, f) = (upload(&ctx, &first), upload(&ctx, &second), upload(&ctx, &flow));
            let got = launch(&ctx, tvl1::warp(&ctx, size, &a, &b, &f, &out), &out, 3 * size.len());
            // x + u rounds to f32 on the GPU: a few 1e-6 px on images with slopes of 255 / px.
            let want = reference::warp(size, &first, &second, &flow);
            assert_close(&format!("warp {size:?} {grid}"), &got, &want, 2e-5);
        }
    }
}

/// Warped data with every branch of the thresholding: gradients of any size and some zero.
fn warped_data(rng: &mut Rng, size: Size) -> Vec<f64> {
    let n = size.len();
    let mut warped = random(rng, n, -60.0, 60.0);
    warped.extend(random(rng, 2 * n, -30.0, 30.0));
    for i in 0..n {
        if rng.uniform() < 0.15 {
            warped[n + i] = 0.0;
            warped[2 * n + i] = 0.0;
        }
    }
    warped
}

#[test]
fn gpu_threshold_matches_reference() {
    let mut rng = Rng::new(6);
    let lt = 0.15 * 0.3;
    for (grid, ctx) in contexts("gpu_threshold_matches_reference") {
        for size in sizes() {
            let warped = warped_data(&mut rng, size);
            let flow = random(&mut rng, 2 * size.len(), -3.0, 3.0);
            let out = poisoned(&ctx, 2 * size.len());
            let kernel = tvl1::threshold(&ctx, size, lt, &upload(&ctx, &warped), &upload(&ctx, &flow), &out);
            let got = launch(&ctx, kernel, &out, 2 * size.len());
            let want = reference::threshold(size, &warped, &flow, lt);
            assert_close(&format!("threshold {size:?} {grid}"), &got, &want, 1e-6);
        }
    }
}

#[test]
fn gpu_primal_matches_reference() {
    let mut rng = Rng::new(7);
    for (grid, ctx) in contexts("gpu_primal_matches_reference") {
        for size in sizes() {
            let v = random(&mut rng, 2 * size.len(), -3.0, 3.0);
            let p = random(&mut rng, 4 * size.len(), -1.0, 1.0);
            let out = poisoned(&ctx, 2 * size.len());
            let kernel = tvl1::primal(&ctx, size, 0.3, &upload(&ctx, &v), &upload(&ctx, &p), &out);
            let got = launch(&ctx, kernel, &out, 2 * size.len());
            assert_close(&format!("primal {size:?} {grid}"), &got, &reference::primal(size, &v, &p, 0.3), 1e-6);
        }
    }
}

#[test]
fn gpu_dual_matches_reference() {
    let mut rng = Rng::new(8);
    let taut = 0.25 / 0.3;
    for (grid, ctx) in contexts("gpu_dual_matches_reference") {
        for size in sizes() {
            let flow = random(&mut rng, 2 * size.len(), -3.0, 3.0);
            let p = random(&mut rng, 4 * size.len(), -1.0, 1.0);
            let p_gpu = upload(&ctx, &p);
            let got = launch(&ctx, tvl1::dual(&ctx, size, taut, &upload(&ctx, &flow), &p_gpu), &p_gpu, 4 * size.len());
            assert_close(&format!("dual {size:?} {grid}"), &got, &reference::dual(size, &flow, &p, taut), 1e-6);
        }
    }
}

#[test]
fn gpu_clear_zeroes_its_planes() {
    for (grid, ctx) in contexts("gpu_clear_zeroes_its_planes") {
        for size in sizes() {
            let out = poisoned(&ctx, 4 * size.len());
            let got = launch(&ctx, tvl1::clear(&ctx, size, 4, &out), &out, 4 * size.len());
            assert!(got.iter().all(|&v| v == 0.0), "clear {size:?} {grid}");
        }
    }
}

/// A sample image (the repository's examples/, the same files as /work/shared/images/), resized.
fn sample_image(name: &str, width: u32, height: u32) -> Image {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(name);
    resize_exact(&load_image(&path).unwrap(), width, height)
}

/// The frame `first(p) = second(p + field(p))`, `second` sampled bilinearly (clamped) per
/// channel: so that the flow from `first` to `second` is exactly `field` (up to the clamping
/// where `p + field(p)` leaves the frame).
fn first_from_second(second: &Image, field: &[f64]) -> Vec<f32> {
    let size = Size { width: second.width as usize, height: second.height as usize };
    let n = size.len();
    let mut first = vec![0.0f32; 3 * n];
    for c in 0..3 {
        let plane = to_f64(&second.data[c * n..(c + 1) * n]);
        for i in 0..n {
            let (x, y) = ((i % size.width) as f64, (i / size.width) as f64);
            first[c * n + i] = reference::sample(&plane, size, x + field[i], y + field[n + i]) as f32;
        }
    }
    first
}

/// The field of a similarity about the frame's centre: translation `t`, rotation `degrees`,
/// zoom `scale`: `w(p) = scale R (p - c) + c + t - p`, planar `2 x H x W`.
fn similarity(size: Size, t: (f64, f64), degrees: f64, scale: f64) -> Vec<f64> {
    let n = size.len();
    let (cx, cy) = ((size.width - 1) as f64 / 2.0, (size.height - 1) as f64 / 2.0);
    let (sin, cos) = degrees.to_radians().sin_cos();
    let mut field = vec![0.0; 2 * n];
    for i in 0..n {
        let (x, y) = ((i % size.width) as f64 - cx, (i / size.width) as f64 - cy);
        field[i] = scale * (cos * x - sin * y) + cx + t.0 - (x + cx);
        field[n + i] = scale * (sin * x + cos * y) + cy + t.1 - (y + cy);
    }
    field
}

/// Mean endpoint error over the pixels where `keep(x, y)`.
fn epe(size: Size, flow: &[f32], truth: &[f64], keep: impl Fn(usize, usize) -> bool) -> f64 {
    let n = size.len();
    let (mut sum, mut count) = (0.0, 0usize);
    for i in 0..n {
        if keep(i % size.width, i / size.width) {
            sum += (flow[i] as f64 - truth[i]).hypot(flow[n + i] as f64 - truth[n + i]);
            count += 1;
        }
    }
    sum / count as f64
}

/// Whether (x, y) is at least `margin` px from every border.
fn interior(size: Size, margin: usize) -> impl Fn(usize, usize) -> bool {
    move |x, y| x >= margin && y >= margin && x + margin < size.width && y + margin < size.height
}

/// The GPU flow's EPE over pixels 8 px or more from the border, for `second` and `field`.
fn measured_epe(ctx: &Context, tvl1: &Tvl1, second: &Image, field: &[f64]) -> f64 {
    let first = first_from_second(second, field);
    let flow = tvl1.flow_host(ctx, &first, &second.data).unwrap();
    epe(tvl1.size(), &flow, field, interior(tvl1.size(), 8))
}

#[test]
fn gpu_flow_recovers_known_smooth_fields() {
    let Some(ctx) = gpu_or_skip("gpu_flow_recovers_known_smooth_fields") else { return };
    let size = Size { width: 160, height: 120 };
    let tvl1 = Tvl1::new(&ctx, size.width, size.height, Tvl1Config::default()).unwrap();
    let fields = [
        ("translation (3.3, -1.7), 2 deg, 3 % zoom", similarity(size, (3.3, -1.7), 2.0, 1.03)),
        ("9 px: translation (7.2, -5.4), 1 deg", similarity(size, (7.2, -5.4), 1.0, 1.0)),
    ];
    let mut worst: f64 = 0.0;
    for image in ["astronaut.png", "coffee.png"] {
        let second = sample_image(image, 160, 120);
        for (name, field) in &fields {
            let error = measured_epe(&ctx, &tvl1, &second, field);
            eprintln!("tvl1 EPE {image} {name}: {error:.4} px (pixels >= 8 px from the border, 160x120)");
            worst = worst.max(error);
        }
    }
    assert!(worst <= 0.25, "worst average endpoint error {worst:.4} px > 0.25");
}

/// The two-layer pair: a 48 px square cut from the coffee image over the astronaut, at `x0` in
/// the first frame and 6 px to the right in the second, the background still. Frames
/// `3 x 120 x 160` and the true flow of the first frame: (6, 0) on the square, 0 elsewhere.
struct TwoLayers {
    first: Image,
    second: Image,
    truth: Vec<f64>,
}

const SQUARE_X: usize = 50;
const SQUARE_Y: usize = 36;
const SQUARE_SIDE: usize = 48;
const SQUARE_SHIFT: usize = 6;
const FRAME: Size = Size { width: 160, height: 120 };

fn on_square(x: usize, y: usize) -> bool {
    (SQUARE_X..SQUARE_X + SQUARE_SIDE).contains(&x) && (SQUARE_Y..SQUARE_Y + SQUARE_SIDE).contains(&y)
}

/// 8 px or more from the border and from the square's edges in the first frame (so away from
/// the background the square uncovers and covers, which has no match).
fn far_from_square_edges(x: usize, y: usize) -> bool {
    let near = |lo: usize, v: usize| v + 8 > lo && v < lo + SQUARE_SIDE + 8;
    let ring = near(SQUARE_X, x) && near(SQUARE_Y, y);
    let core = on_square(x.saturating_sub(8), y.saturating_sub(8)) && on_square(x + 8, y + 8);
    interior(FRAME, 8)(x, y) && (!ring || core)
}

fn two_layers() -> TwoLayers {
    let background = sample_image("astronaut.png", 160, 120);
    let texture = sample_image("coffee.png", 160, 120);
    let frame = |left: usize| {
        let mut image = background.clone();
        for y in 0..SQUARE_SIDE {
            for x in 0..SQUARE_SIDE {
                let rgb = texture.pixel((60 + x) as u32, (30 + y) as u32);
                image.set_pixel((left + x) as u32, (SQUARE_Y + y) as u32, rgb);
            }
        }
        image
    };
    // Plane 0 (x) is the shift on the square; plane 1 (y) is 0.
    let moving = |i: usize| i < FRAME.len() && on_square(i % FRAME.width, i / FRAME.width);
    let truth = (0..2 * FRAME.len()).map(|i| if moving(i) { SQUARE_SHIFT as f64 } else { 0.0 }).collect();
    TwoLayers { first: frame(SQUARE_X), second: frame(SQUARE_X + SQUARE_SHIFT), truth }
}

/// The EPEs away from the square's edges: everywhere, on the square, on the background.
fn two_layer_epes(flow: &[f32], truth: &[f64]) -> [f64; 3] {
    [
        epe(FRAME, flow, truth, far_from_square_edges),
        epe(FRAME, flow, truth, |x, y| far_from_square_edges(x, y) && on_square(x, y)),
        epe(FRAME, flow, truth, |x, y| far_from_square_edges(x, y) && !on_square(x, y)),
    ]
}

#[test]
fn gpu_flow_of_a_moving_square_over_a_background() {
    let Some(ctx) = gpu_or_skip("gpu_flow_of_a_moving_square_over_a_background") else { return };
    let pair = two_layers();
    let tvl1 = Tvl1::new(&ctx, FRAME.width, FRAME.height, Tvl1Config::default()).unwrap();
    let flow = tvl1.flow_host(&ctx, &pair.first.data, &pair.second.data).unwrap();
    let [all, square, back] = two_layer_epes(&flow, &pair.truth);
    eprintln!(
        "tvl1 EPE two layers (a 48 px square moving 6 px), >= 8 px from its edges and the border: \
         {all:.4} px (square {square:.4}, background {back:.4})"
    );
    assert!(all.is_finite());
}

#[test]
fn gpu_flow_matches_the_f64_flow() {
    let Some(ctx) = gpu_or_skip("gpu_flow_matches_the_f64_flow") else { return };
    let size = Size { width: 37, height: 23 };
    let config = Tvl1Config { levels: Some(2), warps: 2, iterations: 10, ..Default::default() };
    let second = sample_image("astronaut.png", 37, 23);
    let field = similarity(size, (1.3, -0.8), 3.0, 1.02);
    let first = first_from_second(&second, &field);
    let tvl1 = Tvl1::new(&ctx, size.width, size.height, config).unwrap();
    let flow = tvl1.flow_host(&ctx, &first, &second.data).unwrap();
    let want = reference::flow(size, &to_f64(&first), &to_f64(&second.data), &config);
    // The same dispatches in f32: the rounding of about 100 of them, not a different method.
    assert_close("flow 37x23, 2 levels", &flow, &want, 1e-4);
    // And through the buffer API, into a poisoned output.
    let out = poisoned(&ctx, 2 * size.len());
    let (a, b) = (ctx.upload("first", &first).unwrap(), ctx.upload("second", &second.data).unwrap());
    tvl1.flow(&ctx, &a, &b, &out).unwrap();
    assert_close("flow 37x23 through buffers", &read(&ctx, &out, 2 * size.len()), &want, 1e-4);
}

#[test]
fn gpu_flow_times() {
    let Some(ctx) = gpu_or_skip("gpu_flow_times") else { return };
    for (w, h) in [(160usize, 120usize), (256, 192)] {
        let size = Size { width: w, height: h };
        let started = Instant::now();
        let tvl1 = Tvl1::new(&ctx, w, h, Tvl1Config::default()).unwrap();
        let built = started.elapsed();
        let second = sample_image("astronaut.png", w as u32, h as u32);
        let first = first_from_second(&second, &similarity(size, (3.3, -1.7), 2.0, 1.03));
        tvl1.flow_host(&ctx, &first, &second.data).unwrap();
        let runs = 3;
        let started = Instant::now();
        for _ in 0..runs {
            tvl1.flow_host(&ctx, &first, &second.data).unwrap();
        }
        let per_flow = started.elapsed() / runs;
        eprintln!(
            "tvl1 {w}x{h} on {}: {per_flow:?} per flow ({} dispatches, levels {:?}); built in {built:?}",
            ctx.adapter.name,
            tvl1.dispatches(),
            tvl1.level_sizes().iter().map(|s| (s.width, s.height)).collect::<Vec<_>>()
        );
    }
}

#[test]
fn frames_and_outputs_of_the_wrong_size_are_refused() {
    let Some(ctx) = gpu_or_skip("frames_and_outputs_of_the_wrong_size_are_refused") else { return };
    let tvl1 = Tvl1::new(&ctx, 9, 7, Tvl1Config::default()).unwrap();
    let short = vec![0.0f32; 3 * 63 - 1];
    let frame = vec![0.5f32; 3 * 63];
    assert!(tvl1.flow_host(&ctx, &short, &frame).is_err());
    let small = ctx.buffer("small", 2 * 63 - 1).unwrap();
    let (a, b) = (ctx.upload("a", &frame).unwrap(), ctx.upload("b", &frame).unwrap());
    assert!(tvl1.flow(&ctx, &a, &b, &small).is_err());
    assert!(Tvl1::new(&ctx, 9, 7, Tvl1Config { zoom: 1.5, ..Default::default() }).is_err());
    assert!(Tvl1::new(&ctx, 0, 7, Tvl1Config::default()).is_err());
}

/// How many inner iterations IPOL's stopping test (epsilon 0.01, at most 300) runs per warp on
/// the quality pairs, and the EPE it reaches, in f64: what `Tvl1Config::iterations` was chosen
/// from. Slow (minutes); run with `--ignored`.
#[test]
#[ignore]
fn ipol_stopping_test_iterations() {
    let size = Size { width: 160, height: 120 };
    let config = Tvl1Config { iterations: 300, ..Default::default() };
    for image in ["astronaut.png", "coffee.png"] {
        let second = sample_image(image, 160, 120);
        for field in [similarity(size, (3.3, -1.7), 2.0, 1.03), similarity(size, (7.2, -5.4), 1.0, 1.0)] {
            let first = first_from_second(&second, &field);
            let (flow, counts) =
                reference::flow_until(size, &to_f64(&first), &to_f64(&second.data), &config, Some(0.01));
            let error = epe(size, &to_f32(&flow), &field, interior(size, 8));
            eprintln!("{image}: iterations per warp, coarsest level first {counts:?}; EPE {error:.4}");
        }
    }
}

/// The reliability of the two-layer pair as `stylize video` computes it (TV-L1's two flows, then
/// Ruder et al.'s consistency check): at least 80 % of the truly disoccluded pixels (the
/// background the square uncovers) are unreliable, and at most 10 % of the pixels more than 3 px
/// from the square's edges (in either frame) are.
#[test]
fn gpu_reliability_finds_the_disoccluded_background() {
    use stylize::video::motion::{FlowSolver, reliability};
    let Some(ctx) = gpu_or_skip("gpu_reliability_finds_the_disoccluded_background") else { return };
    let pair = two_layers();
    let solver = FlowSolver::new(&ctx, FRAME.width as u32, FRAME.height as u32).unwrap();
    let (forward, backward) = solver.pair(&ctx, &pair.first, &pair.second).unwrap();
    let c = reliability(&ctx, &forward, &backward).unwrap();
    // In the second frame: the strip the square left is background nothing in the first shows.
    let disoccluded = |x: usize, y: usize| {
        (SQUARE_X..SQUARE_X + SQUARE_SHIFT).contains(&x) && (SQUARE_Y..SQUARE_Y + SQUARE_SIDE).contains(&y)
    };
    let near_edge_of = |left: usize, x: usize, y: usize| {
        let (x, y, left, top) = (x as i64, y as i64, left as i64, SQUARE_Y as i64);
        let side = SQUARE_SIDE as i64;
        let inside = |margin: i64| {
            (left - margin..left + side + margin).contains(&x) && (top - margin..top + side + margin).contains(&y)
        };
        inside(3) && !inside(-3)
    };
    let far = |x: usize, y: usize| !near_edge_of(SQUARE_X, x, y) && !near_edge_of(SQUARE_X + SQUARE_SHIFT, x, y);
    let (mut uncovered, mut caught, mut away, mut flagged) = (0, 0, 0, 0);
    for y in 0..FRAME.height {
        for x in 0..FRAME.width {
            let unreliable = c[y * FRAME.width + x] == 0.0;
            if disoccluded(x, y) {
                uncovered += 1;
                caught += usize::from(unreliable);
            } else if far(x, y) {
                away += 1;
                flagged += usize::from(unreliable);
            }
        }
    }
    let (caught, flagged) = (caught as f64 / uncovered as f64, flagged as f64 / away as f64);
    eprintln!(
        "reliability of the two-layer pair: {:.1} % of the disoccluded pixels unreliable, {:.1} % of those far from the edges",
        100.0 * caught,
        100.0 * flagged
    );
    assert!(caught >= 0.8, "{caught}");
    assert!(flagged <= 0.1, "{flagged}");
}
