//! The first convolution's replicate padding (`--padding replicate`, crowsonkb's): the pad and
//! fold kernels against their f64 references (NaN-poisoned outputs, odd sizes, a one-row map),
//! the fold as the pad's adjoint, and the network's first activation against a convolution
//! written here with its taps clamped to the image, PyTorch's `padding_mode='replicate'`.

mod common;

use common::*;
use stylize::net::reference::Reference;
use stylize::net::{LossLayers, Padding, Plan, random_weights};
use stylize::ops::ActShape;
use stylize::ops::region::{self, Border};
use stylize::test_support::{rel_err_f64, tiny_table};

const SHAPES: [(usize, usize, usize); 4] = [(3, 7, 5), (5, 1, 9), (2, 13, 1), (3, 1, 1)];

#[test]
fn gpu_pad_and_fold_match_reference() {
    let mut rng = Rng::new(91);
    for (grid, ctx) in contexts("gpu_pad_and_fold_match_reference") {
        for (c, h, w) in SHAPES {
            let dims = ActShape { channels: c, height: h, width: w };
            for border in [1, 2] {
                let padded = region::padded(dims, border);
                let x = rng.vec(dims.len(), -1.0, 1.0);
                for fill in [Border::Zeros, Border::Replicate] {
                    let out = poisoned(&ctx, padded.len());
                    run(&ctx, &single(region::pad(&ctx, dims, border, fill, &upload(&ctx, &x), &out)));
                    let expected = region::reference::pad(dims, border, fill, &x);
                    assert_close(
                        &format!("pad {fill:?} {dims:?} by {border} ({grid})"),
                        &read(&ctx, &out, padded.len()),
                        &expected,
                        0.0,
                    );
                }
                let grad = rng.vec(padded.len(), -1.0, 1.0);
                let out = poisoned(&ctx, dims.len());
                run(&ctx, &single(region::fold_replicate(&ctx, dims, border, &upload(&ctx, &grad), &out)));
                let expected = region::reference::fold_replicate(dims, border, &grad);
                assert_close(
                    &format!("fold {dims:?} by {border} ({grid})"),
                    &read(&ctx, &out, dims.len()),
                    &expected,
                    1e-6,
                );
            }
        }
    }
}

/// <pad(x), g> = <x, fold(g)> for random x and g: the fold is the replicate pad's backward.
#[test]
fn fold_is_the_adjoint_of_the_replicate_pad() {
    let mut rng = Rng::new(92);
    for (c, h, w) in SHAPES {
        let dims = ActShape { channels: c, height: h, width: w };
        let x = rng.vec(dims.len(), -1.0, 1.0);
        let g = rng.vec(region::padded(dims, 1).len(), -1.0, 1.0);
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(p, q)| p * q).sum::<f64>();
        let left = dot(&region::reference::pad(dims, 1, Border::Replicate, &x), &g);
        let right = dot(&x, &region::reference::fold_replicate(dims, 1, &g));
        assert!((left - right).abs() <= 1e-12 * left.abs().max(1.0), "{dims:?}: {left} vs {right}");
        // The zero pad's adjoint is the crop, not the fold: the check tells them apart.
        let zero = dot(&region::reference::pad(dims, 1, Border::Zeros, &x), &g);
        assert!((zero - right).abs() > 1e-6, "{dims:?}: the border must count");
    }
}

/// conv1_1 under `Padding::Replicate`, from the reference network, against the convolution
/// written out with each tap's position clamped into the image (and differing from the zero-padded
/// one on the border only).
#[test]
fn replicate_padded_first_conv_clamps_its_taps() {
    let weights = random_weights(&[4, 5, 6, 3], 93);
    let widths: Vec<(usize, usize)> = weights.iter().map(|c| (c.in_channels, c.out_channels)).collect();
    let (h, w) = (7, 9);
    let losses = |padding| LossLayers { content: vec!["conv1_1".into()], style: vec![], padding, ..Default::default() };
    let conv1_1 = |padding| {
        let plan = Plan::new(&tiny_table(), &widths, h, w, &losses(padding)).unwrap();
        let act = plan.content[0].act;
        (Reference::new(plan, &weights), act)
    };
    let mut rng = Rng::new(94);
    let image = rng.vec(3 * h * w, -2.0, 2.0);
    let (network, act) = conv1_1(Padding::Replicate);
    let got = network.forward(&image)[act].clone();
    let (cout, first) = (weights[0].out_channels, &weights[0]);
    let mut expected = vec![0.0; cout * h * w];
    for o in 0..cout {
        for y in 0..h {
            for x in 0..w {
                let mut sum = first.bias[o] as f64;
                for c in 0..3 {
                    for ky in 0..3 {
                        for kx in 0..3 {
                            let sy = (y as i64 + ky as i64 - 1).clamp(0, h as i64 - 1) as usize;
                            let sx = (x as i64 + kx as i64 - 1).clamp(0, w as i64 - 1) as usize;
                            let tap = first.weight[((o * 3 + c) * 3 + ky) * 3 + kx] as f64;
                            sum += tap * image[(c * h + sy) * w + sx];
                        }
                    }
                }
                expected[(o * h + y) * w + x] = sum;
            }
        }
    }
    let err = rel_err_f64(&got, &expected);
    assert!(err < 1e-14, "replicate-padded conv1_1: relative error {err:e}");
    let (zeros, _) = conv1_1(Padding::Zeros);
    let zero_padded = zeros.forward(&image)[act].clone();
    for (i, (z, r)) in zero_padded.iter().zip(&got).enumerate() {
        let (y, x) = ((i / w) % h, i % w);
        let border = y == 0 || x == 0 || y == h - 1 || x == w - 1;
        assert!(border || z == r, "interior value {i} differs");
        assert!(!border || (z - r).abs() > 1e-9, "border value {i} is the zero-padded one");
    }
}
