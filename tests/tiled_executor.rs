//! The tiled executor on the GPU equals the untiled one: losses, image gradient and a few Adam
//! steps, on images several tiles wide and tall (sizes that are multiples of nothing), with a
//! reduced-channel VGG-19 of full depth (so the halo is the real one, 160 px); and a halo one
//! grid step too small is measurably wrong, so these comparisons can fail.

mod common;

use common::*;
use stylize::gpu::Context;
use stylize::net::vgg::VGG19;
use stylize::net::{LossLayers, Losses, Network, Plan, Pooling, TiledExecutor, random_weights, tiling};
use stylize::optim::adam::{Adam, AdamConfig};

/// Relative error within which tiled and untiled must agree (f32 sums in another order).
const TOLERANCE: f64 = 1e-5;

const WIDTHS: [usize; 13] = [4, 4, 5, 5, 6, 6, 6, 6, 6, 6, 6, 6, 6];

struct Case {
    plan: Plan,
    weights: Vec<stylize::ConvLayerWeights>,
    content: Vec<f32>,
    style: Vec<f32>,
    init: Vec<f32>,
}

fn case(height: usize, width: usize, losses: LossLayers, seed: u64) -> Case {
    let weights = random_weights(&WIDTHS, seed);
    let widths: Vec<(usize, usize)> = weights.iter().map(|w| (w.in_channels, w.out_channels)).collect();
    let plan = Plan::new(&VGG19, &widths, height, width, &losses).unwrap();
    let mut rng = Rng::new(seed + 1);
    let n = 3 * height * width;
    let content: Vec<f32> = (0..n).map(|_| rng.range(0.0, 1.0) as f32).collect();
    // A style of other statistics than the content: Grams far apart, so that a style term
    // (a sum of (G - A)^2) does not magnify the Grams' own rounding by cancelling.
    let style: Vec<f32> = (0..n).map(|_| rng.range(0.3, 0.7) as f32).collect();
    let init: Vec<f32> = content.iter().map(|&c| (c + 0.2 * rng.range(-1.0, 1.0) as f32).clamp(0.0, 1.0)).collect();
    Case { plan, weights, content, style, init }
}

/// Losses and image gradient of one training step from `case.init`, then the losses of
/// `adam_steps` Adam steps and the image after them.
struct Run {
    losses: Losses,
    grad: Vec<f32>,
    trajectory: Vec<f64>,
    image: Vec<f32>,
}

/// Adam's epsilon for the steps here: a tenth of the first gradient's RMS. With the default (1e-8)
/// the first step moves every pixel by +-lr whatever its gradient's size, so a gradient within
/// rounding of 0 flips a pixel's move by 2 lr in any two runs that round differently (tiled or not).
fn smooth_eps(grad: &[f32]) -> f64 {
    (grad.iter().map(|&g| (g as f64).powi(2)).sum::<f64>() / grad.len() as f64).sqrt() / 10.0
}

fn run_network(ctx: &Context, mut network: Network, case: &Case, adam_steps: usize) -> Run {
    network.set_content(ctx, &case.content).unwrap();
    network.set_style(ctx, &case.style).unwrap();
    network.set_image(ctx, &case.init).unwrap();
    network.training_step().run(ctx).unwrap();
    let losses = network.read_losses(ctx).unwrap();
    let grad = network.read_image_grad(ctx).unwrap();
    network.set_image(ctx, &case.init).unwrap();
    let (image, grad_bands) = (network.image_bands(), network.image_grad_bands());
    let config = AdamConfig { eps: smooth_eps(&grad), ..AdamConfig::new(0.05) };
    let (mut adam, kernels) = Adam::banded(ctx, &image, &grad_bands, config).unwrap();
    let kernels: Vec<usize> = kernels.into_iter().map(|k| network.training_step().push(k)).collect();
    let mut trajectory = Vec::new();
    for _ in 0..adam_steps {
        let step = network.training_step();
        adam.advance_bands(ctx, &kernels.iter().map(|&k| step.kernel(k)).collect::<Vec<_>>());
        network.training_step().run(ctx).unwrap();
        trajectory.push(network.read_losses(ctx).unwrap().total);
    }
    Run { losses, grad, trajectory, image: network.read_normalized_image(ctx).unwrap() }
}

fn untiled(ctx: &Context, case: &Case, adam_steps: usize) -> Run {
    run_network(ctx, Network::new(ctx, case.plan.clone(), &case.weights, None).unwrap(), case, adam_steps)
}

fn tiled(ctx: &Context, case: &Case, side: usize, halo: usize, adam_steps: usize) -> Run {
    let executor = TiledExecutor::with_halo(ctx, case.plan.clone(), &case.weights, side, halo).unwrap();
    run_network(ctx, Network::Tiled(executor), case, adam_steps)
}

/// As `tiled`, with the whole image's arrays in bands of at most `band_bytes` (a few rows, which
/// do not line up with the tiles): the image, its gradient, the RGB image, the content features,
/// the masks' column weights and Adam's moments. Returns the run and the image's band count.
fn tiled_in_bands(case: &Case, side: usize, band_bytes: u64, adam_steps: usize) -> Option<(Run, usize)> {
    let mut ctx = gpu_or_skip("tiled_in_bands")?;
    ctx.set_band_limit(band_bytes);
    let executor = TiledExecutor::new(&ctx, case.plan.clone(), &case.weights, side).unwrap();
    let bands = executor.image_bands().bands().len();
    Some((run_network(&ctx, Network::Tiled(executor), case, adam_steps), bands))
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(f64::MIN_POSITIVE)
}

/// The largest relative error of `run` against `reference`: every loss term, the image
/// gradient, each step's total loss, the image after the steps (as moved from the start).
fn worst_error(run: &Run, reference: &Run, init: &[f64]) -> (f64, String) {
    let mut errors: Vec<(f64, String)> = Vec::new();
    let (l, r) = (&run.losses, &reference.losses);
    for (i, (a, b)) in l.content_terms.iter().zip(&r.content_terms).enumerate() {
        errors.push((rel(*a, *b), format!("content term {i}")));
    }
    for (i, (a, b)) in l.style_terms.iter().zip(&r.style_terms).enumerate() {
        errors.push((rel(*a, *b), format!("style term {i}")));
    }
    errors.push((rel(l.total, r.total), "total loss".into()));
    if r.tv > 0.0 {
        errors.push((rel(l.tv, r.tv), "total variation".into()));
    }
    errors.push((rel_err(&run.grad, &to_f64(&reference.grad)), "image gradient".into()));
    for (i, (a, b)) in run.trajectory.iter().zip(&reference.trajectory).enumerate() {
        errors.push((rel(*a, *b), format!("total loss after Adam step {}", i + 1)));
    }
    if !run.trajectory.is_empty() {
        let moved = |image: &[f32]| -> Vec<f64> { image.iter().zip(init).map(|(&v, &s)| v as f64 - s).collect() };
        let (a, b) = (moved(&run.image), moved(&reference.image));
        errors.push((stylize::test_support::rel_err_f64(&a, &b), "image moved by the Adam steps".into()));
    }
    assert!(errors.iter().all(|(e, _)| !e.is_nan()), "NaN in {errors:?}");
    eprintln!("{}", errors.iter().map(|(e, what)| format!("{what} {e:.1e}")).collect::<Vec<_>>().join(", "));
    errors.into_iter().fold((0.0, String::new()), |worst, e| if e.0 > worst.0 { e } else { worst })
}

/// The normalized starting image, as the networks hold it after `set_image`.
fn normalized(ctx: &Context, case: &Case) -> Vec<f64> {
    let network = Network::new(ctx, case.plan.clone(), &case.weights, None).unwrap();
    network.set_image(ctx, &case.init).unwrap();
    to_f64(&network.read_normalized_image(ctx).unwrap())
}

fn check(test: &str, height: usize, width: usize, sides: &[usize], losses: LossLayers, halo_checks: bool) {
    check_with(test, height, width, sides, losses, halo_checks, None)
}

/// As `check`; with `band_bytes`, also a run in tiles of the last side with the image's arrays
/// in bands of at most that many bytes (`tiled_in_bands`).
fn check_with(
    test: &str,
    height: usize,
    width: usize,
    sides: &[usize],
    losses: LossLayers,
    halo_checks: bool,
    band_bytes: Option<u64>,
) {
    let Some(ctx) = gpu_or_skip(test) else { return };
    let case = case(height, width, losses, 7);
    let init = normalized(&ctx, &case);
    let reference = untiled(&ctx, &case, 3);
    assert!(reference.losses.style > 0.0 && reference.losses.content > 0.0, "{:?}", reference.losses);
    assert_eq!(reference.losses.tv > 0.0, case.plan.has_tv());
    let halo = tiling::halo(&case.plan);
    for &side in sides {
        let tiles = tiling::Tiling::new(&case.plan, side).unwrap();
        assert!(tiles.tiles_across >= 2 && tiles.tiles_down >= 2, "{side}: not several tiles each way");
        let (error, what) = worst_error(&tiled(&ctx, &case, side, halo, 3), &reference, &init);
        eprintln!(
            "{test}: {width}x{height} in tiles of {side} ({} tiles): worst error {error:.2e} ({what})",
            tiles.tiles.len()
        );
        assert!(error <= TOLERANCE, "{width}x{height}, tiles of {side}: {what} differs by {error:.2e}");
    }
    if let Some(band_bytes) = band_bytes {
        let side = *sides.last().expect("a side");
        let (run, bands) = tiled_in_bands(&case, side, band_bytes, 3).expect("the adapter is there");
        let rows = band_bytes / (3 * width as u64 * 4);
        assert_eq!(bands, height.div_ceil(rows as usize), "bands of {rows} rows");
        let (error, what) = worst_error(&run, &reference, &init);
        eprintln!(
            "{test}: {width}x{height} in tiles of {side}, the image in {bands} bands: worst error {error:.2e} ({what})"
        );
        assert!(error <= TOLERANCE, "{width}x{height}, tiles of {side}, {bands} bands: {what} differs by {error:.2e}");
    }
    // Less halo: windows miss part of what the deepest layers see. But with random weights a
    // pixel's influence fades long before the receptive field ends: one grid step less (144 px
    // for the 150 needed) errs by less than f32 resolves (tests/tiling.rs shows that error in
    // f64: 3e-8 of the gradient), half the halo by about 1e-5 (seen on 640x200). A halo of 32 px
    // must fail by far, so these comparisons can fail.
    if !halo_checks {
        return;
    }
    let side = *sides.last().expect("a side");
    for small in [halo - tiling::TILE_GRID, 32] {
        let (error, what) = worst_error(&tiled(&ctx, &case, side, small, 0), &reference, &init);
        eprintln!("{test}: halo {small} instead of {halo}: worst error {error:.2e} ({what})");
        if small == 32 {
            assert!(error > 100.0 * TOLERANCE, "a halo of {small} px passes ({error:.2e})");
        }
    }
}

#[test]
fn tiled_step_equals_untiled_on_a_wide_image() {
    let losses = LossLayers { pooling: Pooling::Max, ..LossLayers::default() };
    check("tiled_step_equals_untiled_on_a_wide_image", 200, 640, &[64, 128], losses, true);
}

#[test]
fn tiled_step_equals_untiled_on_a_tall_odd_image_with_average_pooling() {
    let losses = LossLayers { pooling: Pooling::Avg, ..LossLayers::default() };
    check("tiled_step_equals_untiled_on_a_tall_odd_image_with_average_pooling", 403, 301, &[128], losses, true);
}

/// With the total-variation term (each tile's terms and their gradient, from its window) and
/// other layers: conv4_2 as content (the raw conv output, a ReLU node of its own) and three style
/// layers.
#[test]
fn tiled_step_equals_untiled_with_total_variation_and_other_layers() {
    let losses = LossLayers {
        tv_weight: 5.0,
        content: vec!["conv4_2".into()],
        style: vec![("relu1_1".into(), 1.0), ("relu3_1".into(), 0.5), ("relu5_1".into(), 0.25)],
        ..LossLayers::default()
    };
    let test = "tiled_step_equals_untiled_with_total_variation_and_other_layers";
    // Bands of 5 image rows (34 bands; the conv4_2 features in 2): the total variation's
    // neighbours and every window cross them.
    check_with(test, 170, 330, &[96], losses, false, Some(5 * 3 * 330 * 4));
}

/// With style masks (two regions, soft-edged halves): each masked term's Gram over the tiles'
/// owned positions weighted by the whole mask's column weights, and each window's backward with
/// its cut of them.
#[test]
fn tiled_step_equals_untiled_with_style_masks() {
    let (height, width) = (180, 340);
    let left: Vec<f32> =
        (0..height * width).map(|i| (1.2 - (i % width) as f32 / (width as f32 / 2.0)).clamp(0.0, 1.0)).collect();
    let right: Vec<f32> = left.iter().map(|v| 1.0 - v).collect();
    let losses = LossLayers { masks: vec![left, right], ..LossLayers::default() };
    // Bands of 4 image rows (45 bands; each mask's column weights at relu1_1 in 15).
    let bands = Some(4 * 3 * width as u64 * 4);
    check_with("tiled_step_equals_untiled_with_style_masks", height, width, &[112], losses, false, bands);
}

/// `stylize plan`'s tiled figures (`tiling::report`) against what the tiled executor allocates
/// plus the optimizer state a run adds beside it (Adam's two moments, the finiteness guard's two
/// images, the iterate average: `UNTILED_IMAGE_STATE` arrays): within a few percent, the
/// difference being the tiles' own small buffers and the per-label maxima over window sizes.
#[test]
fn plan_figures_match_what_the_tiled_executor_allocates() {
    let Some(ctx) = gpu_or_skip("plan_figures_match_what_the_tiled_executor_allocates") else { return };
    for (height, width, side) in [(200, 640, 64), (403, 301, 128)] {
        let case = case(height, width, LossLayers::default(), 3);
        let budget = tiling::Budget { memory: 1 << 40, ..tiling::Budget::default() };
        let report = tiling::report(&case.plan, Some(side), budget).unwrap();
        let executor = TiledExecutor::new(&ctx, case.plan.clone(), &case.weights, side).unwrap();
        let run = executor.allocated_bytes() + tiling::UNTILED_IMAGE_STATE * executor.image_len() as u64 * 4;
        let ratio = run as f64 / report.total_bytes() as f64;
        eprintln!(
            "{width}x{height} in tiles of {side}: executor + state {run} B, plan {} B ({ratio:.3})",
            report.total_bytes()
        );
        assert!(
            (0.9..=1.1).contains(&ratio),
            "{width}x{height}: the plan says {} B, the run holds {run} B",
            report.total_bytes()
        );
        assert_eq!(report.tiles, executor.tiling.tiles.len());
    }
}

/// With `--normalize-gradients`: every term's gradient divided by its L1 norm over the whole
/// image (the content terms' from pass 1, the style terms' from a pass of their own), and with
/// masks so that a masked term's norm is checked too.
#[test]
fn tiled_step_equals_untiled_with_normalized_gradients() {
    let (height, width) = (180, 340);
    let left: Vec<f32> = (0..height * width).map(|i| if (i % width) < width / 2 { 1.0 } else { 0.2 }).collect();
    let right: Vec<f32> = left.iter().map(|v| 1.2 - v).collect();
    // alpha as large as beta, so that the content term's norm shows in the gradient too.
    let losses = LossLayers {
        normalize_gradients: true,
        masks: vec![left, right],
        content_weight: LossLayers::default().style_weight,
        ..LossLayers::default()
    };
    check("tiled_step_equals_untiled_with_normalized_gradients", height, width, &[112], losses.clone(), false);
    let plain = LossLayers { masks: Vec::new(), ..losses };
    check("tiled_step_equals_untiled_with_normalized_gradients", 200, 330, &[96], plain, false);
}

/// With crowsonkb's nine-point total variation: it reads only the image, so it runs once on the
/// whole image (its loss in the first tile's slot, its gradient added after every tile's); an
/// image in several bands is refused in one line, naming its size.
#[test]
fn tiled_step_equals_untiled_with_the_nine_point_total_variation() {
    let losses = LossLayers { tv_weight: 5.0, tv_loss: stylize::TvLoss::NinePoint, ..LossLayers::default() };
    let test = "tiled_step_equals_untiled_with_the_nine_point_total_variation";
    check(test, 173, 229, &[64], losses.clone(), false);
    let Some(mut ctx) = gpu_or_skip(test) else { return };
    ctx.set_band_limit(5 * 3 * 229 * 4);
    let case = case(173, 229, losses, 7);
    let error = TiledExecutor::new(&ctx, case.plan.clone(), &case.weights, 64).err().expect("refused in bands");
    assert!(error.to_string().contains("229x173 image in one binding"), "{error}");
}

/// With the first convolution padding by replicated edges (`--padding replicate`): each window
/// pads its own edges so, which is right where a window edge is the image's and, elsewhere,
/// reaches only the halo (like a zero pad there); the fold onto a window's edge pixels likewise.
#[test]
fn tiled_step_equals_untiled_with_replicate_padding() {
    let losses = LossLayers { padding: stylize::Padding::Replicate, ..LossLayers::default() };
    check("tiled_step_equals_untiled_with_replicate_padding", 173, 229, &[64], losses, false);
}

/// With `--style-loss w2`: each W2 term's mean and second moment summed over the tiles' owned
/// positions (over the whole layer's N), its loss and moment gradients once from them, and each
/// window's dL/dF from those with its own features; the style image's moments captured tile by
/// tile the same way. Tiles of 64 on an odd size: 4 across, 3 down.
#[test]
fn tiled_step_equals_untiled_with_the_w2_style_loss() {
    let losses = LossLayers { style_loss: stylize::StyleLoss::W2, ..LossLayers::default() };
    check("tiled_step_equals_untiled_with_the_w2_style_loss", 173, 229, &[64], losses, false);
}

/// W2 with style masks (two soft-edged halves): each masked term's weighted moments over the
/// owned positions with the whole mask's column weights, each window's gradient with its cut of
/// them; and with `--normalize-gradients`, each W2 term's L1 norm over the whole image.
#[test]
fn tiled_step_equals_untiled_with_the_w2_style_loss_and_masks() {
    let (height, width) = (157, 243);
    let left: Vec<f32> =
        (0..height * width).map(|i| (1.2 - (i % width) as f32 / (width as f32 / 2.0)).clamp(0.0, 1.0)).collect();
    let right: Vec<f32> = left.iter().map(|v| 1.0 - v).collect();
    let losses = LossLayers { style_loss: stylize::StyleLoss::W2, masks: vec![left, right], ..LossLayers::default() };
    let test = "tiled_step_equals_untiled_with_the_w2_style_loss_and_masks";
    check(test, height, width, &[64], losses.clone(), false);
    let normalized = LossLayers { normalize_gradients: true, content_weight: losses.style_weight, ..losses };
    check(test, height, width, &[96], normalized, false);
}
