//! The composed network on the GPU against the f64 reference of the whole method: losses, the
//! image gradient, a directional derivative through the GPU path, and Adam trajectories.

mod common;

use common::*;
use stylize::net::reference::{Reference, Targets};
use stylize::net::vgg::{VGG19, VGG19_WIDTHS};
use stylize::net::{ConvLayerWeights, Executor, LossLayers, Node, Padding, Plan, Pooling, random_weights};
use stylize::optim::adam::{self, Adam, AdamConfig};
use stylize::test_support::tiny_table;

struct Case {
    executor: Executor,
    reference: Reference,
    targets: Targets,
    image: Vec<f64>,
}

fn build(
    ctx: &stylize::gpu::Context,
    table: &[stylize::net::vgg::LayerDef],
    weights: &[ConvLayerWeights],
    (h, w): (usize, usize),
    losses: &LossLayers,
    seed: u64,
) -> Case {
    let widths: Vec<(usize, usize)> = weights.iter().map(|c| (c.in_channels, c.out_channels)).collect();
    let plan = Plan::new(table, &widths, h, w, losses).unwrap();
    let executor = Executor::new(ctx, plan.clone(), weights).unwrap();
    let reference = Reference::new(plan, weights);
    let mut rng = Rng::new(seed);
    let content = rng.vec(3 * h * w, 0.0, 1.0);
    let style = rng.vec(3 * h * w, 0.0, 1.0);
    executor.set_content(ctx, &to_f32(&content)).unwrap();
    executor.set_style(ctx, &to_f32(&style)).unwrap();
    // The reference sees exactly the normalized images the GPU produced.
    let normalize = |rgb: &[f64]| {
        executor.set_image(ctx, &to_f32(rgb)).unwrap();
        to_f64(&executor.read_normalized_image(ctx).unwrap())
    };
    let targets = reference.targets(&normalize(&content), &normalize(&style));
    let image = to_f64(&to_f32(&rng.vec(3 * h * w, -2.0, 2.0)));
    executor.set_normalized_image(ctx, &to_f32(&image)).unwrap();
    Case { executor, reference, targets, image }
}

fn tiny_losses(content_layer: &str) -> LossLayers {
    LossLayers {
        content: vec![content_layer.to_string()],
        style: vec![("relu1_1".into(), 1.0), ("relu2_1".into(), 0.75), ("relu3_1".into(), 0.2)],
        content_weight: 1.0,
        style_weight: 1e3,
        ..LossLayers::default()
    }
}

fn check_step_against_reference(case: &mut Case, ctx: &stylize::gpu::Context, what: &str, tol: f64) {
    case.executor.training_step().run(ctx).unwrap();
    let (expected, expected_grad) = case.reference.loss_and_grad(&case.image, &case.targets);
    let got = case.executor.read_losses(ctx).unwrap();
    let got_slots: Vec<f32> = got.content_terms.iter().chain(&got.style_terms).map(|&v| v as f32).collect();
    let expected_slots: Vec<f64> = expected.content_terms.iter().chain(&expected.style_terms).copied().collect();
    assert_close(&format!("{what}: loss terms"), &got_slots, &expected_slots, tol);
    if expected.tv == 0.0 {
        assert_eq!(got.tv, 0.0, "{what}: no total-variation term");
    } else {
        assert_close(&format!("{what}: total variation"), &[got.tv as f32], &[expected.tv], tol);
    }
    assert_close(&format!("{what}: total"), &[got.total as f32], &[expected.total], tol);
    let grad = case.executor.read_image_grad(ctx).unwrap();
    let errors = (rel_err(&got_slots, &expected_slots), rel_err(&grad, &expected_grad));
    eprintln!("{what}: loss terms {:.2e}, image gradient {:.2e} from f64", errors.0, errors.1);
    assert_close(&format!("{what}: image gradient"), &grad, &expected_grad, tol);
}

#[test]
fn gpu_composed_network_matches_reference() {
    for (grid, ctx) in contexts("gpu_composed_network_matches_reference") {
        for content_layer in ["relu1_2", "conv1_2"] {
            let weights = random_weights(&[4, 5, 6, 3], 21);
            let mut case = build(&ctx, &tiny_table(), &weights, (13, 17), &tiny_losses(content_layer), 22);
            check_step_against_reference(
                &mut case,
                &ctx,
                &format!("tiny network, content {content_layer} ({grid})"),
                1e-4,
            );
        }
    }
}

/// The first convolution padding by replicated edges (`Padding::Replicate`, crowsonkb's) through
/// the composed network: pad, the zero-padded kernels over the padded image, its output's
/// interior; backward to the padded image and folded onto the edges; against the f64 method, with
/// max and with average pools, the first conv's ReLU fused or read before it (conv1_1).
#[test]
fn gpu_replicate_padded_network_matches_reference() {
    for (grid, ctx) in contexts("gpu_replicate_padded_network_matches_reference") {
        let weights = random_weights(&[4, 5, 6, 3], 25);
        let replicate = LossLayers { padding: Padding::Replicate, ..tiny_losses("relu1_2") };
        for (what, losses) in [
            ("max pools", replicate.clone()),
            ("avg pools", LossLayers { pooling: Pooling::Avg, ..replicate.clone() }),
            ("content at conv1_1", LossLayers { content: vec!["conv1_1".into()], ..replicate.clone() }),
        ] {
            let mut case = build(&ctx, &tiny_table(), &weights, (13, 17), &losses, 26);
            check_step_against_reference(&mut case, &ctx, &format!("replicate padding, {what} ({grid})"), 1e-4);
        }
    }
}

/// The W2 style loss (`StyleLoss::W2`, `ops::w2`) through the composed network: the style
/// targets captured from the style image's forward (Gram and row means, turned into each layer's
/// Gaussian on the host), the loss terms and the image gradient against the f64 method, plain and
/// with normalized gradients.
#[test]
fn gpu_w2_network_matches_reference() {
    for (grid, ctx) in contexts("gpu_w2_network_matches_reference") {
        let weights = random_weights(&[4, 5, 6, 3], 23);
        let w2 = LossLayers { style_loss: stylize::StyleLoss::W2, style_weight: 10.0, ..tiny_losses("relu1_2") };
        for (what, losses) in
            [("w2", w2.clone()), ("w2, normalized gradients", LossLayers { normalize_gradients: true, ..w2.clone() })]
        {
            let mut case = build(&ctx, &tiny_table(), &weights, (13, 17), &losses, 24);
            assert_eq!(case.targets.style_w2.len(), 3);
            check_step_against_reference(&mut case, &ctx, &format!("tiny network, {what} ({grid})"), 1e-4);
        }
    }
}

/// Two soft complementary masks over a 13 x 17 image (the left one fades out towards the right)
/// and a third that is white only in its last row, which pooling drops: it covers nothing below
/// the first pool.
fn tiny_masks(h: usize, w: usize) -> Vec<Vec<f32>> {
    let left: Vec<f32> = (0..h * w).map(|i| (1.0 - (i % w) as f32 / (w - 1) as f32).powi(2)).collect();
    let right = left.iter().map(|v| 1.0 - v).collect();
    let last_row = (0..h * w).map(|i| if i / w == h - 1 { 1.0 } else { 0.0 }).collect();
    vec![left, right, last_row]
}

/// Guided Grams (`--mask`): one term per (layer, region) with the mask average-pooled at every
/// pool (max or average pools, also with normalized gradients), each region's target the plain
/// Gram of its own style image; losses and the image gradient against the f64 reference, on both
/// grids.
#[test]
fn gpu_composed_network_with_masks_matches_reference() {
    for (grid, ctx) in contexts("gpu_composed_network_with_masks_matches_reference") {
        let weights = random_weights(&[4, 5, 6, 3], 41);
        let (h, w) = (13, 17);
        let masked = LossLayers { masks: tiny_masks(h, w), ..tiny_losses("relu1_2") };
        for (variant, losses) in [
            ("max pools", masked.clone()),
            ("avg pools", LossLayers { pooling: Pooling::Avg, ..masked.clone() }),
            ("normalized gradients", LossLayers { normalize_gradients: true, ..masked.clone() }),
        ] {
            let mut case = build(&ctx, &tiny_table(), &weights, (h, w), &losses, 42);
            let plan = &case.reference.plan;
            // relu1_1: three regions; relu2_1 and relu3_1 (after pools): the last row is gone.
            let regions: Vec<(String, usize)> =
                plan.style.iter().map(|t| (t.layer.clone(), t.mask.as_ref().unwrap().region)).collect();
            let expected: Vec<(String, usize)> = [
                ("relu1_1", 0),
                ("relu1_1", 1),
                ("relu1_1", 2),
                ("relu2_1", 0),
                ("relu2_1", 1),
                ("relu3_1", 0),
                ("relu3_1", 1),
            ]
            .iter()
            .map(|&(l, r)| (l.to_string(), r))
            .collect();
            assert_eq!(regions, expected);
            // Three different style images, one per region; the GPU gets the reference's targets.
            let mut rng = Rng::new(43);
            let styles: Vec<Vec<f64>> = (0..3).map(|_| rng.vec(3 * h * w, -2.0, 2.0)).collect();
            let content = case.targets.content.clone();
            case.targets = case.reference.targets_per_region(&rng.vec(3 * h * w, -2.0, 2.0), &styles);
            case.targets.content = content;
            let grams: Vec<Vec<f32>> = case.targets.style_grams.iter().map(|g| to_f32(g)).collect();
            case.executor.set_style_grams(&ctx, &grams).unwrap();
            check_step_against_reference(
                &mut case,
                &ctx,
                &format!("tiny network with masks, {variant} ({grid})"),
                1e-4,
            );
            // The guided terms differ from the plain ones.
            let plain = build(&ctx, &tiny_table(), &weights, (h, w), &tiny_losses("relu1_2"), 42);
            let (plain_losses, _) = plain.reference.loss_and_grad(&plain.image, &plain.targets);
            let (masked_losses, _) = case.reference.loss_and_grad(&case.image, &case.targets);
            assert!((masked_losses.style - plain_losses.style).abs() > 1e-3 * plain_losses.style);
        }
    }
}

/// One all-white mask is exactly the original method, in the reference and on the GPU.
#[test]
fn gpu_white_mask_is_the_unmasked_method() {
    for (grid, ctx) in contexts("gpu_white_mask_is_the_unmasked_method") {
        let weights = random_weights(&[4, 5, 6, 3], 44);
        let (h, w) = (13, 17);
        let white = LossLayers { masks: vec![vec![1.0; h * w]], ..tiny_losses("relu1_2") };
        let mut masked = build(&ctx, &tiny_table(), &weights, (h, w), &white, 45);
        let mut plain = build(&ctx, &tiny_table(), &weights, (h, w), &tiny_losses("relu1_2"), 45);
        assert!(masked.reference.plan.style.iter().all(|t| t.mask.as_ref().is_some_and(|m| m.coverage == 1.0)));
        let (a, ga) = masked.reference.loss_and_grad(&masked.image, &masked.targets);
        let (b, gb) = plain.reference.loss_and_grad(&plain.image, &plain.targets);
        assert!((a.total - b.total).abs() <= 1e-12 * b.total && stylize::test_support::rel_err_f64(&ga, &gb) < 1e-12);
        masked.executor.training_step().run(&ctx).unwrap();
        plain.executor.training_step().run(&ctx).unwrap();
        let (la, lb) = (masked.executor.read_losses(&ctx).unwrap(), plain.executor.read_losses(&ctx).unwrap());
        assert_close(&format!("white mask: total ({grid})"), &[la.total as f32], &[lb.total], 1e-6);
        let gb: Vec<f64> = to_f64(&plain.executor.read_image_grad(&ctx).unwrap());
        assert_close(
            &format!("white mask: gradient ({grid})"),
            &masked.executor.read_image_grad(&ctx).unwrap(),
            &gb,
            1e-6,
        );
    }
}

/// The W2 loss with masks (`ops::w2`'s weighted moments): one term per (layer, region), each
/// region's target the plain moments of its own style image (given to the GPU as Grams and row
/// means, `set_style_moments`, as `style_grams::per_region_moments` gives them); the loss terms
/// and the image gradient against the f64 method, plain and with normalized gradients.
#[test]
fn gpu_w2_network_with_masks_matches_reference() {
    for (grid, ctx) in contexts("gpu_w2_network_with_masks_matches_reference") {
        let weights = random_weights(&[4, 5, 6, 3], 46);
        let (h, w) = (13, 17);
        let masked = LossLayers {
            style_loss: stylize::StyleLoss::W2,
            style_weight: 10.0,
            masks: tiny_masks(h, w),
            ..tiny_losses("relu1_2")
        };
        for (variant, losses) in
            [("w2", masked.clone()), ("w2, normalized gradients", LossLayers { normalize_gradients: true, ..masked })]
        {
            let mut case = build(&ctx, &tiny_table(), &weights, (h, w), &losses, 47);
            assert_eq!(case.reference.plan.style.len(), 7, "three regions at relu1_1, two below");
            let mut rng = Rng::new(48);
            let styles: Vec<Vec<f64>> = (0..3).map(|_| rng.vec(3 * h * w, -2.0, 2.0)).collect();
            let content = case.targets.content.clone();
            case.targets = case.reference.targets_per_region(&rng.vec(3 * h * w, -2.0, 2.0), &styles);
            case.targets.content = content;
            assert_eq!(case.targets.style_w2.len(), 7);
            let (grams, means) = region_moments(&case.reference, &styles);
            case.executor.set_style_moments(&ctx, &grams, &means).unwrap();
            check_step_against_reference(&mut case, &ctx, &format!("tiny network, masked {variant} ({grid})"), 1e-4);
            // Each weighted term differs from the unweighted one against the same target.
            let acts = case.reference.forward(&case.image);
            for (term, target) in case.reference.plan.style.iter().zip(&case.targets.style_w2) {
                let columns = stylize::ops::gram::mask_column_weights(&term.mask.as_ref().unwrap().values).1;
                let weighted = stylize::ops::w2::reference::loss_weighted(&acts[term.act], &columns, target);
                let plain = stylize::ops::w2::reference::loss(&acts[term.act], target);
                assert!((weighted - plain).abs() > 1e-3 * plain, "{}: {weighted} vs {plain}", term.layer);
            }
        }
    }
}

/// Per style term of a masked plan, the Gram (S N) and row means of its region's style image's
/// features, in f64 and narrowed to f32 for `set_style_moments`.
fn region_moments(reference: &Reference, styles: &[Vec<f64>]) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let plan = &reference.plan;
    let acts: Vec<Vec<Vec<f64>>> = styles.iter().map(|s| reference.forward(s)).collect();
    plan.style
        .iter()
        .map(|t| {
            let region = t.mask.as_ref().unwrap().region;
            let shape = plan.acts[t.act];
            let (mean, srm) = stylize::ops::w2::reference::moments(&acts[region][t.act], shape.channels);
            let n = (shape.height * shape.width) as f64;
            (srm.iter().map(|v| (v * n) as f32).collect(), to_f32(&mean))
        })
        .unzip()
}

/// With the W2 loss too, one all-white mask is exactly the unmasked method (w = 1 at every
/// position), in the reference and on the GPU.
#[test]
fn gpu_w2_white_mask_is_the_unmasked_w2() {
    for (grid, ctx) in contexts("gpu_w2_white_mask_is_the_unmasked_w2") {
        let weights = random_weights(&[4, 5, 6, 3], 49);
        let (h, w) = (13, 17);
        let w2 = LossLayers { style_loss: stylize::StyleLoss::W2, style_weight: 10.0, ..tiny_losses("relu1_2") };
        let white = LossLayers { masks: vec![vec![1.0; h * w]], ..w2.clone() };
        let mut masked = build(&ctx, &tiny_table(), &weights, (h, w), &white, 50);
        let mut plain = build(&ctx, &tiny_table(), &weights, (h, w), &w2, 50);
        assert!(masked.reference.plan.style.iter().all(|t| t.mask.as_ref().is_some_and(|m| m.coverage == 1.0)));
        let (a, ga) = masked.reference.loss_and_grad(&masked.image, &masked.targets);
        let (b, gb) = plain.reference.loss_and_grad(&plain.image, &plain.targets);
        assert!((a.total - b.total).abs() <= 1e-12 * b.total && stylize::test_support::rel_err_f64(&ga, &gb) < 1e-12);
        masked.executor.training_step().run(&ctx).unwrap();
        plain.executor.training_step().run(&ctx).unwrap();
        let (la, lb) = (masked.executor.read_losses(&ctx).unwrap(), plain.executor.read_losses(&ctx).unwrap());
        let terms = |l: &stylize::net::Losses| l.style_terms.iter().map(|&v| v as f32).collect::<Vec<f32>>();
        assert_close(&format!("w2 white mask: style terms ({grid})"), &terms(&la), &to_f64(&terms(&lb)), 1e-6);
        assert_close(&format!("w2 white mask: total ({grid})"), &[la.total as f32], &[lb.total], 1e-6);
        let gb: Vec<f64> = to_f64(&plain.executor.read_image_grad(&ctx).unwrap());
        let ga = masked.executor.read_image_grad(&ctx).unwrap();
        eprintln!("w2 white mask ({grid}): gradient {:.2e} from the unmasked", rel_err(&ga, &gb));
        assert_close(&format!("w2 white mask: gradient ({grid})"), &ga, &gb, 1e-6);
    }
}

/// The total-variation term (`--tv-weight`) in the GPU schedule against the reference.
#[test]
fn gpu_composed_network_with_tv_matches_reference() {
    for (grid, ctx) in contexts("gpu_composed_network_with_tv_matches_reference") {
        let weights = random_weights(&[4, 5, 6, 3], 21);
        let losses = LossLayers { tv_weight: 0.05, ..tiny_losses("relu1_2") };
        let mut case = build(&ctx, &tiny_table(), &weights, (13, 17), &losses, 22);
        check_step_against_reference(&mut case, &ctx, &format!("tiny network with TV ({grid})"), 1e-4);
        let got = case.executor.read_losses(&ctx).unwrap();
        assert!(got.tv > 0.0, "the TV slot is filled: {got:?}");
    }
}

/// Average pooling (`--pooling avg`) in the GPU schedule against the reference.
#[test]
fn gpu_composed_network_with_avg_pooling_matches_reference() {
    for (grid, ctx) in contexts("gpu_composed_network_with_avg_pooling_matches_reference") {
        for content_layer in ["relu3_1", "conv1_2"] {
            let weights = random_weights(&[4, 5, 6, 3], 21);
            let losses = LossLayers { pooling: Pooling::Avg, ..tiny_losses(content_layer) };
            let plan_nodes =
                Plan::new(&tiny_table(), &[(3, 4), (4, 5), (5, 6), (6, 3)], 13, 17, &losses).unwrap().nodes;
            assert!(plan_nodes.iter().any(|n| matches!(n, Node::AvgPool { .. })));
            assert!(!plan_nodes.iter().any(|n| matches!(n, Node::MaxPool { .. })));
            let mut case = build(&ctx, &tiny_table(), &weights, (13, 17), &losses, 22);
            check_step_against_reference(
                &mut case,
                &ctx,
                &format!("tiny network, avg pooling, content {content_layer} ({grid})"),
                1e-4,
            );
        }
    }
}

/// (L(x + h d) - L(x - h d)) / 2h on the GPU agrees with <grad L, d> from the GPU backward.
#[test]
fn gpu_directional_derivative_matches_gradient() {
    let Some(ctx) = gpu_or_skip("gpu_directional_derivative_matches_gradient") else {
        return;
    };
    let weights = random_weights(&[4, 5, 6, 3], 23);
    let mut case = build(&ctx, &tiny_table(), &weights, (13, 17), &tiny_losses("relu1_2"), 24);
    let mut rng = Rng::new(25);
    let direction = rng.vec(case.image.len(), -1.0, 1.0);
    case.executor.training_step().run(&ctx).unwrap();
    let grad = to_f64(&case.executor.read_image_grad(&ctx).unwrap());
    let analytic: f64 = grad.iter().zip(&direction).map(|(g, d)| g * d).sum();
    let h = 1e-3;
    let mut loss_at = |t: f64| {
        let probe: Vec<f32> = case.image.iter().zip(&direction).map(|(x, d)| (x + t * d) as f32).collect();
        case.executor.set_normalized_image(&ctx, &probe).unwrap();
        case.executor.training_step().run(&ctx).unwrap();
        case.executor.read_losses(&ctx).unwrap().total
    };
    let numeric = (loss_at(h) - loss_at(-h)) / (2.0 * h);
    let err = (numeric - analytic).abs() / analytic.abs();
    assert!(analytic.abs() > 1e-3, "degenerate direction");
    assert!(err < 1e-2, "directional derivative {numeric} vs gradient {analytic}: relative error {err:e}");
}

fn run_adam(case: &mut Case, ctx: &stylize::gpu::Context, steps: usize, config: AdamConfig) -> (Vec<f64>, Vec<f64>) {
    let len = case.executor.image_len();
    let (mut gpu_adam, kernel) =
        Adam::new(ctx, len, case.executor.image_buffer(), case.executor.image_grad_buffer(), config).unwrap();
    let adam_index = case.executor.training_step().push(kernel);
    let mut gpu_losses = Vec::new();
    for _ in 0..steps {
        gpu_adam.advance(ctx, case.executor.training_step().kernel(adam_index));
        case.executor.training_step().run(ctx).unwrap();
        gpu_losses.push(case.executor.read_losses(ctx).unwrap().total);
    }
    let mut image = case.image.clone();
    let mut state = adam::reference::AdamState::new(len);
    let mut reference_losses = Vec::new();
    for _ in 0..steps {
        let (losses, grad) = case.reference.loss_and_grad(&image, &case.targets);
        reference_losses.push(losses.total);
        adam::reference::step(config, &mut state, &mut image, &grad);
    }
    (gpu_losses, reference_losses)
}

#[test]
fn gpu_adam_trajectory_on_tiny_network_matches_reference() {
    let Some(ctx) = gpu_or_skip("gpu_adam_trajectory_on_tiny_network_matches_reference") else {
        return;
    };
    let weights = random_weights(&[4, 5, 6, 3], 26);
    let mut case = build(&ctx, &tiny_table(), &weights, (13, 17), &tiny_losses("relu1_2"), 27);
    let (gpu, reference) = run_adam(&mut case, &ctx, 10, AdamConfig::new(0.05));
    assert!(reference[9] < reference[0], "the loss should fall: {reference:?}");
    assert_close("10 Adam steps, losses", &to_f32(&gpu), &reference, 1e-3);
}

/// The whole method (VGG-19 to relu5_1, default layers and weights) at channels / 8 on a 24 x 20
/// image: one step's losses and image gradient, then a 10-step Adam trajectory.
#[test]
fn gpu_reduced_vgg19_step_and_trajectory_match_reference() {
    let Some(ctx) = gpu_or_skip("gpu_reduced_vgg19_step_and_trajectory_match_reference") else {
        return;
    };
    let widths: Vec<usize> = VGG19_WIDTHS.iter().map(|w| w / 8).collect();
    let weights = random_weights(&widths, 28);
    let mut case = build(&ctx, &VGG19, &weights, (20, 24), &LossLayers::default(), 29);
    check_step_against_reference(&mut case, &ctx, "VGG-19 / 8", 1e-4);
    let (gpu, reference) = run_adam(&mut case, &ctx, 10, AdamConfig::new(0.003));
    assert!(reference[9] < reference[0], "the loss should fall: {reference:?}");
    assert_close("VGG-19 / 8, 10 Adam steps, losses", &to_f32(&gpu), &reference, 1e-3);
}

/// L-BFGS (one iteration per step, as neural-style runs it) on the tiny network: the GPU optimizer
/// fed by the GPU gradient against the f64 reference optimizer fed by the reference gradient.
#[test]
fn gpu_lbfgs_trajectory_on_tiny_network_matches_reference() {
    use stylize::optim::lbfgs::reference::{self as lbfgs_reference, LbfgsState};
    use stylize::optim::{Lbfgs, LbfgsConfig};
    let Some(ctx) = gpu_or_skip("gpu_lbfgs_trajectory_on_tiny_network_matches_reference") else {
        return;
    };
    let weights = random_weights(&[4, 5, 6, 3], 30);
    let mut case = build(&ctx, &tiny_table(), &weights, (13, 17), &tiny_losses("relu1_2"), 31);
    let config = LbfgsConfig { history: 5, ..LbfgsConfig::new(1.0) };
    let len = case.executor.image_len();
    let mut lbfgs =
        Lbfgs::new(&ctx, len, case.executor.image_buffer(), case.executor.image_grad_buffer(), config).unwrap();
    let steps = 10;
    let mut gpu = Vec::new();
    for _ in 0..steps {
        case.executor.training_step().run(&ctx).unwrap();
        gpu.push(case.executor.read_losses(&ctx).unwrap().total);
        lbfgs.step(&ctx).unwrap();
    }
    let mut image = case.image.clone();
    let mut state = LbfgsState::default();
    let reference: Vec<f64> = (0..steps)
        .map(|_| {
            lbfgs_reference::step(config, 1, &mut state, &mut image, |x| {
                let (losses, grad) = case.reference.loss_and_grad(x, &case.targets);
                (losses.total, grad)
            })
        })
        .collect();
    assert!(reference[steps - 1] < 0.5 * reference[0], "the loss should fall: {reference:?}");
    assert_close("10 L-BFGS steps, losses", &to_f32(&gpu), &reference, 1e-3);
}

/// neural-style's -normalize_gradients: every term's feature gradient divided by its L1 norm,
/// then weighted; on the GPU (norms and reciprocals kept on the device) against the f64 reference.
#[test]
fn gpu_composed_network_with_normalized_gradients_matches_reference() {
    for (grid, ctx) in contexts("gpu_composed_network_with_normalized_gradients_matches_reference") {
        let weights = random_weights(&[4, 5, 6, 3], 31);
        let losses = LossLayers { normalize_gradients: true, ..tiny_losses("relu1_2") };
        let mut case = build(&ctx, &tiny_table(), &weights, (13, 17), &losses, 32);
        check_step_against_reference(&mut case, &ctx, &format!("tiny network, normalized gradients ({grid})"), 1e-4);
        // The normalization changes the gradient: it is not the plain one.
        let plain = build(&ctx, &tiny_table(), &weights, (13, 17), &tiny_losses("relu1_2"), 32);
        let (_, plain_grad) = plain.reference.loss_and_grad(&plain.image, &plain.targets);
        let (_, normalized_grad) = case.reference.loss_and_grad(&case.image, &case.targets);
        assert!(stylize::test_support::rel_err_f64(&normalized_grad, &plain_grad) > 0.1);
    }
}

/// Every buffer the executor allocates (its own and its recorded steps') is what the plan counts
/// (`Plan::gpu_bytes`), in each configuration that changes what it allocates; and VGG-19 at
/// 512 x 512, built with its full widths (not stepped: a step takes minutes on a CPU adapter),
/// holds at most 360 MiB with Adam's two moments (0.6 x PyTorch's 714.4 MiB is 428.6 MiB).
#[test]
fn gpu_executor_allocates_what_the_plan_counts() {
    let Some(ctx) = gpu_or_skip("gpu_executor_allocates_what_the_plan_counts") else {
        return;
    };
    let weights = random_weights(&[4, 5, 6, 3], 33);
    let widths: Vec<(usize, usize)> = weights.iter().map(|c| (c.in_channels, c.out_channels)).collect();
    for losses in [
        tiny_losses("relu1_2"),
        tiny_losses("conv1_2"),
        LossLayers { tv_weight: 0.05, ..tiny_losses("relu3_1") },
        LossLayers { normalize_gradients: true, ..tiny_losses("conv1_2") },
        LossLayers { pooling: Pooling::Avg, ..tiny_losses("relu1_2") },
        LossLayers { style: vec![], ..tiny_losses("relu2_1") },
        LossLayers { masks: tiny_masks(13, 17), ..tiny_losses("relu1_2") },
        LossLayers { padding: Padding::Replicate, ..tiny_losses("relu1_2") },
    ] {
        let plan = Plan::new(&tiny_table(), &widths, 13, 17, &losses).unwrap();
        let executor = Executor::new(&ctx, plan.clone(), &weights).unwrap();
        assert_eq!(executor.allocated_bytes(), plan.gpu_bytes().total(), "{losses:?}");
    }
    let weights = random_weights(&VGG19_WIDTHS, 34);
    let widths: Vec<(usize, usize)> = weights.iter().map(|c| (c.in_channels, c.out_channels)).collect();
    let plan = Plan::new(&VGG19, &widths, 512, 512, &LossLayers::default()).unwrap();
    let executor = Executor::new(&ctx, plan.clone(), &weights).unwrap();
    let bytes = executor.allocated_bytes();
    assert_eq!(bytes, plan.gpu_bytes().total());
    let adam = 2 * 4 * executor.image_len() as u64;
    let mib = (bytes + adam) as f64 / (1u64 << 20) as f64;
    assert!(mib <= 360.0, "VGG-19 at 512 x 512 holds {mib:.1} MiB: {:?}", plan.gpu_bytes());
}
