//! Mixed precision (`--precision mixed`) emulated on the adapter at hand: every convolution
//! formulation and the Gram, forward and backward, take f16-rounded operands (round to nearest
//! even, after a power-of-two scale chosen on the GPU from each operand's range) and accumulate in
//! f32. Each kernel is compared with the f64 reference fed the same rounded operands (1e-5, the
//! f32 tolerance) and with the unrounded f64 reference (5e-3), at odd sizes, poisoned outputs, on
//! the full and on a folded grid; the rounding itself is checked bit for bit.

mod common;

use common::*;
use stylize::gpu::{Context, PrecisionChoice};
use stylize::ops::conv::{self, ConvAlgorithm, ConvShape, GpuConvWeights};
use stylize::ops::gram::{self, GramShape};
use stylize::ops::{mixed, relu};

const CONV_SHAPES: [(usize, usize, usize, usize); 5] =
    [(3, 5, 13, 17), (67, 3, 13, 17), (5, 9, 1, 2), (4, 19, 37, 5), (21, 131, 19, 23)];
const MIXED_TOL: f64 = 5e-3;

/// `contexts` (full and folded grids) with mixed precision emulated.
fn mixed_contexts(test: &str) -> Vec<(String, Context)> {
    contexts(test)
        .into_iter()
        .map(|(grid, mut ctx)| {
            ctx.precision = PrecisionChoice::emulated();
            (grid, ctx)
        })
        .collect()
}

/// Within F32_TOL of the rounded reference, within MIXED_TOL of the exact one, and visibly
/// rounded (f32 kernels land about 1e-7 from the exact reference, f16 operands 1e-5 to 1e-3).
fn assert_mixed(what: &str, out: &[f32], rounded: &[f64], exact: &[f64]) {
    assert_close(&format!("{what} against the rounded reference"), out, rounded, F32_TOL);
    assert_close(&format!("{what} against the exact reference"), out, exact, MIXED_TOL);
    let err = rel_err(out, exact);
    assert!(err > 2e-6, "{what}: {err:e} from the exact reference: the operands were not rounded");
}

fn f32s(values: &[f64]) -> Vec<f32> {
    to_f32(values)
}

/// Scaled values that probe every branch of the rounding: ties to even in normal and subnormal
/// f16, the smallest subnormal and half of it, a subnormal rounding up into the normals, values
/// that flush, negative zero. The largest is 16384, so the scale is exactly 2^-14.
fn rounding_probes(rng: &mut Rng, len: usize) -> Vec<f32> {
    let p = |e: i32| 2f32.powi(e);
    let mut scaled = vec![
        16384.0,
        1.0 + p(-11),
        1.0 + 3.0 * p(-11),
        -(1.0 + p(-11) + p(-20)),
        p(-24),
        p(-25),
        -1.5 * p(-25),
        3.0 * p(-25),
        5.0 * p(-25),
        p(-14) - p(-26),
        1e-30,
        -0.0,
        0.1,
        12345.678,
        16383.99,
        -2.5 * p(-24),
    ];
    while scaled.len() < len {
        let exponent = rng.range(-27.0, 13.9);
        let sign = if rng.uniform() < 0.5 { -1.0 } else { 1.0 };
        scaled.push(sign * 2f64.powf(exponent) as f32);
    }
    scaled.iter().map(|s| s * p(-14)).collect()
}

/// The rounding of each formulation's input operand and the range kernel's scale, bit for bit:
/// a 1-channel convolution whose only tap is the centre's 1.0 returns each rounded value.
#[test]
fn gpu_mixed_rounding_is_exact_in_every_formulation() {
    let mut rng = Rng::new(21);
    for (grid, mut ctx) in mixed_contexts("gpu_mixed_rounding_is_exact_in_every_formulation") {
        let shape = ConvShape { in_channels: 1, out_channels: 1, height: 7, width: 9 };
        let x = rounding_probes(&mut rng, shape.input_len());
        let mut centre = vec![0.0f32; 9];
        centre[4] = 1.0;
        let weights = GpuConvWeights::upload(&ctx, "centre", &centre, &[0.0], 1, 1).unwrap();
        let input = ctx.upload("probes", &x).unwrap();
        let expected: Vec<f32> = mixed::round_operand(&x).iter().map(|&v| v as f32).collect();
        assert_eq!(mixed::scale_exponent(mixed::max_biased_exponent(&x)), -14);
        for algorithm in ConvAlgorithm::ALL {
            algorithm.force(&mut ctx);
            let out = poisoned(&ctx, shape.output_len());
            run(&ctx, &conv::forward(&ctx, shape, &input, &weights, &out, false).unwrap());
            let got = read(&ctx, &out, shape.output_len());
            let back = poisoned(&ctx, shape.input_len());
            run(&ctx, &conv::backward_input(&ctx, shape, &input, &weights, &back, false, None).unwrap());
            let got_back = read(&ctx, &back, shape.input_len());
            for (i, ((&g, &b), &e)) in got.iter().zip(&got_back).zip(&expected).enumerate() {
                // Adding the zero bias turns -0 into +0; compare values, and bits elsewhere.
                let same = |v: f32| if e == 0.0 { v == 0.0 } else { v.to_bits() == e.to_bits() };
                assert!(same(g), "{algorithm:?} forward ({grid}): x = {:e} gave {g:e}, expected {e:e}", x[i]);
                assert!(same(b), "{algorithm:?} backward ({grid}): x = {:e} gave {b:e}, expected {e:e}", x[i]);
            }
        }
    }
}

#[test]
fn gpu_mixed_conv_forward_matches_rounded_reference() {
    let mut rng = Rng::new(22);
    for (grid, mut ctx) in mixed_contexts("gpu_mixed_conv_forward_matches_rounded_reference") {
        for algorithm in ConvAlgorithm::ALL {
            algorithm.force(&mut ctx);
            for (cin, cout, h, w) in CONV_SHAPES {
                let shape = ConvShape { in_channels: cin, out_channels: cout, height: h, width: w };
                let x = f32s(&rng.vec(shape.input_len(), -1.0, 1.0));
                let wt = f32s(&rng.vec(shape.weight_len(), -0.5, 0.5));
                let b = rng.vec(cout, -0.5, 0.5);
                let weights = GpuConvWeights::upload(&ctx, "t", &wt, &f32s(&b), cout, cin).unwrap();
                let input = ctx.upload("x", &x).unwrap();
                let b = to_f64(&f32s(&b));
                let rounded = conv::reference::forward_mixed(shape, &x, &wt, &b);
                let exact = conv::reference::forward(shape, &to_f64(&x), &to_f64(&wt), &b);
                for fused_relu in [false, true] {
                    let out = poisoned(&ctx, shape.output_len());
                    run(&ctx, &conv::forward(&ctx, shape, &input, &weights, &out, fused_relu).unwrap());
                    let relu_if = |v: &[f64]| if fused_relu { relu::reference::forward(v) } else { v.to_vec() };
                    assert_mixed(
                        &format!("mixed conv forward {algorithm:?} {shape:?} relu={fused_relu} ({grid})"),
                        &read(&ctx, &out, shape.output_len()),
                        &relu_if(&rounded),
                        &relu_if(&exact),
                    );
                }
            }
        }
    }
}

#[test]
fn gpu_mixed_conv_backward_input_matches_rounded_reference() {
    let mut rng = Rng::new(23);
    for (grid, mut ctx) in mixed_contexts("gpu_mixed_conv_backward_input_matches_rounded_reference") {
        for algorithm in ConvAlgorithm::ALL {
            algorithm.force(&mut ctx);
            for (cin, cout, h, w) in CONV_SHAPES {
                let shape = ConvShape { in_channels: cin, out_channels: cout, height: h, width: w };
                let dy = f32s(&rng.vec(shape.output_len(), -1.0, 1.0));
                let wt = f32s(&rng.vec(shape.weight_len(), -0.5, 0.5));
                let weights = GpuConvWeights::upload(&ctx, "t", &wt, &vec![0.0; cout], cout, cin).unwrap();
                let grad_output = ctx.upload("dy", &dy).unwrap();
                let what = format!("{algorithm:?} {shape:?} ({grid})");
                let rounded = conv::reference::backward_input_mixed(shape, &dy, None, &wt);
                let exact = conv::reference::backward_input(shape, &to_f64(&dy), &to_f64(&wt));
                let out = poisoned(&ctx, shape.input_len());
                run(&ctx, &conv::backward_input(&ctx, shape, &grad_output, &weights, &out, false, None).unwrap());
                assert_mixed(
                    &format!("mixed conv backward {what}"),
                    &read(&ctx, &out, shape.input_len()),
                    &rounded,
                    &exact,
                );
                // With the fused ReLU mask, accumulating: the range is the unmasked gradient's.
                let y = rng.vec(shape.output_len(), -1.0, 1.0);
                let keep: Vec<bool> = y.iter().map(|&v| v > 0.0).collect();
                let mask = ctx.upload_words("mask", &relu::reference::mask_bits(&y)).unwrap();
                let base = rng.vec(shape.input_len(), -1.0, 1.0);
                let acc = upload(&ctx, &base);
                run(&ctx, &conv::backward_input(&ctx, shape, &grad_output, &weights, &acc, true, Some(&mask)).unwrap());
                let plus = |r: Vec<f64>| -> Vec<f64> { r.iter().zip(&base).map(|(r, b)| r + b).collect() };
                let rounded = plus(conv::reference::backward_input_mixed(shape, &dy, Some(&keep), &wt));
                let exact = plus(conv::reference::backward_input(
                    shape,
                    &relu::reference::backward(&y, &to_f64(&dy)),
                    &to_f64(&wt),
                ));
                assert_mixed(
                    &format!("mixed conv backward += masked {what}"),
                    &read(&ctx, &acc, shape.input_len()),
                    &rounded,
                    &exact,
                );
            }
        }
    }
}

#[test]
fn gpu_mixed_gram_matches_rounded_reference() {
    let mut rng = Rng::new(24);
    for (grid, mut ctx) in mixed_contexts("gpu_mixed_gram_matches_rounded_reference") {
        for (c, n) in [(3, 13 * 17), (67, 13 * 17), (67, 37 * 61), (130, 5)] {
            let shape = GramShape { channels: c, n };
            let f = f32s(&rng.vec(shape.features_len(), -1.0, 1.0));
            let features = ctx.upload("f", &f).unwrap();
            let out = poisoned(&ctx, shape.gram_len());
            run(&ctx, &gram::forward(&ctx, shape, &features, &out).unwrap());
            assert_mixed(
                &format!("mixed gram forward {shape:?} ({grid})"),
                &read(&ctx, &out, shape.gram_len()),
                &gram::reference::forward_mixed(shape, &f),
                &gram::reference::forward(shape, &to_f64(&f)),
            );
            let dg = f32s(&rng.vec(shape.gram_len(), -1.0, 1.0));
            let grad_gram = ctx.upload("dg", &dg).unwrap();
            let rounded = gram::reference::backward_mixed(shape, &f, &dg);
            let exact = gram::reference::backward(shape, &to_f64(&f), &to_f64(&dg));
            for algorithm in [ConvAlgorithm::Auto, ConvAlgorithm::Direct] {
                algorithm.force(&mut ctx);
                let grad_features = poisoned(&ctx, shape.features_len());
                run(&ctx, &gram::backward(&ctx, shape, &features, &grad_gram, &grad_features, false).unwrap());
                let what = format!("{algorithm:?} {shape:?} ({grid})");
                let got = read(&ctx, &grad_features, shape.features_len());
                assert_mixed(&format!("mixed gram backward {what}"), &got, &rounded, &exact);
                let base = rng.vec(shape.features_len(), -1.0, 1.0);
                let acc = upload(&ctx, &base);
                run(&ctx, &gram::backward(&ctx, shape, &features, &grad_gram, &acc, true).unwrap());
                let plus = |r: &[f64]| -> Vec<f64> { r.iter().zip(&base).map(|(r, b)| r + b).collect() };
                assert_close(
                    &format!("mixed gram backward += {what}"),
                    &read(&ctx, &acc, shape.features_len()),
                    &plus(&rounded),
                    F32_TOL,
                );
            }
        }
    }
}

/// A mask over n positions: zeros, ones and soft values where `coverage` of them are nonzero
/// (a small coverage gives large column weights, so the left operand's extra octave matters).
fn soft_mask(rng: &mut Rng, n: usize, coverage: f64) -> Vec<f64> {
    (0..n)
        .map(|p| match p % 5 {
            _ if rng.uniform() > coverage => 0.0,
            1 => 1.0,
            _ => rng.uniform(),
        })
        .collect()
}

/// The guided Gram (`--mask`) under mixed precision: the left operand F w and the right F rounded
/// (`gram::reference::forward_masked_mixed`), the backward's S and F as the plain Gram's, against
/// the rounded and the exact references, written and accumulated, both backward formulations.
#[test]
fn gpu_mixed_masked_gram_matches_rounded_reference() {
    let mut rng = Rng::new(27);
    for (grid, mut ctx) in mixed_contexts("gpu_mixed_masked_gram_matches_rounded_reference") {
        for (c, n, coverage) in [(3, 13 * 17, 0.7), (67, 13 * 17, 0.05), (67, 37 * 61, 0.5), (130, 5, 1.0)] {
            let shape = GramShape { channels: c, n };
            let what = format!("{shape:?}, coverage {coverage} ({grid})");
            let f = f32s(&rng.vec(shape.features_len(), -1.0, 1.0));
            let mut mask = soft_mask(&mut rng, n, coverage);
            mask[0] = 1.0;
            let w = f32s(&gram::mask_column_weights(&mask).1);
            let (features, weights) = (ctx.upload("f", &f).unwrap(), ctx.upload("w", &w).unwrap());
            let (partials, out) = (poisoned(&ctx, shape.partials_len()), poisoned(&ctx, shape.gram_len()));
            let octave = gram::weight_exponent(&w);
            run(
                &ctx,
                &gram::forward_masked_with_partials(&ctx, shape, &features, &weights, octave, &partials, &out).unwrap(),
            );
            assert_mixed(
                &format!("mixed masked gram forward {what}"),
                &read(&ctx, &out, shape.gram_len()),
                &gram::reference::forward_masked_mixed(shape, &f, &w),
                &gram::reference::forward_masked(shape, &to_f64(&f), &mask),
            );
            let dg = f32s(&rng.vec(shape.gram_len(), -1.0, 1.0));
            let grad_gram = ctx.upload("dg", &dg).unwrap();
            let rounded = gram::reference::backward_masked_mixed(shape, &f, &w, &dg);
            let exact = gram::reference::backward_masked(shape, &to_f64(&f), &mask, &to_f64(&dg));
            for algorithm in [ConvAlgorithm::Auto, ConvAlgorithm::Direct] {
                algorithm.force(&mut ctx);
                let grad_features = poisoned(&ctx, shape.features_len());
                run(
                    &ctx,
                    &gram::backward_masked(&ctx, shape, &features, &weights, &grad_gram, &grad_features, false)
                        .unwrap(),
                );
                let got = read(&ctx, &grad_features, shape.features_len());
                assert_mixed(&format!("mixed masked gram backward {algorithm:?} {what}"), &got, &rounded, &exact);
                let base = rng.vec(shape.features_len(), -1.0, 1.0);
                let acc = upload(&ctx, &base);
                run(&ctx, &gram::backward_masked(&ctx, shape, &features, &weights, &grad_gram, &acc, true).unwrap());
                let plus: Vec<f64> = rounded.iter().zip(&base).map(|(r, b)| r + b).collect();
                assert_close(
                    &format!("mixed masked gram backward += {algorithm:?} {what}"),
                    &read(&ctx, &acc, shape.features_len()),
                    &plus,
                    F32_TOL,
                );
            }
        }
    }
}

/// Range: gradients around 1e-9 (all below f16's smallest subnormal, 6e-8) and around 1e5 (above
/// its largest value, 65504), and activations in the thousands, neither flush nor overflow.
#[test]
fn gpu_mixed_range_keeps_tiny_and_huge_operands() {
    let mut rng = Rng::new(25);
    for (grid, mut ctx) in mixed_contexts("gpu_mixed_range_keeps_tiny_and_huge_operands") {
        for algorithm in [ConvAlgorithm::Direct, ConvAlgorithm::Auto, ConvAlgorithm::Thin] {
            algorithm.force(&mut ctx);
            for magnitude in [1e-9, 1e5] {
                let shape = ConvShape { in_channels: 5, out_channels: 19, height: 13, width: 11 };
                let dy = f32s(&rng.vec(shape.output_len(), -magnitude, magnitude));
                let wt = f32s(&rng.vec(shape.weight_len(), -0.5, 0.5));
                // Unscaled, f16 would flush these to zero or make them infinite.
                let naive = conv::reference::backward_input(shape, &mixed::round_scaled(&dy, 0), &to_f64(&wt));
                let exact = conv::reference::backward_input(shape, &to_f64(&dy), &to_f64(&wt));
                let naive_err = stylize::test_support::rel_err_f64(&naive, &exact);
                // NaN counts as failing too.
                assert!(
                    naive_err.is_nan() || naive_err >= 0.5,
                    "{magnitude:e}: unscaled f16 should fail here ({naive_err:e})"
                );
                let weights = GpuConvWeights::upload(&ctx, "t", &wt, &[0.0; 19], 19, 5).unwrap();
                let grad_output = ctx.upload("dy", &dy).unwrap();
                let out = poisoned(&ctx, shape.input_len());
                run(&ctx, &conv::backward_input(&ctx, shape, &grad_output, &weights, &out, false, None).unwrap());
                assert_mixed(
                    &format!("mixed conv backward, gradient ~{magnitude:e}, {algorithm:?} ({grid})"),
                    &read(&ctx, &out, shape.input_len()),
                    &conv::reference::backward_input_mixed(shape, &dy, None, &wt),
                    &exact,
                );
                // Activations of that size in the forward.
                let x = f32s(&rng.vec(shape.input_len(), 0.0, magnitude));
                let x_buffer = ctx.upload("x", &x).unwrap();
                let out = poisoned(&ctx, shape.output_len());
                let forward_shape = ConvShape { in_channels: 5, out_channels: 19, ..shape };
                let fw = GpuConvWeights::upload(&ctx, "f", &wt, &[0.0; 19], 19, 5).unwrap();
                run(&ctx, &conv::forward(&ctx, forward_shape, &x_buffer, &fw, &out, false).unwrap());
                let zeros = vec![0.0; 19];
                assert_mixed(
                    &format!("mixed conv forward, activations ~{magnitude:e}, {algorithm:?} ({grid})"),
                    &read(&ctx, &out, shape.output_len()),
                    &conv::reference::forward_mixed(forward_shape, &x, &wt, &zeros),
                    &conv::reference::forward(forward_shape, &to_f64(&x), &to_f64(&wt), &zeros),
                );
            }
        }
        // The Gram: features in the thousands, dL/dG around 1e-9 and 1e5.
        let shape = GramShape { channels: 67, n: 13 * 11 };
        let f = f32s(&rng.vec(shape.features_len(), 0.0, 3000.0));
        let features = ctx.upload("f", &f).unwrap();
        let out = poisoned(&ctx, shape.gram_len());
        run(&ctx, &gram::forward(&ctx, shape, &features, &out).unwrap());
        assert_mixed(
            &format!("mixed gram forward, features ~3e3 ({grid})"),
            &read(&ctx, &out, shape.gram_len()),
            &gram::reference::forward_mixed(shape, &f),
            &gram::reference::forward(shape, &to_f64(&f)),
        );
        for magnitude in [1e-9, 1e5] {
            let dg = f32s(&rng.vec(shape.gram_len(), -magnitude, magnitude));
            let grad_gram = ctx.upload("dg", &dg).unwrap();
            for algorithm in [ConvAlgorithm::Auto, ConvAlgorithm::Direct] {
                algorithm.force(&mut ctx);
                let grad_features = poisoned(&ctx, shape.features_len());
                run(&ctx, &gram::backward(&ctx, shape, &features, &grad_gram, &grad_features, false).unwrap());
                assert_mixed(
                    &format!("mixed gram backward, dL/dG ~{magnitude:e}, {algorithm:?} ({grid})"),
                    &read(&ctx, &grad_features, shape.features_len()),
                    &gram::reference::backward_mixed(shape, &f, &dg),
                    &gram::reference::backward(shape, &to_f64(&f), &to_f64(&dg)),
                );
            }
        }
    }
}

/// Weights uploaded for one arithmetic are refused by a product of the other, instead of
/// silently skipping (or double-applying) their rounding.
#[test]
fn gpu_mixed_refuses_weights_of_the_other_precision() {
    let Some(mut ctx) = gpu_or_skip("gpu_mixed_refuses_weights_of_the_other_precision") else { return };
    let shape = ConvShape { in_channels: 2, out_channels: 3, height: 4, width: 5 };
    let weights = GpuConvWeights::upload(&ctx, "f32", &vec![0.25; shape.weight_len()], &[0.0; 3], 3, 2).unwrap();
    let x = ctx.upload("x", &vec![1.0; shape.input_len()]).unwrap();
    let y = ctx.buffer("y", shape.output_len()).unwrap();
    ctx.precision = PrecisionChoice::emulated();
    let err = conv::forward(&ctx, shape, &x, &weights, &y, false).err().expect("refused");
    assert!(err.to_string().contains("weights uploaded for f32"), "{err}");
}

/// Conv shapes for the matrix units besides CONV_SHAPES: a full 64 x 64 tile grid, and a long
/// reduction over few tiles (split-K: 9 splits).
const MATRIX_CONV_SHAPES: [(usize, usize, usize, usize); 2] = [(64, 64, 32, 32), (256, 128, 8, 8)];

/// Within F32_TOL of the rounded f64 reference and of the emulation (the same rounded operands,
/// so only the order of the f32 sums differs).
fn assert_matrix(what: &str, matrix: &[f32], emulated: &[f32], rounded: &[f64]) {
    assert_close(&format!("{what} against the rounded reference"), matrix, rounded, F32_TOL);
    assert_close(&format!("{what} against the emulation"), matrix, &to_f64(emulated), F32_TOL);
}

/// The cooperative-matrix kernels (`conv3x3_coop` forward with bias and ReLU, backward to the input
/// written, accumulated and through a ReLU mask, with and without split-K; `gram_forward_coop`
/// with and without splits; `gram_backward_coop` written and accumulated; both masked, as `--mask`
/// runs them) against the emulation
/// and the rounded f64 reference, at odd sizes, poisoned outputs, on the full and a folded grid.
/// Skipped, visibly, where the adapter has no cooperative matrices the kernels use (lavapipe
/// before Mesa 26); `STYLIZE_REQUIRE_MATRIX_UNITS=1` fails instead.
#[test]
fn gpu_mixed_matrix_kernels_match_the_emulation() {
    let test = "gpu_mixed_matrix_kernels_match_the_emulation";
    for (grid, matrix) in matrix_contexts(test) {
        let emulated = emulated_twin(&matrix);
        let mut rng = Rng::new(26);
        let mut splits_seen = [false, false];
        for (cin, cout, h, w) in CONV_SHAPES.into_iter().chain(MATRIX_CONV_SHAPES) {
            let shape = ConvShape { in_channels: cin, out_channels: cout, height: h, width: w };
            let what = format!("{shape:?}, {grid}");
            let x = f32s(&rng.vec(shape.input_len(), -1.0, 1.0));
            let dy = f32s(&rng.vec(shape.output_len(), -1.0, 1.0));
            let wt = f32s(&rng.vec(shape.weight_len(), -0.5, 0.5));
            let b = f32s(&rng.vec(cout, -0.5, 0.5));
            let base = f32s(&rng.vec(shape.input_len(), -1.0, 1.0));
            // A forward output's ReLU mask for the fused backward (bit 3).
            let relu_out = rng.vec(shape.output_len(), -1.0, 1.0);
            let keep: Vec<bool> = relu_out.iter().map(|&v| v > 0.0).collect();
            let mut outputs = Vec::new();
            for ctx in [&matrix, &emulated] {
                let weights = GpuConvWeights::upload(ctx, "t", &wt, &b, cout, cin).unwrap();
                let (input, grad_output) = (ctx.upload("x", &x).unwrap(), ctx.upload("dy", &dy).unwrap());
                let mask = ctx.upload_words("mask", &relu::reference::mask_bits(&relu_out)).unwrap();
                let (out, back) = (poisoned(ctx, shape.output_len()), poisoned(ctx, shape.input_len()));
                let (added, masked) = (ctx.upload("base", &base).unwrap(), poisoned(ctx, shape.input_len()));
                let steps = [
                    conv::forward(ctx, shape, &input, &weights, &out, true).unwrap(),
                    conv::backward_input(ctx, shape, &grad_output, &weights, &back, false, None).unwrap(),
                    conv::backward_input(ctx, shape, &grad_output, &weights, &added, true, None).unwrap(),
                    conv::backward_input(ctx, shape, &grad_output, &weights, &masked, false, Some(&mask)).unwrap(),
                ];
                if std::ptr::eq(ctx, &matrix) {
                    let names: Vec<String> = steps.iter().flat_map(entries).collect();
                    assert!(names.iter().any(|e| e.ends_with("::conv3x3_coop")), "{what}: {names:?}");
                    splits_seen[usize::from(names.iter().any(|e| e.ends_with("::conv3x3_split_sum")))] = true;
                }
                steps.iter().for_each(|step| run(ctx, step));
                outputs.push([
                    read(ctx, &out, shape.output_len()),
                    read(ctx, &back, shape.input_len()),
                    read(ctx, &added, shape.input_len()),
                    read(ctx, &masked, shape.input_len()),
                ]);
            }
            let forward = relu::reference::forward(&conv::reference::forward_mixed(shape, &x, &wt, &to_f64(&b)));
            let backward = conv::reference::backward_input_mixed(shape, &dy, None, &wt);
            let plus: Vec<f64> = backward.iter().zip(&base).map(|(r, b)| r + *b as f64).collect();
            let through_mask = conv::reference::backward_input_mixed(shape, &dy, Some(&keep), &wt);
            let [m, e] = [&outputs[0], &outputs[1]];
            assert_matrix(&format!("matrix conv forward {what}"), &m[0], &e[0], &forward);
            assert_matrix(&format!("matrix conv backward {what}"), &m[1], &e[1], &backward);
            assert_matrix(&format!("matrix conv backward += {what}"), &m[2], &e[2], &plus);
            assert_matrix(&format!("matrix conv backward through the ReLU mask {what}"), &m[3], &e[3], &through_mask);
        }
        assert_eq!(splits_seen, [true, true], "{grid}: split-K both off and on");
        for (c, n) in [(3, 13 * 17), (67, 37 * 61), (130, 5), (512, 64), (40, 3001)] {
            let shape = GramShape { channels: c, n };
            let what = format!("{shape:?}, {grid}");
            let f = f32s(&rng.vec(shape.features_len(), -1.0, 1.0));
            let dg = f32s(&rng.vec(shape.gram_len(), -1e-3, 1e-3));
            let base = f32s(&rng.vec(shape.features_len(), -1.0, 1.0));
            let mut mask = soft_mask(&mut rng, n, 0.3);
            mask[n / 2] = 1.0;
            let w = f32s(&gram::mask_column_weights(&mask).1);
            let mut results = Vec::new();
            for ctx in [&matrix, &emulated] {
                let (features, grad_gram) = (ctx.upload("f", &f).unwrap(), ctx.upload("dg", &dg).unwrap());
                let gram_out = poisoned(ctx, shape.gram_len());
                let (written, added) = (poisoned(ctx, shape.features_len()), ctx.upload("base", &base).unwrap());
                let weights = ctx.upload("w", &w).unwrap();
                let (partials, masked_out) = (poisoned(ctx, shape.partials_len()), poisoned(ctx, shape.gram_len()));
                let (masked_written, masked_added) =
                    (poisoned(ctx, shape.features_len()), ctx.upload("base", &base).unwrap());
                let octave = gram::weight_exponent(&w);
                let steps = [
                    gram::forward(ctx, shape, &features, &gram_out).unwrap(),
                    gram::backward(ctx, shape, &features, &grad_gram, &written, false).unwrap(),
                    gram::backward(ctx, shape, &features, &grad_gram, &added, true).unwrap(),
                    gram::forward_masked_with_partials(ctx, shape, &features, &weights, octave, &partials, &masked_out)
                        .unwrap(),
                    gram::backward_masked(ctx, shape, &features, &weights, &grad_gram, &masked_written, false).unwrap(),
                    gram::backward_masked(ctx, shape, &features, &weights, &grad_gram, &masked_added, true).unwrap(),
                ];
                if std::ptr::eq(ctx, &matrix) {
                    let names: Vec<String> = steps.iter().flat_map(entries).collect();
                    for entry in ["::gram_forward_coop", "::gram_backward_coop"] {
                        assert!(names.iter().any(|e| e.ends_with(entry)), "{what}: {names:?}");
                    }
                }
                steps.iter().for_each(|step| run(ctx, step));
                results.push([
                    read(ctx, &gram_out, shape.gram_len()),
                    read(ctx, &written, shape.features_len()),
                    read(ctx, &added, shape.features_len()),
                    read(ctx, &masked_out, shape.gram_len()),
                    read(ctx, &masked_written, shape.features_len()),
                    read(ctx, &masked_added, shape.features_len()),
                ]);
            }
            let backward = gram::reference::backward_mixed(shape, &f, &dg);
            let plus: Vec<f64> = backward.iter().zip(&base).map(|(r, b)| r + *b as f64).collect();
            let [m, e] = [&results[0], &results[1]];
            assert_matrix(
                &format!("matrix gram forward {what}"),
                &m[0],
                &e[0],
                &gram::reference::forward_mixed(shape, &f),
            );
            assert_matrix(&format!("matrix gram backward {what}"), &m[1], &e[1], &backward);
            assert_matrix(&format!("matrix gram backward += {what}"), &m[2], &e[2], &plus);
            let masked_backward = gram::reference::backward_masked_mixed(shape, &f, &w, &dg);
            let masked_plus: Vec<f64> = masked_backward.iter().zip(&base).map(|(r, b)| r + *b as f64).collect();
            assert_matrix(
                &format!("matrix masked gram forward {what}"),
                &m[3],
                &e[3],
                &gram::reference::forward_masked_mixed(shape, &f, &w),
            );
            assert_matrix(&format!("matrix masked gram backward {what}"), &m[4], &e[4], &masked_backward);
            assert_matrix(&format!("matrix masked gram backward += {what}"), &m[5], &e[5], &masked_plus);
        }
        eprintln!("{test}: cooperative-matrix kernels on {} ({grid}) agree with the emulation", matrix.adapter.name);
    }
}
