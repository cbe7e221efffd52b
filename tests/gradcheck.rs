//! Every backward pass against central finite differences of its forward, in f64 on the CPU
//! references. Each test builds a scalar L = <r, f(x)> (or the loss itself) and compares the
//! analytic gradient with (L(x + h e_i) - L(x - h e_i)) / 2h for every input i.

use stylize::net::reference::Reference;
use stylize::net::{LossLayers, Padding, Plan, Pooling, random_weights};
use stylize::ops::ActShape;
use stylize::ops::conv::{self, ConvShape};
use stylize::ops::gram::{self, GramShape};
use stylize::ops::{loss, pool, relu, tv};
use stylize::rng::Rng;
use stylize::test_support::{rel_err_f64, tiny_table};

const H: f64 = 1e-5;
const TOL: f64 = 1e-6;

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn finite_differences(x: &[f64], f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let mut probe = x.to_vec();
    (0..x.len())
        .map(|i| {
            probe[i] = x[i] + H;
            let up = f(&probe);
            probe[i] = x[i] - H;
            let down = f(&probe);
            probe[i] = x[i];
            (up - down) / (2.0 * H)
        })
        .collect()
}

fn assert_gradcheck(what: &str, analytic: &[f64], numeric: &[f64]) {
    assert!(numeric.iter().any(|&v| v.abs() > 1e-3), "{what}: degenerate check, the gradient is ~0");
    let err = rel_err_f64(analytic, numeric);
    assert!(err <= TOL, "{what}: relative error {err:e} > {TOL:e}");
}

#[test]
fn gradcheck_conv_input() {
    let mut rng = Rng::new(11);
    let shape = ConvShape { in_channels: 3, out_channels: 4, height: 5, width: 7 };
    let x = rng.vec(shape.input_len(), -1.0, 1.0);
    let w = rng.vec(shape.weight_len(), -1.0, 1.0);
    let b = rng.vec(shape.out_channels, -1.0, 1.0);
    let r = rng.vec(shape.output_len(), -1.0, 1.0);
    let numeric = finite_differences(&x, |x| dot(&r, &conv::reference::forward(shape, x, &w, &b)));
    assert_gradcheck("conv input gradient", &conv::reference::backward_input(shape, &r, &w), &numeric);
}

#[test]
fn gradcheck_relu() {
    let mut rng = Rng::new(12);
    // Points kept away from 0, where ReLU is not differentiable.
    let x: Vec<f64> = rng.vec(200, 0.05, 1.0).into_iter().map(|v| if rng.uniform() < 0.5 { -v } else { v }).collect();
    let r = rng.vec(x.len(), -1.0, 1.0);
    let numeric = finite_differences(&x, |x| dot(&r, &relu::reference::forward(x)));
    assert_gradcheck("relu", &relu::reference::backward(&x, &r), &numeric);
}

#[test]
fn gradcheck_maxpool() {
    let mut rng = Rng::new(13);
    let shape = ActShape { channels: 3, height: 7, width: 9 };
    // Distinct values spaced well beyond H, so no tie and no arg-max change under the probe.
    let mut x: Vec<f64> = (0..shape.input_len()).map(|i| i as f64 * 0.01).collect();
    for i in (1..x.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        x.swap(i, j);
    }
    let r = rng.vec(shape.output_len(), -1.0, 1.0);
    let numeric = finite_differences(&x, |x| dot(&r, &pool::reference::forward(shape, x)));
    assert_gradcheck("maxpool", &pool::reference::backward(shape, &x, &r), &numeric);
}

#[test]
fn gradcheck_gram() {
    let mut rng = Rng::new(14);
    let shape = GramShape { channels: 5, n: 13 };
    let f = rng.vec(shape.features_len(), -1.0, 1.0);
    // An asymmetric weighting, so both dG and dG^T matter.
    let r = rng.vec(shape.gram_len(), -1.0, 1.0);
    let numeric = finite_differences(&f, |f| dot(&r, &gram::reference::forward(shape, f)));
    assert_gradcheck("gram", &gram::reference::backward(shape, &f, &r), &numeric);
}

/// The guided Gram F diag(T^2) F^T / a (Gatys et al. 2017) and the masked style term
/// a * mean((G^ - S)^2) / (C N) on a mask with zeros, ones and values between.
#[test]
fn gradcheck_masked_gram() {
    let mut rng = Rng::new(41);
    let shape = GramShape { channels: 5, n: 13 };
    let f = rng.vec(shape.features_len(), -1.0, 1.0);
    let mask: Vec<f64> = (0..shape.n).map(|p| [0.0, 1.0, rng.uniform()][p % 3]).collect();
    let r = rng.vec(shape.gram_len(), -1.0, 1.0);
    let numeric = finite_differences(&f, |f| dot(&r, &gram::reference::forward_masked(shape, f, &mask)));
    assert_gradcheck("masked gram", &gram::reference::backward_masked(shape, &f, &mask, &r), &numeric);

    let style = gram::reference::forward(shape, &rng.vec(shape.features_len(), -1.0, 1.0));
    let (coverage, _) = gram::mask_column_weights(&mask);
    let scale = coverage * loss::style_scale(0.75, 5, 1, 13) * 1e3;
    let term = |f: &[f64]| loss::reference::sq_diff(&gram::reference::forward_masked(shape, f, &mask), &style, scale);
    let numeric = finite_differences(&f, term);
    let grad_gram =
        loss::reference::sq_diff_backward(&gram::reference::forward_masked(shape, &f, &mask), &style, scale);
    assert_gradcheck("masked style loss", &gram::reference::backward_masked(shape, &f, &mask, &grad_gram), &numeric);
}

/// An all-white mask gives exactly the plain Gram; a mask of zeros gives nothing.
#[test]
fn masked_gram_of_white_mask_is_the_plain_gram() {
    let mut rng = Rng::new(42);
    let shape = GramShape { channels: 4, n: 11 };
    let f = rng.vec(shape.features_len(), -1.0, 1.0);
    let plain = gram::reference::forward(shape, &f);
    let white = gram::reference::forward_masked(shape, &f, &vec![1.0; shape.n]);
    assert!(rel_err_f64(&white, &plain) < 1e-14);
    assert_eq!(gram::mask_column_weights(&vec![1.0; shape.n]).1, vec![1.0; shape.n]);
    let (coverage, w) = gram::mask_column_weights(&vec![0.0; shape.n]);
    assert!(coverage == 0.0 && w.iter().all(|&v| v == 0.0));
    assert!(gram::reference::forward_masked(shape, &f, &vec![0.0; shape.n]).iter().all(|&v| v == 0.0));
}

#[test]
fn gradcheck_content_loss() {
    let mut rng = Rng::new(15);
    let a = rng.vec(60, -1.0, 1.0);
    let b = rng.vec(60, -1.0, 1.0);
    let scale = 1.0 / 60.0;
    let numeric = finite_differences(&a, |a| loss::reference::sq_diff(a, &b, scale));
    assert_gradcheck("content loss", &loss::reference::sq_diff_backward(&a, &b, scale), &numeric);
}

#[test]
fn gradcheck_masked_loss() {
    let mut rng = Rng::new(151);
    let a = rng.vec(60, -1.0, 1.0);
    let b = rng.vec(60, -1.0, 1.0);
    let m: Vec<f64> = (0..60).map(|i| if i % 4 == 0 { 0.0 } else { rng.uniform() }).collect();
    let scale = 0.6 / 60.0;
    let numeric = finite_differences(&a, |a| loss::reference::masked_sq_diff(a, &b, &m, scale));
    assert_gradcheck("masked loss", &loss::reference::masked_sq_diff_backward(&a, &b, &m, scale), &numeric);
}

#[test]
fn gradcheck_style_loss() {
    let mut rng = Rng::new(16);
    let shape = GramShape { channels: 4, n: 3 * 5 };
    let f = rng.vec(shape.features_len(), -1.0, 1.0);
    let style = gram::reference::forward(shape, &rng.vec(shape.features_len(), -1.0, 1.0));
    // The method's style term at the features: 0.75 * mean((G - S)^2) / (C H W), times beta-sized scale.
    let scale = loss::style_scale(0.75, 4, 3, 5) * 1e3;
    let term = |f: &[f64]| loss::reference::sq_diff(&gram::reference::forward(shape, f), &style, scale);
    let numeric = finite_differences(&f, term);
    let grad_gram = loss::reference::sq_diff_backward(&gram::reference::forward(shape, &f), &style, scale);
    assert_gradcheck("style loss", &gram::reference::backward(shape, &f, &grad_gram), &numeric);
}

fn gradcheck_network(content_layer: &str) {
    gradcheck_network_with(content_layer, Pooling::Max, 0.0);
}

fn gradcheck_network_with(content_layer: &str, pooling: Pooling, tv_weight: f64) {
    gradcheck_network_padded(content_layer, pooling, tv_weight, Padding::Zeros);
}

/// The whole method with the first convolution padding by replicated edges (crowsonkb's): the
/// backward folds the border's gradient onto the edge pixels.
#[test]
fn gradcheck_composed_network_with_replicate_padding() {
    gradcheck_network_padded("relu1_2", Pooling::Max, 0.0, Padding::Replicate);
    gradcheck_network_padded("relu3_1", Pooling::Avg, 0.0, Padding::Replicate);
}

fn gradcheck_network_padded(content_layer: &str, pooling: Pooling, tv_weight: f64, padding: Padding) {
    let widths = [4, 5, 6, 3];
    let weights = random_weights(&widths, 17);
    let conv_widths: Vec<(usize, usize)> = weights.iter().map(|w| (w.in_channels, w.out_channels)).collect();
    let losses = LossLayers {
        content: vec![content_layer.to_string()],
        style: vec![("relu1_1".into(), 1.0), ("relu2_1".into(), 0.75), ("relu3_1".into(), 0.2)],
        content_weight: 1.0,
        style_weight: 1e3,
        tv_weight,
        pooling,
        normalize_gradients: false,
        masks: Vec::new(),
        input: Default::default(),
        gram_norm: Default::default(),
        style_loss: Default::default(),
        tv_loss: Default::default(),
        padding,
    };
    let (h, w) = (9, 11);
    let plan = Plan::new(&tiny_table(), &conv_widths, h, w, &losses).unwrap();
    let reference = Reference::new(plan, &weights);
    let mut rng = Rng::new(18);
    let content = rng.vec(3 * h * w, -2.0, 2.0);
    let style = rng.vec(3 * h * w, -2.0, 2.0);
    let targets = reference.targets(&content, &style);
    let image = rng.vec(3 * h * w, -2.0, 2.0);
    let (losses, grad) = reference.loss_and_grad(&image, &targets);
    assert!(losses.content > 0.0 && losses.style > 0.0);
    let numeric = finite_differences(&image, |x| reference.losses(x, &targets).total);
    assert_gradcheck(
        &format!("network with content at {content_layer}, {pooling:?} pooling, TV {tv_weight}, {padding:?} padding"),
        &grad,
        &numeric,
    );
}

/// The whole method with two masked styles (guided Grams at every style layer, masks pooled
/// with the network) against finite differences of its loss, with max and with average pools.
#[test]
fn gradcheck_composed_network_with_masks() {
    let widths = [4, 5, 6, 3];
    let weights = random_weights(&widths, 43);
    let conv_widths: Vec<(usize, usize)> = weights.iter().map(|w| (w.in_channels, w.out_channels)).collect();
    let (h, w) = (9, 11);
    let mut rng = Rng::new(44);
    let left: Vec<f32> = (0..h * w).map(|i| if i % w < 5 { 1.0 } else { rng.uniform() as f32 * 0.3 }).collect();
    let right: Vec<f32> = left.iter().map(|v| 1.0 - v).collect();
    for pooling in [Pooling::Max, Pooling::Avg] {
        let losses = LossLayers {
            content: vec!["relu1_2".into()],
            style: vec![("relu1_1".into(), 1.0), ("relu2_1".into(), 0.75), ("relu3_1".into(), 0.2)],
            style_weight: 1e3,
            pooling,
            masks: vec![left.clone(), right.clone()],
            ..LossLayers::default()
        };
        let plan = Plan::new(&tiny_table(), &conv_widths, h, w, &losses).unwrap();
        assert_eq!(plan.style.len(), 6);
        let reference = Reference::new(plan, &weights);
        let content = rng.vec(3 * h * w, -2.0, 2.0);
        let styles = vec![rng.vec(3 * h * w, -2.0, 2.0), rng.vec(3 * h * w, -2.0, 2.0)];
        let targets = reference.targets_per_region(&content, &styles);
        let image = rng.vec(3 * h * w, -2.0, 2.0);
        let (losses, grad) = reference.loss_and_grad(&image, &targets);
        assert!(losses.content > 0.0 && losses.style > 0.0);
        let numeric = finite_differences(&image, |x| reference.losses(x, &targets).total);
        assert_gradcheck(&format!("network with two masked styles, {pooling:?} pooling"), &grad, &numeric);
    }
}

#[test]
fn gradcheck_composed_network_with_avg_pooling() {
    gradcheck_network_with("relu3_1", Pooling::Avg, 0.0);
}

#[test]
fn gradcheck_composed_network_with_tv() {
    gradcheck_network_with("relu1_2", Pooling::Max, 0.1);
}

#[test]
fn gradcheck_composed_network_loss_wrt_image() {
    gradcheck_network("relu1_2");
}

#[test]
fn gradcheck_composed_network_with_pre_relu_content_layer() {
    gradcheck_network("conv1_2");
}

/// crowsonkb's nine-point TV: the reference's backward (the padding's gradient folded onto the
/// edges) against finite differences of its forward, also on one-row and one-column images.
#[test]
fn gradcheck_nine_point_total_variation() {
    use stylize::ops::tv::nine_point;
    let mut rng = Rng::new(23);
    for (c, h, w) in [(3, 5, 7), (2, 1, 6), (1, 6, 2), (1, 1, 1)] {
        let shape = ActShape { channels: c, height: h, width: w };
        let x = rng.vec(shape.len(), -1.0, 1.0);
        let factors: Vec<f64> = (0..c).map(|i| 1.0 + 0.3 * i as f64).collect();
        let numeric = finite_differences(&x, |x| nine_point::reference::forward(shape, x, 2.0, &factors));
        let analytic = nine_point::reference::backward(shape, &x, 2.0, &factors);
        if shape.len() == 1 {
            assert!(analytic[0] == 0.0 && numeric[0].abs() < 1e-9, "one pixel has no difference");
        } else {
            assert_gradcheck(&format!("nine-point total variation {shape:?}"), &analytic, &numeric);
        }
    }
}

#[test]
fn gradcheck_total_variation() {
    let mut rng = Rng::new(19);
    for (c, h, w) in [(3, 5, 7), (2, 1, 6), (1, 6, 2)] {
        let shape = ActShape { channels: c, height: h, width: w };
        let x = rng.vec(shape.len(), -1.0, 1.0);
        let scale = 0.37;
        let numeric = finite_differences(&x, |x| tv::reference::forward(shape, x, scale));
        let analytic = tv::reference::backward(shape, &x, scale);
        if h == 1 || w == 1 {
            // No term: the regularizer and its gradient vanish.
            assert_eq!(tv::reference::forward(shape, &x, scale), 0.0);
            assert!(analytic.iter().all(|&g| g == 0.0) && numeric.iter().all(|&g| g == 0.0));
        } else {
            assert_gradcheck(&format!("total variation {shape:?}"), &analytic, &numeric);
        }
    }
}

#[test]
fn gradcheck_avgpool() {
    let mut rng = Rng::new(20);
    for (c, h, w) in [(3, 7, 9), (2, 6, 4)] {
        let shape = ActShape { channels: c, height: h, width: w };
        let x = rng.vec(shape.input_len(), -1.0, 1.0);
        let r = rng.vec(shape.output_len(), -1.0, 1.0);
        let numeric = finite_differences(&x, |x| dot(&r, &pool::reference::avg_forward(shape, x)));
        assert_gradcheck(&format!("avgpool {shape:?}"), &pool::reference::avg_backward(shape, &r), &numeric);
    }
}

/// The whole method with the W2 style loss (`ops::w2`) at every style layer, also with normalized
/// gradients, against finite differences of its loss.
#[test]
fn gradcheck_composed_network_with_the_w2_style_loss() {
    let weights = random_weights(&[4, 5, 6, 3], 47);
    let conv_widths: Vec<(usize, usize)> = weights.iter().map(|w| (w.in_channels, w.out_channels)).collect();
    let (h, w) = (9, 11);
    let mut rng = Rng::new(48);
    for normalize_gradients in [false, true] {
        let losses = LossLayers {
            content: vec!["relu1_2".into()],
            style: vec![("relu1_1".into(), 1.0), ("relu2_1".into(), 0.75), ("relu3_1".into(), 0.2)],
            style_weight: 10.0,
            style_loss: stylize::StyleLoss::W2,
            normalize_gradients,
            ..LossLayers::default()
        };
        let plan = Plan::new(&tiny_table(), &conv_widths, h, w, &losses).unwrap();
        let reference = Reference::new(plan, &weights);
        let content = rng.vec(3 * h * w, -2.0, 2.0);
        let style = rng.vec(3 * h * w, -2.0, 2.0);
        let targets = reference.targets(&content, &style);
        assert_eq!(targets.style_w2.len(), 3);
        let image = rng.vec(3 * h * w, -2.0, 2.0);
        let (losses, grad) = reference.loss_and_grad(&image, &targets);
        assert!(losses.content > 0.0 && losses.style > 0.0);
        if normalize_gradients {
            // Not the gradient of the loss (each term is rescaled by its own norm): only the
            // GPU comparison (tests/network.rs) covers it.
            continue;
        }
        let numeric = finite_differences(&image, |x| reference.losses(x, &targets).total);
        assert_gradcheck("network with the W2 style loss", &grad, &numeric);
    }
}

/// The whole method with two masked styles and the W2 style loss (each region's weighted mean and
/// covariance, masks pooled with the network) against finite differences of its loss.
#[test]
fn gradcheck_composed_network_with_masked_w2() {
    let weights = random_weights(&[4, 5, 6, 3], 49);
    let conv_widths: Vec<(usize, usize)> = weights.iter().map(|w| (w.in_channels, w.out_channels)).collect();
    let (h, w) = (9, 11);
    let mut rng = Rng::new(50);
    let left: Vec<f32> = (0..h * w).map(|i| if i % w < 5 { 1.0 } else { rng.uniform() as f32 * 0.3 }).collect();
    let right: Vec<f32> = left.iter().map(|v| 1.0 - v).collect();
    let losses = LossLayers {
        content: vec!["relu1_2".into()],
        style: vec![("relu1_1".into(), 1.0), ("relu2_1".into(), 0.75), ("relu3_1".into(), 0.2)],
        style_weight: 10.0,
        style_loss: stylize::StyleLoss::W2,
        masks: vec![left, right],
        ..LossLayers::default()
    };
    let plan = Plan::new(&tiny_table(), &conv_widths, h, w, &losses).unwrap();
    assert_eq!(plan.style.len(), 6);
    let reference = Reference::new(plan, &weights);
    let content = rng.vec(3 * h * w, -2.0, 2.0);
    let styles = vec![rng.vec(3 * h * w, -2.0, 2.0), rng.vec(3 * h * w, -2.0, 2.0)];
    let targets = reference.targets_per_region(&content, &styles);
    assert_eq!(targets.style_w2.len(), 6);
    let image = rng.vec(3 * h * w, -2.0, 2.0);
    let (losses, grad) = reference.loss_and_grad(&image, &targets);
    assert!(losses.content > 0.0 && losses.style > 0.0);
    let numeric = finite_differences(&image, |x| reference.losses(x, &targets).total);
    assert_gradcheck("network with two masked styles and the W2 style loss", &grad, &numeric);
}
