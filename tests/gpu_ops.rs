//! Every GPU kernel against its f64 reference, forward and backward, on fresh random inputs at odd
//! sizes that are multiples of no tile, with outputs poisoned (NaN) first, on the full grid and on
//! a split (folded) grid.

mod common;

use common::*;
use stylize::gpu::Step;
use stylize::ops::ActShape;
use stylize::ops::conv::{self, ConvAlgorithm, ConvShape, GpuConvWeights};
use stylize::ops::gram::{self, GramShape};
use stylize::ops::normalize::Preprocess;
use stylize::ops::{check, loss, normalize, pool, reduce, relu, tv, vector};
use stylize::optim::adam::{self, Adam, AdamConfig};

// (Cin, Cout, H, W). The last spans two tiles of every tiling in rows (131 > 128) and pixels
// (437 > 256), with a reduction (21 * 9 or 131 * 9) that is no multiple of any step.
const CONV_SHAPES: [(usize, usize, usize, usize); 6] =
    [(3, 5, 13, 17), (5, 67, 13, 17), (67, 3, 13, 17), (5, 9, 1, 2), (4, 19, 37, 5), (21, 131, 19, 23)];

/// Every shape under every formulation of the convolution (the tilings for GPUs, direct for CPUs).
fn both_algorithms<T: Copy>(shapes: impl IntoIterator<Item = T>) -> Vec<(ConvAlgorithm, T)> {
    shapes.into_iter().flat_map(|s| ConvAlgorithm::ALL.map(|a| (a, s))).collect()
}

fn random_conv(rng: &mut Rng, shape: ConvShape) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let x = rng.vec(shape.input_len(), -1.0, 1.0);
    let w = rng.vec(shape.weight_len(), -0.5, 0.5);
    let b = rng.vec(shape.out_channels, -0.5, 0.5);
    (x, w, b)
}

#[test]
fn gpu_conv_forward_matches_reference() {
    let mut rng = Rng::new(1);
    for (grid, mut ctx) in contexts("gpu_conv_forward_matches_reference") {
        for (algorithm, (cin, cout, h, w)) in both_algorithms(CONV_SHAPES) {
            algorithm.force(&mut ctx);
            let shape = ConvShape { in_channels: cin, out_channels: cout, height: h, width: w };
            let (x, wt, b) = random_conv(&mut rng, shape);
            let weights = GpuConvWeights::upload(&ctx, "t", &to_f32(&wt), &to_f32(&b), cout, cin).unwrap();
            let input = upload(&ctx, &x);
            let reference = conv::reference::forward(shape, &x, &wt, &b);
            for fused_relu in [false, true] {
                let out = poisoned(&ctx, shape.output_len());
                run(&ctx, &conv::forward(&ctx, shape, &input, &weights, &out, fused_relu).unwrap());
                let expected = if fused_relu { relu::reference::forward(&reference) } else { reference.clone() };
                assert_close(
                    &format!("conv forward {algorithm:?} {shape:?} relu={fused_relu} ({grid})"),
                    &read(&ctx, &out, shape.output_len()),
                    &expected,
                    F32_TOL,
                );
            }
        }
    }
}

#[test]
fn gpu_conv_backward_input_matches_reference() {
    let mut rng = Rng::new(2);
    for (grid, mut ctx) in contexts("gpu_conv_backward_input_matches_reference") {
        for (algorithm, (cin, cout, h, w)) in both_algorithms(CONV_SHAPES) {
            algorithm.force(&mut ctx);
            let shape = ConvShape { in_channels: cin, out_channels: cout, height: h, width: w };
            let (_, wt, b) = random_conv(&mut rng, shape);
            let dy = rng.vec(shape.output_len(), -1.0, 1.0);
            let weights = GpuConvWeights::upload(&ctx, "t", &to_f32(&wt), &to_f32(&b), cout, cin).unwrap();
            let grad_output = upload(&ctx, &dy);
            let reference = conv::reference::backward_input(shape, &dy, &wt);
            let out = poisoned(&ctx, shape.input_len());
            run(&ctx, &conv::backward_input(&ctx, shape, &grad_output, &weights, &out, false, None).unwrap());
            assert_close(
                &format!("conv backward {algorithm:?} {shape:?} ({grid})"),
                &read(&ctx, &out, shape.input_len()),
                &reference,
                F32_TOL,
            );
            // Accumulating mode adds to what is there.
            let base = rng.vec(shape.input_len(), -1.0, 1.0);
            let acc = upload(&ctx, &base);
            run(&ctx, &conv::backward_input(&ctx, shape, &grad_output, &weights, &acc, true, None).unwrap());
            let expected: Vec<f64> = reference.iter().zip(&base).map(|(r, b)| r + b).collect();
            assert_close(
                &format!("conv backward += {algorithm:?} ({grid})"),
                &read(&ctx, &acc, shape.input_len()),
                &expected,
                F32_TOL,
            );
            // With the ReLU that follows the conv fused into the loads: mask dL/dy by y > 0 first,
            // the mask as bits (32 to a word; these output sizes are multiples of neither 32 nor 16
            // except where the shape is tiny). Zeros and negative zeros block, like negatives.
            let mut y = rng.vec(shape.output_len(), -1.0, 1.0);
            for (i, v) in y.iter_mut().enumerate().filter(|(i, _)| i % 7 == 3) {
                *v = if i % 2 == 0 { 0.0 } else { -0.0 };
            }
            let relu_mask = ctx.upload_words("mask", &relu::reference::mask_bits(&y)).unwrap();
            let masked_out = poisoned(&ctx, shape.input_len());
            let kernel =
                conv::backward_input(&ctx, shape, &grad_output, &weights, &masked_out, false, Some(&relu_mask));
            run(&ctx, &kernel.unwrap());
            let masked = conv::reference::backward_input(shape, &relu::reference::backward(&y, &dy), &wt);
            assert_close(
                &format!("conv backward with fused ReLU mask {algorithm:?} {shape:?} ({grid})"),
                &read(&ctx, &masked_out, shape.input_len()),
                &masked,
                F32_TOL,
            );
            // The same with the mask packed on the GPU from the ReLU's output, and accumulating.
            let relu_output = upload(&ctx, &relu::reference::forward(&y));
            let gpu_mask = poisoned(&ctx, relu::mask_words(shape.output_len()));
            run(&ctx, &single(relu::pack_mask(&ctx, shape.output_len(), &relu_output, &gpu_mask)));
            let acc = upload(&ctx, &base);
            run(&ctx, &conv::backward_input(&ctx, shape, &grad_output, &weights, &acc, true, Some(&gpu_mask)).unwrap());
            let expected: Vec<f64> = masked.iter().zip(&base).map(|(r, b)| r + b).collect();
            assert_close(
                &format!("conv backward += with a GPU-packed ReLU mask {algorithm:?} {shape:?} ({grid})"),
                &read(&ctx, &acc, shape.input_len()),
                &expected,
                F32_TOL,
            );
        }
    }
}

#[test]
fn gpu_relu_matches_reference() {
    let mut rng = Rng::new(3);
    for (grid, ctx) in contexts("gpu_relu_matches_reference") {
        let len = 5 * 13 * 17;
        let x = rng.vec(len, -1.0, 1.0);
        let dy = rng.vec(len, -1.0, 1.0);
        let input = upload(&ctx, &x);
        let out = poisoned(&ctx, len);
        run(&ctx, &single(relu::forward(&ctx, len, &input, &out)));
        assert_close(&format!("relu forward ({grid})"), &read(&ctx, &out, len), &relu::reference::forward(&x), F32_TOL);
        let grad_output = upload(&ctx, &dy);
        // The backward masks by the forward's output or, as the executor runs it, by its input.
        for (what, values) in [("output", &out), ("input", &input)] {
            let grad_input = poisoned(&ctx, len);
            run(&ctx, &single(relu::backward(&ctx, len, values, &grad_output, &grad_input)));
            assert_close(
                &format!("relu backward masked by its {what} ({grid})"),
                &read(&ctx, &grad_input, len),
                &relu::reference::backward(&x, &dy),
                F32_TOL,
            );
        }
    }
}

/// The ReLU mask packed 32 values to a word, against the reference bit for bit, at lengths that
/// are no multiple of 32 (the last word's spare bits are 0), on a folded grid too. Zeros, negative
/// zeros, NaNs and infinities included: only values > 0 set a bit.
#[test]
fn gpu_relu_mask_bits_match_reference() {
    let mut rng = Rng::new(31);
    for (grid, mut ctx) in contexts("gpu_relu_mask_bits_match_reference") {
        // Per value (GPUs) and per word (CPU adapters); 256 * 40 * 32 + 17 values need a folded
        // grid on the split context in both forms.
        for (algorithm, len) in both_algorithms([1, 31, 33, 5 * 13 * 17, 256 * 40 + 17, 256 * 40 * 32 + 17]) {
            algorithm.force(&mut ctx);
            let mut values = rng.vec(len, -1.0, 1.0);
            let specials = [0.0, -0.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e-30, -1e-30];
            for (i, v) in values.iter_mut().enumerate().filter(|(i, _)| i % 5 == 2) {
                *v = specials[i % specials.len()];
            }
            let input = upload(&ctx, &values);
            let words = relu::mask_words(len);
            let bits = poisoned(&ctx, words);
            run(&ctx, &single(relu::pack_mask(&ctx, len, &input, &bits)));
            let expected = relu::reference::mask_bits(&values);
            assert_eq!(expected.len(), words);
            let got = ctx.read_words(&bits, words).unwrap();
            assert_eq!(got, expected, "mask bits of {len} values, {algorithm:?} ({grid})");
        }
    }
}

/// More workgroups than one grid dimension allows (65,535 of 256 invocations), on the adapter's own limit.
#[test]
fn gpu_relu_split_dispatch_beyond_65535_workgroups() {
    let Some(ctx) = gpu_or_skip("gpu_relu_split_dispatch_beyond_65535_workgroups") else {
        return;
    };
    let len = 65_535 * 256 + 4097;
    let kernel = relu::forward(&ctx, len, &ctx.buffer("x", len).unwrap(), &ctx.buffer("y", len).unwrap()).unwrap();
    let grid = kernel.grid();
    assert!(grid[1] > 1 && grid[0] <= ctx.max_groups_per_dim(), "grid {grid:?} was not split");
    let mut rng = Rng::new(4);
    let x: Vec<f64> = rng.vec(len, -1.0, 1.0);
    let input = upload(&ctx, &x);
    let out = poisoned(&ctx, len);
    run(&ctx, &single(relu::forward(&ctx, len, &input, &out)));
    assert_close("relu forward, split grid", &read(&ctx, &out, len), &relu::reference::forward(&x), F32_TOL);
}

/// Max-pool forward (output and arg-max codes) and the backward from those codes, against the f64
/// references: on random data, and on data drawn from four values so that windows tie often.
/// Output counts are no multiple of 16 (the last code word's spare bits are 0), odd sizes drop a
/// row or column, and the largest shape needs a folded grid on the split context.
#[test]
fn gpu_maxpool_matches_reference() {
    let mut rng = Rng::new(5);
    for (grid, ctx) in contexts("gpu_maxpool_matches_reference") {
        for (c, h, w) in [(5, 13, 17), (3, 14, 9), (67, 3, 3), (7, 61, 45)] {
            let shape = ActShape { channels: c, height: h, width: w };
            for ties in [false, true] {
                let x = if ties {
                    (0..shape.input_len()).map(|_| [-1.0, 0.0, 0.5, 1.0][(rng.uniform() * 4.0) as usize]).collect()
                } else {
                    rng.vec(shape.input_len(), -1.0, 1.0)
                };
                let dy = rng.vec(shape.output_len(), -1.0, 1.0);
                let what = format!("{shape:?}{} ({grid})", if ties { " with ties" } else { "" });
                let input = upload(&ctx, &x);
                let out = poisoned(&ctx, shape.output_len());
                let words = pool::codes_words(shape);
                let codes = poisoned(&ctx, words);
                run(&ctx, &single(pool::forward(&ctx, shape, &input, &out, &codes)));
                assert_close(
                    &format!("maxpool forward {what}"),
                    &read(&ctx, &out, shape.output_len()),
                    &pool::reference::forward(shape, &x),
                    F32_TOL,
                );
                let expected_codes = pool::reference::argmax_codes(shape, &x);
                assert_eq!(expected_codes.len(), words);
                assert_eq!(ctx.read_words(&codes, words).unwrap(), expected_codes, "maxpool codes {what}");
                let reference = pool::reference::backward(shape, &x, &dy);
                assert_eq!(pool::reference::backward_from_codes(shape, &expected_codes, &dy), reference);
                let grad_output = upload(&ctx, &dy);
                let grad_input = poisoned(&ctx, shape.input_len());
                run(&ctx, &single(pool::backward(&ctx, shape, &codes, &grad_output, &grad_input)));
                assert_close(
                    &format!("maxpool backward {what}"),
                    &read(&ctx, &grad_input, shape.input_len()),
                    &reference,
                    F32_TOL,
                );
            }
        }
    }
}

/// Ties go to the first maximum in row-major window order, as in PyTorch; a NaN first in its
/// window keeps position 0 and a later NaN is never taken (`>` is false for NaN), as before the
/// codes; infinities compare as numbers.
#[test]
fn gpu_maxpool_backward_breaks_ties_like_pytorch() {
    let Some(ctx) = gpu_or_skip("gpu_maxpool_backward_breaks_ties_like_pytorch") else {
        return;
    };
    let shape = ActShape { channels: 1, height: 2, width: 8 };
    // Four windows: all equal; right pair tied; bottom pair tied; diagonal tie.
    let x = [0.5, 0.5, 0.1, 0.7, 0.2, 0.1, 0.9, 0.3, 0.5, 0.5, 0.2, 0.7, 0.6, 0.6, 0.3, 0.9];
    let dy = [1.5, -2.0, 3.0, 0.25];
    let input = upload(&ctx, &x);
    let out = poisoned(&ctx, 4);
    let codes = poisoned(&ctx, 1);
    run(&ctx, &single(pool::forward(&ctx, shape, &input, &out, &codes)));
    let grad_output = upload(&ctx, &dy);
    let grad_input = poisoned(&ctx, 16);
    run(&ctx, &single(pool::backward(&ctx, shape, &codes, &grad_output, &grad_input)));
    let expected = [1.5, 0.0, 0.0, -2.0, 0.0, 0.0, 0.25, 0.0, 0.0, 0.0, 0.0, 0.0, 3.0, 0.0, 0.0, 0.0];
    assert_eq!(pool::reference::backward(shape, &x, &dy), expected.to_vec());
    assert_eq!(read(&ctx, &grad_input, 16), to_f32(&expected));
    // Window positions 0, 1, 2, 0, two bits each, the first window in the lowest bits.
    assert_eq!(ctx.read_words(&codes, 1).unwrap(), vec![0b00_10_01_00]);

    // NaN first (position 0 stays); a later NaN not taken, then an infinity taken and one tied;
    // a window of -inf only; a NaN last after a finite maximum.
    let (nan, inf) = (f64::NAN, f64::INFINITY);
    let x = [nan, 0.5, 0.2, nan, -inf, -inf, -inf, 0.3, 0.7, 0.9, inf, inf, -inf, -inf, -inf, nan];
    let input = upload(&ctx, &x);
    let codes = poisoned(&ctx, 1);
    run(&ctx, &single(pool::forward(&ctx, shape, &input, &poisoned(&ctx, 4), &codes)));
    let expected_codes = pool::reference::argmax_codes(shape, &x);
    assert_eq!(expected_codes, vec![0b01_00_10_00]);
    assert_eq!(ctx.read_words(&codes, 1).unwrap(), expected_codes);
}

#[test]
fn gpu_gram_matches_reference() {
    let mut rng = Rng::new(6);
    for (grid, mut ctx) in contexts("gpu_gram_matches_reference") {
        // 2257 columns need three splits of the N axis; 67 channels need two tiles (three pairs).
        for (c, n) in [(3, 13 * 17), (5, 13 * 17), (67, 13 * 17), (67, 37 * 61), (130, 5)] {
            let shape = GramShape { channels: c, n };
            let f = rng.vec(shape.features_len(), -1.0, 1.0);
            let features = upload(&ctx, &f);
            let out = poisoned(&ctx, shape.gram_len());
            run(&ctx, &gram::forward(&ctx, shape, &features, &out).unwrap());
            assert_close(
                &format!("gram forward {shape:?} ({grid})"),
                &read(&ctx, &out, shape.gram_len()),
                &gram::reference::forward(shape, &f),
                F32_TOL,
            );
            // An asymmetric dL/dG exercises the (dG + dG^T) form.
            let dg = rng.vec(shape.gram_len(), -1.0, 1.0);
            let grad_gram = upload(&ctx, &dg);
            for algorithm in [ConvAlgorithm::Auto, ConvAlgorithm::Direct] {
                algorithm.force(&mut ctx);
                let grad_features = poisoned(&ctx, shape.features_len());
                run(&ctx, &gram::backward(&ctx, shape, &features, &grad_gram, &grad_features, false).unwrap());
                let reference = gram::reference::backward(shape, &f, &dg);
                assert_close(
                    &format!("gram backward {algorithm:?} {shape:?} ({grid})"),
                    &read(&ctx, &grad_features, shape.features_len()),
                    &reference,
                    F32_TOL,
                );
                let base = rng.vec(shape.features_len(), -1.0, 1.0);
                let acc = upload(&ctx, &base);
                run(&ctx, &gram::backward(&ctx, shape, &features, &grad_gram, &acc, true).unwrap());
                let expected: Vec<f64> = reference.iter().zip(&base).map(|(r, b)| r + b).collect();
                assert_close(
                    &format!("gram backward += {algorithm:?} ({grid})"),
                    &read(&ctx, &acc, shape.features_len()),
                    &expected,
                    F32_TOL,
                );
            }
        }
    }
}

/// The guided Gram of a mask with zeros, ones and values between (Gatys et al. 2017), forward and
/// backward (both algorithms, = and +=), at the plain Gram's odd sizes, on both grids.
#[test]
fn gpu_masked_gram_matches_reference() {
    let mut rng = Rng::new(61);
    for (grid, mut ctx) in contexts("gpu_masked_gram_matches_reference") {
        for (c, n) in [(3, 13 * 17), (5, 13 * 17), (67, 13 * 17), (67, 37 * 61), (130, 5)] {
            let shape = GramShape { channels: c, n };
            let f = rng.vec(shape.features_len(), -1.0, 1.0);
            let mask: Vec<f64> = (0..n)
                .map(|p| match p % 5 {
                    0 => 0.0,
                    1 => 1.0,
                    _ => rng.uniform(),
                })
                .collect();
            let (coverage, w) = gram::mask_column_weights(&mask);
            assert!(coverage > 0.0 && coverage < 1.0);
            let features = upload(&ctx, &f);
            let weights = upload(&ctx, &w);
            let partials = poisoned(&ctx, shape.partials_len());
            let out = poisoned(&ctx, shape.gram_len());
            let octave = gram::weight_exponent(&to_f32(&w));
            run(
                &ctx,
                &gram::forward_masked_with_partials(&ctx, shape, &features, &weights, octave, &partials, &out).unwrap(),
            );
            assert_close(
                &format!("masked gram forward {shape:?} ({grid})"),
                &read(&ctx, &out, shape.gram_len()),
                &gram::reference::forward_masked(shape, &f, &mask),
                F32_TOL,
            );
            let dg = rng.vec(shape.gram_len(), -1.0, 1.0);
            let grad_gram = upload(&ctx, &dg);
            let reference = gram::reference::backward_masked(shape, &f, &mask, &dg);
            for algorithm in [ConvAlgorithm::Auto, ConvAlgorithm::Direct] {
                algorithm.force(&mut ctx);
                let grad_features = poisoned(&ctx, shape.features_len());
                run(
                    &ctx,
                    &gram::backward_masked(&ctx, shape, &features, &weights, &grad_gram, &grad_features, false)
                        .unwrap(),
                );
                assert_close(
                    &format!("masked gram backward {algorithm:?} {shape:?} ({grid})"),
                    &read(&ctx, &grad_features, shape.features_len()),
                    &reference,
                    F32_TOL,
                );
                let base = rng.vec(shape.features_len(), -1.0, 1.0);
                let acc = upload(&ctx, &base);
                run(&ctx, &gram::backward_masked(&ctx, shape, &features, &weights, &grad_gram, &acc, true).unwrap());
                let expected: Vec<f64> = reference.iter().zip(&base).map(|(r, b)| r + b).collect();
                assert_close(
                    &format!("masked gram backward += {algorithm:?} ({grid})"),
                    &read(&ctx, &acc, shape.features_len()),
                    &expected,
                    F32_TOL,
                );
            }
        }
    }
}

#[test]
fn gpu_sum_splits_matches_reference() {
    let mut rng = Rng::new(7);
    for (grid, ctx) in contexts("gpu_sum_splits_matches_reference") {
        for (len, splits) in [(1, 1), (67 * 67, 37), (1000, 5)] {
            let src = rng.vec(len * splits, -1.0, 1.0);
            let input = upload(&ctx, &src);
            let out = poisoned(&ctx, len);
            run(&ctx, &single(reduce::sum_splits(&ctx, len, splits, &input, &out)));
            assert_close(
                &format!("sum_splits {len}x{splits} ({grid})"),
                &read(&ctx, &out, len),
                &reduce::reference::sum_splits(&src, len, splits),
                F32_TOL,
            );
        }
    }
}

#[test]
fn gpu_losses_match_reference() {
    let mut rng = Rng::new(8);
    for (grid, ctx) in contexts("gpu_losses_match_reference") {
        // 1105 values fit one block; 300,007 need two reduction levels.
        for len in [1105, 300_007] {
            let a = rng.vec(len, -1.0, 1.0);
            let b = rng.vec(len, -1.0, 1.0);
            let (lhs, rhs) = (upload(&ctx, &a), upload(&ctx, &b));
            let losses = poisoned(&ctx, 4);
            let content_scale = 1.0 / len as f64;
            let style = loss::style_scale(0.75, 5, 13, 17);
            let mut step = Step::new();
            loss::sq_diff_forward(&ctx, &mut step, len, &lhs, &rhs, &losses, 1, content_scale).unwrap();
            loss::sq_diff_forward(&ctx, &mut step, len, &lhs, &rhs, &losses, 3, style).unwrap();
            run(&ctx, &step);
            let got = read(&ctx, &losses, 4);
            assert_close(
                &format!("content loss, {len} values ({grid})"),
                &got[1..2],
                &[loss::reference::sq_diff(&a, &b, content_scale)],
                F32_TOL,
            );
            assert_close(
                &format!("style term, {len} values ({grid})"),
                &got[3..4],
                &[loss::reference::sq_diff(&a, &b, style)],
                F32_TOL,
            );
            let grad = poisoned(&ctx, len);
            run(&ctx, &single(loss::sq_diff_backward(&ctx, len, &lhs, &rhs, &grad, style, false)));
            let reference = loss::reference::sq_diff_backward(&a, &b, style);
            assert_close(&format!("loss backward ({grid})"), &read(&ctx, &grad, len), &reference, F32_TOL);
            let base = rng.vec(len, -1e-6, 1e-6);
            let acc = upload(&ctx, &base);
            run(&ctx, &single(loss::sq_diff_backward(&ctx, len, &lhs, &rhs, &acc, style, true)));
            let expected: Vec<f64> = reference.iter().zip(&base).map(|(r, b)| r + b).collect();
            assert_close(&format!("loss backward += ({grid})"), &read(&ctx, &acc, len), &expected, F32_TOL);
        }
    }
}

/// The masked squared difference (video's temporal term): a mask of zeros and values in (0, 1],
/// one and two reduction levels, written and accumulated.
#[test]
fn gpu_masked_losses_match_reference() {
    let mut rng = Rng::new(81);
    for (grid, ctx) in contexts("gpu_masked_losses_match_reference") {
        for len in [3 * 7 * 11, 3 * 301 * 233] {
            let (a, b) = (rng.vec(len, -1.0, 1.0), rng.vec(len, -1.0, 1.0));
            // A third of the values unreliable (0), the rest weighed in (0, 1].
            let m: Vec<f64> = (0..len).map(|_| rng.uniform()).map(|u| if u < 1.0 / 3.0 { 0.0 } else { u }).collect();
            let (lhs, rhs, mask) = (upload(&ctx, &a), upload(&ctx, &b), upload(&ctx, &m));
            let losses = poisoned(&ctx, 3);
            let scale = 0.37 / len as f64;
            let mut step = Step::new();
            loss::masked_sq_diff_forward(&ctx, &mut step, len, &lhs, &rhs, &mask, &losses, 2, scale).unwrap();
            run(&ctx, &step);
            assert_close(
                &format!("masked loss, {len} values ({grid})"),
                &read(&ctx, &losses, 3)[2..],
                &[loss::reference::masked_sq_diff(&a, &b, &m, scale)],
                F32_TOL,
            );
            let grad = poisoned(&ctx, len);
            run(&ctx, &single(loss::masked_sq_diff_backward(&ctx, len, &lhs, &rhs, &mask, &grad, scale, false)));
            let reference = loss::reference::masked_sq_diff_backward(&a, &b, &m, scale);
            assert_close(&format!("masked backward ({grid})"), &read(&ctx, &grad, len), &reference, F32_TOL);
            let base = rng.vec(len, -1e-4, 1e-4);
            let acc = upload(&ctx, &base);
            run(&ctx, &single(loss::masked_sq_diff_backward(&ctx, len, &lhs, &rhs, &mask, &acc, scale, true)));
            let expected: Vec<f64> = reference.iter().zip(&base).map(|(r, b)| r + b).collect();
            assert_close(&format!("masked backward += ({grid})"), &read(&ctx, &acc, len), &expected, F32_TOL);
        }
    }
}

#[test]
fn gpu_adam_steps_match_reference() {
    let mut rng = Rng::new(9);
    for (grid, ctx) in contexts("gpu_adam_steps_match_reference") {
        let len = 3 * 13 * 17;
        let config = AdamConfig::new(0.05);
        let mut param = rng.vec(len, -2.0, 2.0);
        let param_buffer = upload(&ctx, &param);
        let grad_buffer = ctx.buffer("grad", len).unwrap();
        let (mut gpu_adam, kernel) = Adam::new(&ctx, len, &param_buffer, &grad_buffer, config).unwrap();
        let mut step = Step::new();
        let index = step.push(kernel);
        let mut state = adam::reference::AdamState::new(len);
        for _ in 0..7 {
            let grad = rng.vec(len, -1.0, 1.0);
            ctx.write(&grad_buffer, &to_f32(&grad));
            gpu_adam.advance(&ctx, step.kernel(index));
            run(&ctx, &step);
            adam::reference::step(config, &mut state, &mut param, &grad);
        }
        assert_eq!(gpu_adam.steps_taken(), 7);
        assert_close(&format!("adam, 7 steps ({grid})"), &read(&ctx, &param_buffer, len), &param, F32_TOL);
        assert_close(&format!("adam m ({grid})"), &gpu_adam.exp_avg.read(&ctx).unwrap(), &state.exp_avg, F32_TOL);
        assert_close(&format!("adam v ({grid})"), &gpu_adam.exp_avg_sq.read(&ctx).unwrap(), &state.exp_avg_sq, F32_TOL);
    }
}

/// Adam on the RGB image a normalized image holds (`--optimize-in rgb`, crowsonkb's variable),
/// with both preprocessings, against the reference that forms the RGB image, steps it and clamps
/// it to [0, 1] plainly; the steps are large enough that the clamp is exercised.
#[test]
fn gpu_adam_on_rgb_matches_reference() {
    use stylize::ops::bands::Bands;
    use stylize::optim::adam::RgbVariable;
    let mut rng = Rng::new(29);
    for (grid, ctx) in contexts("gpu_adam_on_rgb_matches_reference") {
        for (name, input) in [("torchvision", Preprocess::TORCHVISION), ("caffe", Preprocess::CAFFE)] {
            let shape = ActShape { channels: 3, height: 13, width: 17 };
            let len = shape.len();
            let config = AdamConfig { rgb: Some(RgbVariable::of(&input)), beta2: 0.99, ..AdamConfig::new(0.2) };
            let mut param = normalize::reference::normalize(&input, &rng.vec(len, 0.05, 0.95));
            let param_buffer = upload(&ctx, &param);
            let grad_buffer = ctx.buffer("grad", len).unwrap();
            let (param_bands, grad_bands) =
                (Bands::single(shape, param_buffer.clone()), Bands::single(shape, grad_buffer.clone()));
            let (mut gpu_adam, mut kernels) = Adam::banded(&ctx, &param_bands, &grad_bands, config).unwrap();
            let mut step = Step::new();
            let index = step.push(kernels.remove(0));
            let mut state = adam::reference::AdamState::new(len);
            for _ in 0..5 {
                let grad = rng.vec(len, -1.0, 1.0);
                ctx.write(&grad_buffer, &to_f32(&grad));
                gpu_adam.advance(&ctx, step.kernel(index));
                run(&ctx, &step);
                adam::reference::step(config, &mut state, &mut param, &grad);
            }
            let rgb = input.to_rgb(&param);
            assert!(
                rgb.iter().any(|&v| v.abs() < 1e-12) && rgb.iter().any(|&v| (v - 1.0).abs() < 1e-12),
                "{name}: no clamp"
            );
            assert_close(&format!("adam on rgb, {name} ({grid})"), &read(&ctx, &param_buffer, len), &param, F32_TOL);
            // The GPU keeps the stored image's moments: the RGB ones over the channel's scale.
            let plane = shape.height * shape.width;
            let scale = RgbVariable::of(&input).scale;
            let m: Vec<f64> = state.exp_avg.iter().enumerate().map(|(i, m)| m / scale[i / plane]).collect();
            assert_close(
                &format!("adam on rgb m, {name} ({grid})"),
                &gpu_adam.exp_avg.read(&ctx).unwrap(),
                &m,
                F32_TOL,
            );
        }
    }
}

/// Both preprocessings (torchvision's ImageNet statistics; Caffe's BGR x 255 minus the mean
/// pixel) and their clamped inverses against the f64 formulas.
#[test]
fn gpu_normalize_and_denormalize_match_reference() {
    let mut rng = Rng::new(10);
    for (grid, ctx) in contexts("gpu_normalize_and_denormalize_match_reference") {
        for (name, preprocess) in [("torchvision", Preprocess::TORCHVISION), ("caffe", Preprocess::CAFFE)] {
            let what = |op: &str| format!("{op} {name} ({grid})");
            let plane = 13 * 17;
            let image = rng.vec(3 * plane, 0.0, 1.0);
            let src = upload(&ctx, &image);
            let normalized = poisoned(&ctx, 3 * plane);
            run(&ctx, &single(normalize::normalize(&ctx, &preprocess, plane, &src, &normalized)));
            let reference = normalize::reference::normalize(&preprocess, &image);
            assert_close(&what("normalize"), &read(&ctx, &normalized, 3 * plane), &reference, F32_TOL);
            // Push some values out of range so the clamp is exercised.
            let spread = preprocess.scale / preprocess.std[0];
            let shifted: Vec<f64> = reference.iter().map(|v| v * 1.7 - 0.3 * spread).collect();
            let shifted_buffer = upload(&ctx, &shifted);
            let restored = poisoned(&ctx, 3 * plane);
            run(&ctx, &single(normalize::denormalize_clamp(&ctx, &preprocess, plane, &shifted_buffer, &restored)));
            let expected = normalize::reference::denormalize_clamp(&preprocess, &to_f64(&to_f32(&shifted)));
            assert!(expected.contains(&0.0) && expected.contains(&1.0), "{name}: the clamp is not exercised");
            assert_close(&what("denormalize"), &read(&ctx, &restored, 3 * plane), &expected, F32_TOL);
        }
    }
}

#[test]
fn gpu_non_finite_flag_matches_reference() {
    let mut rng = Rng::new(11);
    for (grid, ctx) in contexts("gpu_non_finite_flag_matches_reference") {
        let len = 3 * 13 * 17;
        let flag = check::new_flag(&ctx).unwrap();
        let mut expected = check::CLEAN;
        // Steps 0 and 1 are finite; 2 holds an infinity, 3 a NaN, 4 both: the flag keeps step 2.
        for (step, bad) in [
            (0u32, vec![]),
            (1, vec![]),
            (2, vec![f64::INFINITY]),
            (3, vec![f64::NAN]),
            (4, vec![f64::NEG_INFINITY, f64::NAN]),
        ] {
            let mut values = rng.vec(len, -1e30, 1e30);
            for (i, v) in bad.iter().enumerate() {
                values[(7 + 131 * i) % len] = *v;
            }
            let buffer = upload(&ctx, &values);
            let kernel = check::flag_non_finite(&ctx, len, &buffer, &flag).unwrap();
            check::set_step(&ctx, &kernel, len, step);
            run(&ctx, &single(Ok(kernel)));
            expected = check::reference::flag_non_finite(&values, step, expected);
            let got = check::read_flag(&ctx, &flag).unwrap();
            assert_eq!(got, (expected != check::CLEAN).then_some(expected), "step {step} ({grid})");
        }
        assert_eq!(expected, 2);
    }
}

#[test]
fn gpu_avgpool_matches_reference() {
    let mut rng = Rng::new(21);
    for (grid, ctx) in contexts("gpu_avgpool_matches_reference") {
        for (c, h, w) in [(5, 13, 17), (3, 14, 9), (67, 3, 3)] {
            let shape = ActShape { channels: c, height: h, width: w };
            let x = rng.vec(shape.input_len(), -1.0, 1.0);
            let dy = rng.vec(shape.output_len(), -1.0, 1.0);
            let input = upload(&ctx, &x);
            let out = poisoned(&ctx, shape.output_len());
            run(&ctx, &single(pool::avg_forward(&ctx, shape, &input, &out)));
            assert_close(
                &format!("avgpool forward {shape:?} ({grid})"),
                &read(&ctx, &out, shape.output_len()),
                &pool::reference::avg_forward(shape, &x),
                F32_TOL,
            );
            let grad_output = upload(&ctx, &dy);
            let grad_input = poisoned(&ctx, shape.input_len());
            run(&ctx, &single(pool::avg_backward(&ctx, shape, &grad_output, &grad_input)));
            assert_close(
                &format!("avgpool backward {shape:?} ({grid})"),
                &read(&ctx, &grad_input, shape.input_len()),
                &pool::reference::avg_backward(shape, &dy),
                F32_TOL,
            );
        }
    }
}

#[test]
fn gpu_total_variation_matches_reference() {
    let mut rng = Rng::new(22);
    for (grid, ctx) in contexts("gpu_total_variation_matches_reference") {
        // 663 values fit one block; 3 x 61 x 43 = 7869 need a reduction pass; one-row and
        // one-column images have no term at all.
        for (c, h, w) in [(3, 13, 17), (3, 61, 43), (2, 1, 9), (2, 7, 1)] {
            let shape = ActShape { channels: c, height: h, width: w };
            let x = rng.vec(shape.len(), 0.0, 1.0);
            let image = upload(&ctx, &x);
            let losses = poisoned(&ctx, 3);
            let scale = 0.5e-3;
            let mut step = Step::new();
            tv::forward(&ctx, &mut step, shape, &image, &losses, 2, scale).unwrap();
            run(&ctx, &step);
            let expected = tv::reference::forward(shape, &x, scale);
            let got = read(&ctx, &losses, 3)[2];
            if h == 1 || w == 1 {
                assert_eq!(got, 0.0, "tv of {shape:?} ({grid})");
            } else {
                assert_close(&format!("tv forward {shape:?} ({grid})"), &[got], &[expected], F32_TOL);
            }
            let reference = tv::reference::backward(shape, &x, scale);
            let grad = poisoned(&ctx, shape.len());
            run(&ctx, &single(tv::backward(&ctx, shape, &image, &grad, scale, false)));
            let got = read(&ctx, &grad, shape.len());
            if h == 1 || w == 1 {
                assert!(got.iter().all(|&g| g == 0.0), "tv backward of {shape:?} ({grid})");
            } else {
                assert_close(&format!("tv backward {shape:?} ({grid})"), &got, &reference, F32_TOL);
            }
            let base = rng.vec(shape.len(), -1e-3, 1e-3);
            let acc = upload(&ctx, &base);
            run(&ctx, &single(tv::backward(&ctx, shape, &image, &acc, scale, true)));
            let expected: Vec<f64> = reference.iter().zip(&base).map(|(r, b)| r + b).collect();
            assert_close(
                &format!("tv backward += {shape:?} ({grid})"),
                &read(&ctx, &acc, shape.len()),
                &expected,
                F32_TOL,
            );
        }
    }
}

/// crowsonkb's nine-point TV (edges replicated) against its f64 reference written from the
/// PyTorch code (the padded image and its four shifted differences), with per-channel factors,
/// at sizes with one block, a reduction pass, and one row or column (where only the replicated
/// edges' zero differences and the other axis remain).
#[test]
fn gpu_nine_point_total_variation_matches_reference() {
    use stylize::ops::tv::nine_point;
    let mut rng = Rng::new(31);
    for (grid, ctx) in contexts("gpu_nine_point_total_variation_matches_reference") {
        for (c, h, w) in [(3, 13, 17), (3, 61, 43), (2, 1, 9), (1, 7, 1)] {
            let shape = ActShape { channels: c, height: h, width: w };
            let factors: Vec<f64> = (0..c).map(|i| 0.5 + 0.7 * i as f64).collect();
            let x = rng.vec(shape.len(), 0.0, 1.0);
            let image = upload(&ctx, &x);
            let losses = poisoned(&ctx, 3);
            let weight = 2.0;
            let mut step = Step::new();
            nine_point::forward(&ctx, &mut step, shape, &image, &losses, 1, weight, &factors).unwrap();
            run(&ctx, &step);
            let expected = nine_point::reference::forward(shape, &x, weight, &factors);
            assert!(expected > 0.0, "{shape:?}: a zero loss tests nothing");
            let got = read(&ctx, &losses, 3)[1];
            assert_close(&format!("tv9 forward {shape:?} ({grid})"), &[got], &[expected], F32_TOL);
            let reference = nine_point::reference::backward(shape, &x, weight, &factors);
            let grad = poisoned(&ctx, shape.len());
            run(&ctx, &single(nine_point::backward(&ctx, shape, &image, &grad, weight, &factors, false)));
            assert_close(
                &format!("tv9 backward {shape:?} ({grid})"),
                &read(&ctx, &grad, shape.len()),
                &reference,
                F32_TOL,
            );
            let base = rng.vec(shape.len(), -1e-3, 1e-3);
            let acc = upload(&ctx, &base);
            run(&ctx, &single(nine_point::backward(&ctx, shape, &image, &acc, weight, &factors, true)));
            let expected: Vec<f64> = reference.iter().zip(&base).map(|(r, b)| r + b).collect();
            assert_close(
                &format!("tv9 backward += {shape:?} ({grid})"),
                &read(&ctx, &acc, shape.len()),
                &expected,
                F32_TOL,
            );
        }
    }
}

#[test]
fn gpu_vector_ops_match_reference() {
    let mut rng = Rng::new(23);
    for (grid, ctx) in contexts("gpu_vector_ops_match_reference") {
        // One block, and 70,001 values (35 blocks: a second reduction level).
        for len in [1105, 70_001] {
            let a = rng.vec(len, -1.0, 1.0);
            let b = rng.vec(len, -1.0, 1.0);
            let (x, y) = (upload(&ctx, &a), upload(&ctx, &b));
            let out = poisoned(&ctx, 6);
            let mut step = Step::new();
            vector::dot(&ctx, &mut step, len, &x, &y, &out, 0, 0.5).unwrap();
            vector::dot(&ctx, &mut step, len, &x, &x, &out, 1, 1.0).unwrap();
            vector::abs_sum(&ctx, &mut step, len, &x, &out, 2).unwrap();
            vector::abs_max(&ctx, &mut step, len, &y, &out, 3).unwrap();
            run(&ctx, &step);
            let got = read(&ctx, &out, 6);
            let checks = [
                ("dot", 0.5 * vector::reference::dot(&a, &b)),
                ("squared norm", vector::reference::dot(&a, &a)),
                ("sum |x|", vector::reference::abs_sum(&a)),
                ("max |y|", vector::reference::abs_max(&b)),
            ];
            for (k, (what, want)) in checks.into_iter().enumerate() {
                assert_close(&format!("{what}, {len} values ({grid})"), &got[k..k + 1], &[want], F32_TOL);
            }
            assert!(got[4].is_nan() && got[5].is_nan(), "slots 4 and 5 untouched");

            // Scalars on the GPU: s = [0.75, -2, 3, ...]; s[3] = 0.5 s[0] - 2 s[1] s[2]; s[4] = gate.
            let scalars = ctx.upload("scalars", &[0.75, -2.0, 3.0, 0.0, 0.0, 0.0]).unwrap();
            let mut step = Step::new();
            step.push(vector::scalar_fma(&ctx, &scalars, 3, 0.5, 0, -2.0, 1, 2).unwrap());
            step.push(vector::scalar_gate(&ctx, &scalars, 4, 1, -1.0, 0).unwrap());
            step.push(vector::scalar_gate(&ctx, &scalars, 5, 2, -1.0, 0).unwrap());
            run(&ctx, &step);
            assert_eq!(read(&ctx, &scalars, 6), vec![0.75, -2.0, 3.0, 12.375, 0.75, 0.0]);

            let out = poisoned(&ctx, len);
            let mut step = Step::new();
            step.push(vector::copy_scaled(&ctx, len, 1.0, &y, &out).unwrap()); // out = b
            step.push(vector::axpy(&ctx, len, -0.25, &x, &out).unwrap()); // out = b - a/4
            step.push(vector::axpy_scalar(&ctx, len, 2.0, &scalars, 0, &x, &out).unwrap()); // + 1.5 a
            step.push(vector::scale(&ctx, len, 3.0, &out).unwrap()); // * 3
            step.push(vector::scale_scalar(&ctx, len, -1.0, &scalars, 1, &out).unwrap()); // * 2
            run(&ctx, &step);
            let expected: Vec<f64> = a.iter().zip(&b).map(|(a, b)| 6.0 * (b + 1.25 * a)).collect();
            assert_close(
                &format!("axpy/scale chain, {len} values ({grid})"),
                &read(&ctx, &out, len),
                &expected,
                F32_TOL,
            );
            let copy = poisoned(&ctx, len);
            run(&ctx, &single(vector::copy_scaled_scalar(&ctx, len, 2.0, &scalars, 2, &x, &copy)));
            let expected: Vec<f64> = a.iter().map(|a| 6.0 * a).collect();
            assert_close(&format!("copy_scaled_scalar ({grid})"), &read(&ctx, &copy, len), &expected, F32_TOL);
        }
    }
}

/// A validation error (here: a buffer too small for what the kernel declares) becomes an `Err`,
/// not a panic or an abort.
#[test]
fn gpu_validation_errors_become_errors() {
    let Some(ctx) = gpu_or_skip("gpu_validation_errors_become_errors") else { return };
    let tiny = ctx.buffer("tiny", 1).unwrap();
    let uniform_sized = [0u8; 4];
    // The conv kernel's uniform is 48 bytes; 4 bytes cannot be bound as it.
    let err = stylize::gpu::Kernel::new(
        &ctx,
        conv::SHADER,
        "conv3x3",
        &uniform_sized,
        &[&tiny, &tiny, &tiny, &tiny, &tiny],
        1,
    );
    assert!(err.is_err(), "a 4-byte uniform for a 48-byte struct must be refused");
    let err = stylize::gpu::Kernel::new(&ctx, conv::SHADER, "no_such_entry_point", &[0u8; 48], &[&tiny], 1);
    assert!(matches!(err, Err(stylize::gpu::GpuError::Shader { .. })), "{:?}", err.err());
}

/// A wait that outlasts its bound is reported as a timeout instead of hanging.
#[test]
fn gpu_waits_are_bounded() {
    if gpu_or_skip("gpu_waits_are_bounded").is_none() {
        return;
    }
    let options =
        stylize::gpu::ContextOptions { wait_timeout: std::time::Duration::from_micros(1), ..Default::default() };
    let ctx = stylize::gpu::Context::new(&options).unwrap();
    let shape = ConvShape { in_channels: 64, out_channels: 64, height: 96, width: 96 };
    let w = vec![0.01f32; shape.weight_len()];
    let weights = GpuConvWeights::upload(&ctx, "w", &w, &vec![0.0; 64], 64, 64).unwrap();
    let x = ctx.upload("x", &vec![0.5f32; shape.input_len()]).unwrap();
    let y = ctx.buffer("y", shape.output_len()).unwrap();
    let step = conv::forward(&ctx, shape, &x, &weights, &y, true).unwrap();
    // Tens of milliseconds of work on a CPU adapter, far longer than the bound.
    step.submit(&ctx);
    match ctx.wait() {
        Err(stylize::gpu::GpuError::Timeout(_)) => {}
        Ok(()) => eprintln!("gpu_waits_are_bounded: the adapter finished within 1 us; nothing to check"),
        Err(other) => panic!("expected a timeout, got {other}"),
    }
}

#[test]
fn gpu_scalar_reciprocal_matches_reference() {
    for (grid, ctx) in contexts("gpu_scalar_reciprocal_matches_reference") {
        let scalars = upload(&ctx, &[3.7, f64::NAN]);
        run(&ctx, &single(vector::scalar_reciprocal(&ctx, &scalars, 1, 0, 1e-3)));
        assert_close(
            &format!("scalar_reciprocal ({grid})"),
            &read(&ctx, &scalars, 2)[1..],
            &[1.0 / (3.7f32 as f64 + 1e-3)],
            F32_TOL,
        );
    }
}

/// A rectangle copied between tensors of other dimensions, at odd sizes and offsets, into a
/// destination poisoned with NaN outside the rectangle too: what lies outside must stay NaN
/// (the reference keeps it), so a copy that writes too much or too little fails. Misplaced
/// rectangles are errors.
#[test]
fn gpu_copy_rect_matches_reference() {
    use stylize::ops::ActShape as Dims;
    use stylize::ops::region::{self, Rect};
    let mut rng = Rng::new(41);
    for (grid, ctx) in contexts("gpu_copy_rect_matches_reference") {
        let cases = [
            (
                Dims { channels: 3, height: 37, width: 23 },
                Rect { y: 5, x: 7, height: 19, width: 11 },
                Dims { channels: 3, height: 21, width: 29 },
                (1, 17),
            ),
            (
                Dims { channels: 5, height: 9, width: 13 },
                Rect { y: 0, x: 0, height: 9, width: 13 },
                Dims { channels: 5, height: 9, width: 13 },
                (0, 0),
            ),
            (
                Dims { channels: 2, height: 300, width: 257 },
                Rect { y: 299, x: 3, height: 1, width: 254 },
                Dims { channels: 2, height: 3, width: 255 },
                (2, 1),
            ),
        ];
        for (src_dims, from, dst_dims, to) in cases {
            let x = rng.vec(src_dims.len(), -1.0, 1.0);
            let src = upload(&ctx, &x);
            let dst = poisoned(&ctx, dst_dims.len());
            run(&ctx, &single(region::copy_rect(&ctx, &src, src_dims, from, &dst, dst_dims, to)));
            let out = read(&ctx, &dst, dst_dims.len());
            let expected =
                region::reference::copy_rect(&x, src_dims, from, &vec![f64::NAN; dst_dims.len()], dst_dims, to);
            for (i, (&o, &e)) in out.iter().zip(&expected).enumerate() {
                assert!(
                    (o.is_nan() && e.is_nan()) || (o as f64 - e).abs() <= 1e-7 * e.abs(),
                    "copy_rect {from:?} of {src_dims:?} to {to:?} of {dst_dims:?} ({grid}): value {i} is {o}, not {e}"
                );
            }
            assert!(out.iter().any(|v| v.is_finite()), "nothing copied");
        }
        let (small, big) = (Dims { channels: 1, height: 4, width: 4 }, Dims { channels: 1, height: 8, width: 8 });
        let (a, b) = (poisoned(&ctx, small.len()), poisoned(&ctx, big.len()));
        let beyond = Rect { y: 2, x: 0, height: 3, width: 4 };
        assert!(region::copy_rect(&ctx, &a, small, beyond, &b, big, (0, 0)).is_err(), "source overrun accepted");
        let whole = Rect { y: 0, x: 0, height: 4, width: 4 };
        assert!(region::copy_rect(&ctx, &a, small, whole, &b, big, (5, 0)).is_err(), "destination overrun accepted");
        let three = Dims { channels: 3, ..big };
        assert!(region::copy_rect(&ctx, &a, small, whole, &b, three, (0, 0)).is_err(), "channel mismatch accepted");
    }
}
