//! Arrays in bands of rows (`ops::bands`), on the GPU against the f64 references of what they
//! stand for: the host round trip, rectangles cut out of and written into bands they cross,
//! reductions over bands, Adam band by band, and the windowed total variation a tile computes.
//! Bands are forced small (`Context::set_band_limit`), at odd sizes, outputs NaN-poisoned.

mod common;

use common::*;
use stylize::gpu::Step;
use stylize::ops::bands::{Bands, copy_rect_from_bands, copy_rect_into_bands, split_rows};
use stylize::ops::region::{self, Rect};
use stylize::ops::{ActShape, tv, vector};
use stylize::optim::adam::{self, Adam, AdamConfig};

/// 3 x 23 x 17 in bands of 4 rows (816 bytes): 6 bands, the last of 3 rows.
const SHAPE: ActShape = ActShape { channels: 3, height: 23, width: 17 };
const BAND_BYTES: u64 = 4 * 3 * 17 * 4;

fn banded_contexts(test: &str) -> Vec<(String, stylize::gpu::Context)> {
    contexts(test)
        .into_iter()
        .map(|(grid, mut ctx)| {
            ctx.set_band_limit(BAND_BYTES);
            (grid, ctx)
        })
        .collect()
}

/// Poisons every band.
fn poison(ctx: &stylize::gpu::Context, bands: &Bands) {
    for band in bands.bands() {
        ctx.poison(&band.buffer);
    }
}

/// `out` equals `expected` where that is finite (within f32 rounding) and is NaN where it is NaN.
fn assert_same_or_nan(what: &str, out: &[f32], expected: &[f64]) {
    assert_eq!(out.len(), expected.len(), "{what}: length");
    for (i, (&o, &e)) in out.iter().zip(expected).enumerate() {
        let ok = if e.is_nan() { o.is_nan() } else { (o as f64 - e).abs() <= 1e-7 * e.abs().max(1e-30) };
        assert!(ok, "{what}: value {i} is {o}, not {e}");
    }
}

#[test]
fn bands_split_rows_to_fit_the_limit() {
    let rows = split_rows("x", SHAPE, BAND_BYTES).unwrap();
    assert_eq!(rows, vec![0..4, 4..8, 8..12, 12..16, 16..20, 20..23]);
    assert_eq!(split_rows("x", SHAPE, 1 << 20).unwrap(), vec![0..23]);
    let err = split_rows("the image", SHAPE, 3 * 17 * 4 - 1).unwrap_err().to_string();
    assert!(err.contains("one row of the image"), "{err}");
}

#[test]
fn bands_round_trip_through_the_host() {
    let mut rng = Rng::new(51);
    for (grid, ctx) in banded_contexts("bands_round_trip_through_the_host") {
        let values = to_f32(&rng.vec(SHAPE.len(), -1.0, 1.0));
        let bands = Bands::new(&ctx, "test", SHAPE).unwrap();
        assert_eq!(bands.bands().len(), 6, "{grid}");
        assert!(bands.bands().iter().all(|b| b.buffer.size() <= BAND_BYTES));
        poison(&ctx, &bands);
        bands.write(&ctx, &values);
        assert_eq!(bands.read(&ctx).unwrap(), values, "{grid}");
        // Band 1 holds rows 4..8 of every channel.
        let band = &bands.bands()[1];
        let part = read(&ctx, &band.buffer, band.shape.len());
        assert_eq!(part[0], values[4 * 17], "{grid}: band 1 starts at row 4 of channel 0");
        assert_eq!(part[4 * 17], values[23 * 17 + 4 * 17], "{grid}: then row 4 of channel 1");
        let zeros = Bands::zeros(&ctx, "zeros", SHAPE).unwrap();
        assert!(zeros.read(&ctx).unwrap().iter().all(|&v| v == 0.0));
        assert!(zeros.same_split(&bands) && bands.like(&ctx, "like").unwrap().same_split(&bands));
    }
}

#[test]
fn rectangles_are_cut_from_and_written_into_the_bands_they_cross() {
    let mut rng = Rng::new(52);
    for (grid, ctx) in banded_contexts("rectangles_are_cut_from_and_written_into_the_bands_they_cross") {
        let x = rng.vec(SHAPE.len(), -1.0, 1.0);
        let bands = Bands::new(&ctx, "source", SHAPE).unwrap();
        bands.write(&ctx, &to_f32(&x));
        // Rows 2..21 cross five bands; a rectangle inside one band; one row at a band's end.
        let rects = [
            Rect { y: 2, x: 3, height: 19, width: 11 },
            Rect { y: 9, x: 0, height: 2, width: 17 },
            Rect { y: 15, x: 16, height: 1, width: 1 },
            Rect { y: 0, x: 0, height: 23, width: 17 },
        ];
        let dst_dims = ActShape { channels: 3, height: 26, width: 19 };
        for from in rects {
            let to = (1, 2);
            let dst = poisoned(&ctx, dst_dims.len());
            let mut step = Step::new();
            copy_rect_from_bands(&ctx, &mut step, &bands, from, &dst, dst_dims, to).unwrap();
            run(&ctx, &step);
            let nan = vec![f64::NAN; dst_dims.len()];
            let expected = region::reference::copy_rect(&x, SHAPE, from, &nan, dst_dims, to);
            assert_same_or_nan(
                &format!("{from:?} out of bands ({grid})"),
                &read(&ctx, &dst, dst_dims.len()),
                &expected,
            );

            // And back: the copied block into poisoned bands at another place.
            let back = Bands::new(&ctx, "destination", SHAPE).unwrap();
            poison(&ctx, &back);
            let moved = Rect { y: to.0, x: to.1, ..from };
            let at = (SHAPE.height - from.height, SHAPE.width - from.width);
            let mut step = Step::new();
            copy_rect_into_bands(&ctx, &mut step, &dst, dst_dims, moved, &back, at).unwrap();
            run(&ctx, &step);
            let copied = region::reference::copy_rect(&x, SHAPE, from, &nan, dst_dims, to);
            let nan = vec![f64::NAN; SHAPE.len()];
            let expected = region::reference::copy_rect(&copied, dst_dims, moved, &nan, SHAPE, at);
            assert_same_or_nan(
                &format!("{from:?} into bands at {at:?} ({grid})"),
                &back.read(&ctx).unwrap(),
                &expected,
            );
        }
        let dst = poisoned(&ctx, dst_dims.len());
        let beyond = Rect { y: 20, x: 0, height: 4, width: 17 };
        assert!(copy_rect_from_bands(&ctx, &mut Step::new(), &bands, beyond, &dst, dst_dims, (0, 0)).is_err());
        let whole = Rect { y: 0, x: 0, height: 23, width: 17 };
        assert!(copy_rect_into_bands(&ctx, &mut Step::new(), &dst, dst_dims, whole, &bands, (1, 0)).is_err());
    }
}

#[test]
fn reductions_over_bands_match_reference() {
    let mut rng = Rng::new(53);
    for (grid, ctx) in banded_contexts("reductions_over_bands_match_reference") {
        let (a, b) = (rng.vec(SHAPE.len(), -1.0, 1.0), rng.vec(SHAPE.len(), -1.0, 1.0));
        let (x, y) = (Bands::new(&ctx, "x", SHAPE).unwrap(), Bands::new(&ctx, "y", SHAPE).unwrap());
        x.write(&ctx, &to_f32(&a));
        y.write(&ctx, &to_f32(&b));
        let out = poisoned(&ctx, 4);
        let mut step = Step::new();
        vector::dot_bands(&ctx, &mut step, &x, &y, &out, 0, 0.5).unwrap();
        vector::abs_sum_bands(&ctx, &mut step, &x, &out, 1).unwrap();
        vector::abs_max_bands(&ctx, &mut step, &y, &out, 2).unwrap();
        run(&ctx, &step);
        let got = read(&ctx, &out, 4);
        let want =
            [0.5 * vector::reference::dot(&a, &b), vector::reference::abs_sum(&a), vector::reference::abs_max(&b)];
        for (k, what) in ["dot", "sum |x|", "max |y|"].into_iter().enumerate() {
            assert_close(&format!("{what} over bands ({grid})"), &got[k..k + 1], &want[k..k + 1], F32_TOL);
        }
        assert!(got[3].is_nan(), "slot 3 untouched");
        let other = Bands::new(&ctx, "other", ActShape { height: 24, ..SHAPE }).unwrap();
        assert!(vector::dot_bands(&ctx, &mut Step::new(), &x, &other, &out, 0, 1.0).is_err(), "mismatched split");
    }
}

#[test]
fn adam_in_bands_matches_reference() {
    let mut rng = Rng::new(54);
    for (grid, ctx) in banded_contexts("adam_in_bands_matches_reference") {
        let mut param = rng.vec(SHAPE.len(), -1.0, 1.0);
        let (p, g) = (Bands::new(&ctx, "param", SHAPE).unwrap(), Bands::new(&ctx, "grad", SHAPE).unwrap());
        p.write(&ctx, &to_f32(&param));
        let config = AdamConfig::new(0.01);
        let (mut gpu, kernels) = Adam::banded(&ctx, &p, &g, config).unwrap();
        assert_eq!(kernels.len(), 6);
        let mut step = Step::new();
        let at: Vec<usize> = kernels.into_iter().map(|k| step.push(k)).collect();
        let mut state = adam::reference::AdamState::new(SHAPE.len());
        for _ in 0..3 {
            let grad = rng.vec(SHAPE.len(), -1.0, 1.0);
            g.write(&ctx, &to_f32(&grad));
            gpu.advance_bands(&ctx, &at.iter().map(|&k| step.kernel(k)).collect::<Vec<_>>());
            run(&ctx, &step);
            adam::reference::step(config, &mut state, &mut param, &grad);
        }
        assert_close(&format!("adam in bands ({grid})"), &p.read(&ctx).unwrap(), &param, F32_TOL);
        assert_close(&format!("adam m in bands ({grid})"), &gpu.exp_avg.read(&ctx).unwrap(), &state.exp_avg, F32_TOL);
    }
}

/// A tile's window of the image: the terms anchored at its owned pixels (forward) and the
/// gradient at them (backward) are the whole image's, for windows inside the image and at its
/// edges; the owned parts of four windows add up to the whole.
#[test]
fn total_variation_of_a_window_matches_the_whole_image() {
    let mut rng = Rng::new(55);
    let whole = ActShape { channels: 3, height: 29, width: 37 };
    // (window origin, window size, owned rows and columns of the image): a halo of one pixel
    // (the least a tile has) or more where the window is not at the image's edge.
    let cases = [
        ((5, 7), (15, 20), (6..19, 8..26)),
        ((5, 7), (15, 20), (7..17, 10..24)),
        ((14, 17), (15, 20), (15..29, 18..37)),
        ((0, 0), (12, 37), (0..11, 0..37)),
        ((0, 0), (29, 37), (0..29, 0..37)),
    ];
    for (grid, ctx) in contexts("total_variation_of_a_window_matches_the_whole_image") {
        let x = rng.vec(whole.len(), 0.0, 1.0);
        let scale = 0.25;
        let reference_grad = tv::reference::backward(whole, &x, scale);
        for ((oy, ox), (h, w), (rows, cols)) in cases.clone() {
            let local = ActShape { channels: 3, height: h, width: w };
            let from = Rect { y: oy, x: ox, height: h, width: w };
            let window_values = region::reference::copy_rect(&x, whole, from, &vec![0.0; local.len()], local, (0, 0));
            let image = upload(&ctx, &window_values);
            let owned = Rect { y: rows.start - oy, x: cols.start - ox, height: rows.len(), width: cols.len() };
            let losses = poisoned(&ctx, 2);
            let mut step = Step::new();
            tv::forward_owned(&ctx, &mut step, local, owned, &image, &losses, 1, scale).unwrap();
            run(&ctx, &step);
            let want = tv::reference::forward_owned(whole, &x, scale, rows.clone(), cols.clone());
            assert_close(&format!("tv of {owned:?} ({grid})"), &read(&ctx, &losses, 2)[1..], &[want], F32_TOL);

            let grad = poisoned(&ctx, local.len());
            run(&ctx, &single(tv::backward(&ctx, local, &image, &grad, scale, false)));
            let got = read(&ctx, &grad, local.len());
            let nan = vec![f64::NAN; local.len()];
            let owned_of_whole = Rect { y: rows.start, x: cols.start, height: rows.len(), width: cols.len() };
            let want =
                region::reference::copy_rect(&reference_grad, whole, owned_of_whole, &nan, local, (owned.y, owned.x));
            let (mut kept, mut wanted) = (Vec::new(), Vec::new());
            for (g, w) in got.iter().zip(&want).filter(|(_, w)| !w.is_nan()) {
                kept.push(*g);
                wanted.push(*w);
            }
            assert_eq!(kept.len(), 3 * rows.len() * cols.len());
            assert_close(&format!("tv gradient at {owned:?} ({grid})"), &kept, &wanted, F32_TOL);
        }
        let total = tv::reference::forward(whole, &x, scale);
        let parts: f64 = [(0..15, 0..20), (0..15, 20..37), (15..29, 0..20), (15..29, 20..37)]
            .into_iter()
            .map(|(r, c)| tv::reference::forward_owned(whole, &x, scale, r, c))
            .sum();
        assert!((parts - total).abs() <= 1e-12 * total, "{parts} vs {total}");
    }
}
