//! The tiled schedule (`net::tiling`) is exact: a two-pass tiled evaluation on the host in f64
//! (pass 1: forward per window, Grams and content loss from owned positions; pass 2: forward and
//! backward per window with the loss gradients injected in the exact regions, image gradient
//! kept for owned pixels) equals the untiled `Reference::loss_and_grad`; a halo one grid step too
//! small does not. And `stylize plan` reports the schedule. No GPU.

use stylize::net::reference::{Reference, Targets};
use stylize::net::tiling::{self, Span, Tiling};
use stylize::net::vgg::VGG19;
use stylize::net::{LossLayers, Losses, Plan, Pooling, random_weights};
use stylize::ops::{gram, loss};
use stylize::rng::Rng;
use stylize::test_support::rel_err_f64;

/// Reduced-channel VGG-19 to relu5_1: the full depth, so the halo is the real one.
const WIDTHS: [usize; 13] = [4, 4, 5, 5, 6, 6, 6, 6, 6, 6, 6, 6, 6];

struct Case {
    plan: Plan,
    weights: Vec<stylize::ConvLayerWeights>,
    reference: Reference,
    image: Vec<f64>,
    targets: Targets,
}

fn case(height: usize, width: usize, pooling: Pooling, seed: u64) -> Case {
    let weights = random_weights(&WIDTHS, seed);
    let widths: Vec<(usize, usize)> = weights.iter().map(|w| (w.in_channels, w.out_channels)).collect();
    let losses = LossLayers { pooling, ..LossLayers::default() };
    let plan = Plan::new(&VGG19, &widths, height, width, &losses).unwrap();
    let reference = Reference::new(plan.clone(), &weights);
    let mut rng = Rng::new(seed + 1);
    let n = 3 * height * width;
    let content: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
    let style: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
    let image: Vec<f64> = content.iter().map(|c| c + 0.5 * rng.normal()).collect();
    let targets = reference.targets(&content, &style);
    Case { plan, weights, reference, image, targets }
}

/// The `rows` x `cols` block of a C x H x W array.
fn crop(values: &[f64], channels: usize, width: usize, rows: Span, cols: Span) -> Vec<f64> {
    let height = values.len() / (channels * width);
    let mut out = Vec::with_capacity(channels * rows.len() * cols.len());
    for c in 0..channels {
        for y in rows.start..rows.end {
            let row = (c * height + y) * width;
            out.extend_from_slice(&values[row + cols.start..row + cols.end]);
        }
    }
    out
}

/// One window's network and forward pass, with where its activations lie in the image's.
struct Window {
    reference: Reference,
    acts: Vec<Vec<f64>>,
    /// Per activation: the window's first row and column over the whole image.
    origins: Vec<(usize, usize)>,
}

impl Window {
    fn new(case: &Case, tiling: &Tiling, tile: &tiling::Tile) -> Self {
        let plan = tiling::window_plan(&case.plan, tile.window_rows.len(), tile.window_cols.len()).unwrap();
        let reference = Reference::new(plan, &case.weights);
        let image = crop(&case.image, 3, tiling.width, tile.window_rows, tile.window_cols);
        let acts = reference.forward(&image);
        let origins: Vec<(usize, usize)> = (0..acts.len()).map(|a| tiling.window_origin(tile, a)).collect();
        for (a, (&(oy, ox), shape)) in origins.iter().zip(&reference.plan.acts).enumerate() {
            let global = case.plan.acts[a];
            assert!(oy + shape.height <= global.height && ox + shape.width <= global.width, "window off the image");
        }
        Self { reference, acts, origins }
    }

    /// Window indices (p within one channel) of the positions of `act` in `rows` x `cols` (global).
    fn positions(&self, act: usize, (rows, cols): (Span, Span)) -> Vec<usize> {
        let (oy, ox) = self.origins[act];
        let w = self.reference.plan.acts[act].width;
        let mut out = Vec::new();
        for y in rows.start..rows.end {
            for x in cols.start..cols.end {
                out.push((y - oy) * w + (x - ox));
            }
        }
        out
    }

    /// A global C x H x W target of `act` cropped to this window.
    fn crop_global(&self, act: usize, global: &[f64], case: &Case) -> Vec<f64> {
        let (oy, ox) = self.origins[act];
        let s = self.reference.plan.acts[act];
        let g = case.plan.acts[act];
        crop(
            global,
            g.channels,
            g.width,
            Span { start: oy, end: oy + s.height },
            Span { start: ox, end: ox + s.width },
        )
    }
}

/// The two-pass tiled evaluation of the losses and the image gradient.
fn tiled_loss_and_grad(case: &Case, tiling: &Tiling) -> (Losses, Vec<f64>) {
    let plan = &case.plan;
    // Pass 1: Grams and content sums from owned positions.
    let mut grams: Vec<Vec<f64>> = plan.style.iter().map(|t| vec![0.0; plan.gram_shape(t.act).gram_len()]).collect();
    let mut content_sums = vec![0.0; plan.content.len()];
    for tile in &tiling.tiles {
        let window = Window::new(case, tiling, tile);
        for (k, term) in plan.content.iter().enumerate() {
            let f = &window.acts[term.act];
            let target = window.crop_global(term.act, &case.targets.content[k], case);
            let n = f.len() / plan.acts[term.act].channels;
            for p in window.positions(term.act, tiling.owned(tile, term.act)) {
                for c in 0..plan.acts[term.act].channels {
                    content_sums[k] += (f[c * n + p] - target[c * n + p]).powi(2);
                }
            }
        }
        for (k, term) in plan.style.iter().enumerate() {
            let f = &window.acts[term.act];
            let channels = plan.acts[term.act].channels;
            let n = f.len() / channels;
            let owned = window.positions(term.act, tiling.owned(tile, term.act));
            for i in 0..channels {
                for j in 0..channels {
                    grams[k][i * channels + j] += owned.iter().map(|&p| f[i * n + p] * f[j * n + p]).sum::<f64>();
                }
            }
        }
    }
    let mut slots: Vec<f64> = plan.content.iter().zip(&content_sums).map(|(t, sum)| t.scale * sum).collect();
    let mut grad_grams = Vec::new();
    for ((term, g), target) in plan.style.iter().zip(&grams).zip(&case.targets.style_grams) {
        slots.push(loss::reference::sq_diff(g, target, term.scale));
        grad_grams.push(loss::reference::sq_diff_backward(g, target, term.scale));
    }
    // Pass 2: loss gradients in the exact regions, image gradient of owned pixels.
    let (height, width) = (tiling.height, tiling.width);
    let mut image_grad = vec![f64::NAN; 3 * height * width];
    for tile in &tiling.tiles {
        let window = Window::new(case, tiling, tile);
        let wplan = &window.reference.plan;
        let mut grads: Vec<Option<Vec<f64>>> = vec![None; window.acts.len()];
        let mut inject = |act: usize, g: Vec<f64>, weight: f64| {
            let channels = wplan.acts[act].channels;
            let n = g.len() / channels;
            let mut masked = vec![0.0; g.len()];
            for p in window.positions(act, tiling.exact(tile, act)) {
                for c in 0..channels {
                    masked[c * n + p] = weight * g[c * n + p];
                }
            }
            match &mut grads[act] {
                Some(existing) => existing.iter_mut().zip(&masked).for_each(|(e, v)| *e += v),
                slot @ None => *slot = Some(masked),
            }
        };
        for (k, term) in plan.content.iter().enumerate() {
            let target = window.crop_global(term.act, &case.targets.content[k], case);
            let g = loss::reference::sq_diff_backward(&window.acts[term.act], &target, term.scale);
            inject(term.act, g, plan.content_weight);
        }
        for (k, term) in plan.style.iter().enumerate() {
            let g = gram::reference::backward(wplan.gram_shape(term.act), &window.acts[term.act], &grad_grams[k]);
            inject(term.act, g, plan.style_weight);
        }
        let grad = window.reference.backward_from(&window.acts, grads);
        let (ww, wh) = (tile.window_cols.len(), tile.window_rows.len());
        let (rows, cols) = tiling.owned(tile, 0);
        for c in 0..3 {
            for y in rows.start..rows.end {
                for x in cols.start..cols.end {
                    let local = (c * wh + y - tile.window_rows.start) * ww + x - tile.window_cols.start;
                    image_grad[(c * height + y) * width + x] = grad[local];
                }
            }
        }
    }
    (Losses::from_slots(plan, &slots), image_grad)
}

/// Relative errors of the tiled losses (worst term and total) and image gradient.
fn compare(case: &Case, tiling: &Tiling) -> (f64, f64) {
    let (expected, expected_grad) = case.reference.loss_and_grad(&case.image, &case.targets);
    let (losses, grad) = tiled_loss_and_grad(case, tiling);
    let terms = losses.content_terms.iter().chain(&losses.style_terms).chain([&losses.total]);
    let expected_terms = expected.content_terms.iter().chain(&expected.style_terms).chain([&expected.total]);
    let loss_err = terms.zip(expected_terms).map(|(a, b)| ((a - b) / b).abs()).fold(0.0, f64::max);
    assert!(expected.total > 0.0 && expected_grad.iter().any(|&g| g != 0.0), "never test on zeros");
    let loss_err = if loss_err.is_nan() { f64::INFINITY } else { loss_err };
    (loss_err, rel_err_f64(&grad, &expected_grad))
}

fn check_exact(height: usize, width: usize, side: usize, pooling: Pooling, seed: u64) {
    let case = case(height, width, pooling, seed);
    let tiling = Tiling::new(&case.plan, side).unwrap();
    assert_eq!(tiling.halo, 160, "VGG-19 to relu5_1");
    // The halo really cuts: some window is smaller than the image.
    assert!(tiling.tiles.iter().any(|t| t.window_cols.len() < width || t.window_rows.len() < height));
    let (loss_err, grad_err) = compare(&case, &tiling);
    eprintln!(
        "{width}x{height} in {}x{} tiles of {side} ({pooling:?}): losses {loss_err:.2e}, gradient {grad_err:.2e}",
        tiling.tiles_across, tiling.tiles_down
    );
    assert!(loss_err < 1e-9 && grad_err < 1e-9, "losses {loss_err:e}, gradient {grad_err:e}");
}

#[test]
fn tiled_step_is_exact_640x200_tiles_of_64_max_pool() {
    check_exact(200, 640, 64, Pooling::Max, 3);
}

#[test]
fn tiled_step_is_exact_300x400_tiles_of_128_avg_pool() {
    check_exact(400, 300, 128, Pooling::Avg, 5);
}

#[test]
fn tiled_step_is_exact_300x400_tiles_of_64_max_pool() {
    check_exact(400, 300, 64, Pooling::Max, 7);
}

/// One grid step less halo: pass 1 is still exact (owned features need less), but some feature
/// injected in pass 2 then reads zero padding inside the image, and the image gradient is wrong.
#[test]
fn a_halo_one_step_too_small_is_not_exact() {
    for pooling in [Pooling::Max, Pooling::Avg] {
        let case = case(200, 640, pooling, 11);
        let halo = tiling::halo(&case.plan) - tiling::TILE_GRID;
        let tiling = Tiling::with_halo(&case.plan, 64, halo).unwrap();
        let (loss_err, grad_err) = compare(&case, &tiling);
        eprintln!("halo {halo} ({pooling:?}): losses {loss_err:.2e}, gradient {grad_err:.2e}");
        assert!(grad_err > 1e-6, "a halo of {halo} px still gives the exact gradient ({grad_err:e})");
    }
}
