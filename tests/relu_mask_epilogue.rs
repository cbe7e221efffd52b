//! The ReLU mask bits written by the convolution's epilogue (`conv::forward_relu_masked`, the
//! training forward) instead of a separate pass: in every formulation, both precisions, on the
//! full and on a folded grid, at odd sizes, with the output poisoned (NaN) and the mask words
//! poisoned with all-ones words so that a bit nobody writes shows; then the whole network's
//! losses and image gradient against the old separate pass (`relu::pack_mask`), bit for bit.

mod common;

use common::*;
use stylize::gpu::{Context, PrecisionChoice};
use stylize::net::{Executor, LossLayers, Plan, random_weights};
use stylize::ops::conv::{self, ConvAlgorithm, ConvShape, GpuConvWeights};
use stylize::ops::relu;
use stylize::test_support::tiny_table;

// (Cin, Cout, H, W): gpu_ops.rs's shapes (every tiling's edges, a 1 x 2 image, outputs that are
// no multiple of 32), and one whose long reduction over few tiles is split under the tiled
// formulations (`conv3x3_split_sum` then writes the bits).
const SHAPES: [(usize, usize, usize, usize); 7] = [
    (3, 5, 13, 17),
    (5, 67, 13, 17),
    (67, 3, 13, 17),
    (5, 9, 1, 2),
    (4, 19, 37, 5),
    (21, 131, 19, 23),
    (131, 67, 7, 9),
];

/// `len` values that are multiples of `step` in [-limit, limit]: products and sums of them are
/// exact in f32 whatever the order (and f16-exact operands, so mixed precision rounds nothing),
/// so the GPU's output equals the f64 reference exactly and exact zeros occur.
fn dyadic(rng: &mut Rng, len: usize, step: f64, limit: f64) -> Vec<f64> {
    let units = (limit / step) as i64;
    (0..len).map(|_| ((rng.uniform() * (2 * units + 1) as f64).floor() as i64 - units) as f64 * step).collect()
}

fn all_ones(ctx: &Context, words: usize) -> wgpu::Buffer {
    ctx.upload_words("mask poisoned with ones", &vec![u32::MAX; words]).unwrap()
}

fn bits_of(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

fn contexts_in_both_precisions(test: &str) -> Vec<(String, Context)> {
    let mut all = contexts(test);
    for (grid, mut ctx) in contexts(test) {
        ctx.precision = PrecisionChoice::emulated();
        all.push((format!("{grid}, mixed (emulated)"), ctx));
    }
    all
}

#[test]
fn gpu_conv_epilogue_mask_bits_match_reference() {
    let mut rng = Rng::new(71);
    let mut entries_seen = std::collections::BTreeSet::new();
    let mut zeros = 0;
    for (what, mut ctx) in contexts_in_both_precisions("gpu_conv_epilogue_mask_bits_match_reference") {
        let mixed = ctx.precision.arithmetic.is_mixed();
        for algorithm in ConvAlgorithm::ALL {
            algorithm.force(&mut ctx);
            for (cin, cout, h, w) in SHAPES {
                let shape = ConvShape { in_channels: cin, out_channels: cout, height: h, width: w };
                let len = shape.output_len();
                let words = relu::mask_words(len);
                let case = format!("{algorithm:?} {shape:?} ({what})");
                // Exact data: the mask equals the f64 reference's bit for bit, zeros included.
                let x = dyadic(&mut rng, shape.input_len(), 1.0 / 2.0, 1.0);
                let wt = dyadic(&mut rng, shape.weight_len(), 1.0 / 4.0, 0.5);
                let b = dyadic(&mut rng, cout, 1.0 / 4.0, 0.5);
                let weights = GpuConvWeights::upload(&ctx, "t", &to_f32(&wt), &to_f32(&b), cout, cin).unwrap();
                let input = upload(&ctx, &x);
                let reference = if mixed {
                    conv::reference::forward_mixed(shape, &to_f32(&x), &to_f32(&wt), &b)
                } else {
                    conv::reference::forward(shape, &x, &wt, &b)
                };
                assert_eq!(reference, conv::reference::forward(shape, &x, &wt, &b), "dyadic data rounds nothing");
                let expected = relu::reference::mask_bits(&reference);
                assert!(expected.iter().any(|&w| w != 0) && expected.iter().any(|&w| w != u32::MAX));
                zeros += reference.iter().filter(|&&v| v == 0.0).count();
                let out = poisoned(&ctx, len);
                let mask = all_ones(&ctx, words);
                let step = conv::forward_relu_masked(&ctx, shape, &input, &weights, &out, &mask).unwrap();
                entries_seen.extend(entries(&step));
                run(&ctx, &step);
                assert_eq!(ctx.read_words(&mask, words).unwrap(), expected, "mask words, exact data, {case}");
                let got = read(&ctx, &out, len);
                assert_eq!(to_f64(&got), relu::reference::forward(&reference), "activation, exact data, {case}");

                // Random data: the activation is today's (conv + fused ReLU without the mask) bit
                // for bit, within tolerance of the reference, and the mask is that of its values.
                let (x, wt, b) = (
                    rng.vec(shape.input_len(), -1.0, 1.0),
                    rng.vec(shape.weight_len(), -0.5, 0.5),
                    rng.vec(cout, -0.5, 0.5),
                );
                let weights = GpuConvWeights::upload(&ctx, "t", &to_f32(&wt), &to_f32(&b), cout, cin).unwrap();
                let input = upload(&ctx, &x);
                let plain = poisoned(&ctx, len);
                run(&ctx, &conv::forward(&ctx, shape, &input, &weights, &plain, true).unwrap());
                let out = poisoned(&ctx, len);
                let mask = all_ones(&ctx, words);
                run(&ctx, &conv::forward_relu_masked(&ctx, shape, &input, &weights, &out, &mask).unwrap());
                let got = read(&ctx, &out, len);
                assert_eq!(bits_of(&got), bits_of(&read(&ctx, &plain, len)), "activation as without the mask, {case}");
                let reference = if mixed {
                    conv::reference::forward_mixed(shape, &to_f32(&x), &to_f32(&wt), &b)
                } else {
                    conv::reference::forward(shape, &x, &wt, &b)
                };
                assert_close(&format!("activation, {case}"), &got, &relu::reference::forward(&reference), F32_TOL);
                let own = relu::reference::mask_bits(&to_f64(&got));
                assert_eq!(ctx.read_words(&mask, words).unwrap(), own, "mask words of the activation, {case}");
            }
        }
    }
    if entries_seen.is_empty() {
        return; // skipped: no adapter
    }
    assert!(zeros > 100, "exact zeros occur (they give 0 bits): {zeros}");
    for entry in ["conv3x3", "conv3x3_8x8", "conv3x3_thin", "conv3x3_direct", "conv3x3_winograd", "conv3x3_split_sum"] {
        assert!(entries_seen.contains(&format!("conv::{entry}")), "{entry} never ran: {entries_seen:?}");
    }
}

/// The whole network: one training step with the masks written by the epilogue and one with the
/// old separate pass give the same mask words, losses and image gradient, bit for bit; both
/// precisions, full and folded grids, every formulation on the tiny network.
#[test]
fn gpu_network_epilogue_masks_equal_the_separate_pass() {
    for (what, mut ctx) in contexts_in_both_precisions("gpu_network_epilogue_masks_equal_the_separate_pass") {
        for algorithm in ConvAlgorithm::ALL {
            algorithm.force(&mut ctx);
            let losses = LossLayers {
                content: vec!["relu1_2".into()],
                style: vec![("relu1_1".into(), 1.0), ("relu2_1".into(), 0.75), ("relu3_1".into(), 0.2)],
                content_weight: 1.0,
                style_weight: 1e3,
                ..LossLayers::default()
            };
            let weights = random_weights(&[4, 5, 6, 3], 81);
            let widths: Vec<(usize, usize)> = weights.iter().map(|c| (c.in_channels, c.out_channels)).collect();
            let (h, w) = (13, 17);
            let plan = Plan::new(&tiny_table(), &widths, h, w, &losses).unwrap();
            let mut executor = Executor::new(&ctx, plan, &weights).unwrap();
            let mut rng = Rng::new(82);
            executor.set_content(&ctx, &to_f32(&rng.vec(3 * h * w, 0.0, 1.0))).unwrap();
            executor.set_style(&ctx, &to_f32(&rng.vec(3 * h * w, 0.0, 1.0))).unwrap();
            let earlier = to_f32(&rng.vec(3 * h * w, -2.0, 2.0));
            let image = to_f32(&rng.vec(3 * h * w, -2.0, 2.0));
            let step = |executor: &mut Executor, image: &[f32]| {
                executor.set_normalized_image(&ctx, image).unwrap();
                executor.training_step().run(&ctx).unwrap();
                let losses = executor.read_losses(&ctx).unwrap();
                let slots: Vec<u64> = losses
                    .content_terms
                    .iter()
                    .chain(&losses.style_terms)
                    .chain([&losses.total])
                    .map(|v| v.to_bits())
                    .collect();
                (executor.read_relu_masks(&ctx).unwrap(), slots, bits_of(&executor.read_image_grad(&ctx).unwrap()))
            };
            // An earlier step leaves other bits in the masks: the epilogue must overwrite them.
            let (earlier_masks, ..) = step(&mut executor, &earlier);
            let (masks, losses, grad) = step(&mut executor, &image);
            assert!(masks.iter().flatten().count() >= 4, "the tiny network has fused ReLUs");
            assert_ne!(masks, earlier_masks, "another image gives other masks");
            executor.record_training_with_separate_mask_pass(&ctx).unwrap();
            let (old_masks, old_losses, old_grad) = step(&mut executor, &image);
            let case = format!("{algorithm:?} ({what})");
            assert_eq!(masks, old_masks, "mask words, {case}");
            assert_eq!(losses, old_losses, "losses, {case}");
            assert_eq!(grad, old_grad, "image gradient, {case}");
            assert!(grad.iter().any(|&g| f32::from_bits(g) != 0.0), "{case}: a gradient flows");
        }
    }
}

/// The cooperative-matrix kernel's epilogue (`conv_coop.wgsl`, mixed precision on matrix units)
/// writes the same mask words: on exact data, equal to the f64 reference's bit for bit, over
/// words poisoned with ones. Skipped, visibly, where the adapter has no cooperative matrices the
/// kernels use (lavapipe before Mesa 26); `STYLIZE_REQUIRE_MATRIX_UNITS=1` fails instead.
#[test]
fn gpu_matrix_epilogue_mask_bits_match_reference() {
    let test = "gpu_matrix_epilogue_mask_bits_match_reference";
    if stylize::test_support::gpu_or_skip(test).is_none() {
        return;
    }
    let options = stylize::gpu::ContextOptions { precision: stylize::gpu::Precision::Mixed, ..Default::default() };
    let ctx = Context::new(&options).unwrap();
    if ctx.precision.arithmetic != stylize::gpu::Arithmetic::MixedMatrix {
        let why = format!("{test}: SKIPPED: {} has no cooperative matrices the kernels use", ctx.adapter.name);
        assert!(std::env::var_os("STYLIZE_REQUIRE_MATRIX_UNITS").is_none(), "{why}");
        eprintln!("{why}");
        return;
    }
    let mut rng = Rng::new(91);
    for (cin, cout, h, w) in SHAPES.into_iter().chain([(64, 64, 32, 32), (256, 128, 8, 8)]) {
        let shape = ConvShape { in_channels: cin, out_channels: cout, height: h, width: w };
        let (len, words) = (shape.output_len(), relu::mask_words(shape.output_len()));
        let x = dyadic(&mut rng, shape.input_len(), 1.0 / 2.0, 1.0);
        let wt = dyadic(&mut rng, shape.weight_len(), 1.0 / 4.0, 0.5);
        let b = dyadic(&mut rng, cout, 1.0 / 4.0, 0.5);
        let weights = GpuConvWeights::upload(&ctx, "t", &to_f32(&wt), &to_f32(&b), cout, cin).unwrap();
        let (input, out, mask) = (upload(&ctx, &x), poisoned(&ctx, len), all_ones(&ctx, words));
        let step = conv::forward_relu_masked(&ctx, shape, &input, &weights, &out, &mask).unwrap();
        assert!(
            entries(&step).iter().any(|e| e.starts_with("conv_coop_") && e.ends_with("::conv3x3_coop"))
                || shape.out_channels <= 4
        );
        run(&ctx, &step);
        let reference = conv::reference::forward(shape, &x, &wt, &b);
        assert_eq!(ctx.read_words(&mask, words).unwrap(), relu::reference::mask_bits(&reference), "{shape:?}");
        assert_eq!(to_f64(&read(&ctx, &out, len)), relu::reference::forward(&reference), "{shape:?}");
    }
    eprintln!("{test}: the cooperative-matrix epilogue writes the reference's mask bits on {}", ctx.adapter.name);
}
