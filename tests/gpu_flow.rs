//! The optical-flow kernels (`ops::flow`) against their f64 references, on random inputs at odd
//! sizes (one row, one column, one pixel among them), outputs poisoned (NaN) first, on the full
//! grid and on a split (folded) grid.

mod common;

use common::*;
use stylize::ops::ActShape;
use stylize::ops::flow::{self, reference::Rule};

/// (height, width).
const SIZES: [(usize, usize); 7] = [(23, 37), (3, 5), (1, 17), (19, 1), (1, 1), (2, 2), (61, 64)];

/// The values as the GPU gets them (f32), back in f64: the references see the same inputs.
fn as_uploaded(values: Vec<f64>) -> Vec<f64> {
    to_f64(&to_f32(&values))
}

/// A planar `2 x H x W` flow whose pixel `(x, y)` lands on `target(x, y)`.
fn flow_to(rng: &mut Rng, h: usize, w: usize, mut target: impl FnMut(&mut Rng, f64, f64) -> (f64, f64)) -> Vec<f64> {
    let n = h * w;
    let mut flow = vec![0.0; 2 * n];
    for y in 0..h {
        for x in 0..w {
            let (sx, sy) = target(rng, x as f64, y as f64);
            flow[y * w + x] = sx - x as f64;
            flow[n + y * w + x] = sy - y as f64;
        }
    }
    as_uploaded(flow)
}

/// Landing points of every kind the warp tells apart: anywhere around the image (a good share
/// outside), integer points on the first or last column or row (`sx = W-1` exactly), the last
/// column or row between pixels, integer interior points, and just past the bounds.
fn warp_flow(rng: &mut Rng, h: usize, w: usize) -> Vec<f64> {
    let (xmax, ymax) = ((w - 1) as f64, (h - 1) as f64);
    flow_to(rng, h, w, |rng, _, _| {
        let integer = |rng: &mut Rng, max: f64| (rng.uniform() * (max + 1.0)).floor().min(max);
        let edge = |rng: &mut Rng, max: f64| if rng.uniform() < 0.5 { 0.0 } else { max };
        match rng.uniform() {
            r if r < 0.4 => {
                (rng.range(-0.25 * xmax - 1.0, 1.25 * xmax + 1.0), rng.range(-0.25 * ymax - 1.0, 1.25 * ymax + 1.0))
            }
            r if r < 0.6 => {
                if rng.uniform() < 0.5 {
                    (edge(rng, xmax), integer(rng, ymax))
                } else {
                    (integer(rng, xmax), edge(rng, ymax))
                }
            }
            r if r < 0.75 => {
                if rng.uniform() < 0.5 {
                    (xmax, rng.range(0.0, ymax))
                } else {
                    (rng.range(0.0, xmax), ymax)
                }
            }
            r if r < 0.85 => (integer(rng, xmax), integer(rng, ymax)),
            _ => {
                let past = rng.range(1e-3, 0.5);
                match (rng.uniform() * 4.0) as usize {
                    0 => (-past, rng.range(0.0, ymax)),
                    1 => (xmax + past, rng.range(0.0, ymax)),
                    2 => (rng.range(0.0, xmax), -past),
                    _ => (rng.range(0.0, xmax), ymax + past),
                }
            }
        }
    })
}

#[test]
fn gpu_warp_matches_reference() {
    let mut rng = Rng::new(71);
    let fill = [0.485f32, -0.456, 0.406];
    let fill64 = fill.map(f64::from);
    for (grid, ctx) in contexts("gpu_warp_matches_reference") {
        for (h, w) in SIZES {
            let shape = ActShape { channels: 3, height: h, width: w };
            let n = h * w;
            let image = as_uploaded(rng.vec(shape.len(), -2.0, 2.0));
            let flow_values = warp_flow(&mut rng, h, w);
            let expected = flow::reference::warp(shape, &image, &flow_values, fill64);
            let (image_buffer, flow_buffer) = (upload(&ctx, &image), upload(&ctx, &flow_values));
            let out = poisoned(&ctx, shape.len());
            run(&ctx, &single(flow::warp(&ctx, shape, &image_buffer, &flow_buffer, &out, fill)));
            let got = read(&ctx, &out, shape.len());
            let what = format!("warp {h} x {w} ({grid})");
            assert_close(&what, &got, &expected, F32_TOL);

            // Value by value: the fill exactly where the sample is outside, the interpolation
            // within f32 rounding elsewhere (NaN fails both).
            let mut outside = 0;
            let mut on_last = 0;
            for i in 0..n {
                let (sx, sy) = ((i % w) as f64 + flow_values[i], (i / w) as f64 + flow_values[n + i]);
                let out_of_image = flow::reference::sample(&image[..n], h, w, sx, sy).is_none();
                outside += out_of_image as usize;
                on_last += (!out_of_image && (sx == (w - 1) as f64 || sy == (h - 1) as f64)) as usize;
                for c in 0..3 {
                    let (g, e) = (got[c * n + i], expected[c * n + i]);
                    if out_of_image {
                        assert!(
                            g == fill[c],
                            "{what}: pixel {i} channel {c} samples ({sx}, {sy}), outside: {g} != fill"
                        );
                    } else {
                        let err = (f64::from(g) - e).abs();
                        assert!(
                            err <= 1e-5 * (1.0 + e.abs()),
                            "{what}: pixel {i} channel {c} at ({sx}, {sy}): {g} vs {e}"
                        );
                    }
                }
            }
            // The fill path and the clamped last column and row both run (beyond the tiniest sizes).
            if n >= 15 {
                assert!(outside * 10 >= n, "{what}: only {outside} of {n} samples outside");
                assert!(on_last * 10 >= n, "{what}: only {on_last} of {n} samples on the last column or row");
            }
        }
    }
}

#[test]
fn gpu_warp_rejects_other_than_three_channels() {
    for (_, ctx) in contexts("gpu_warp_rejects_other_than_three_channels").into_iter().take(1) {
        let shape = ActShape { channels: 4, height: 3, width: 5 };
        let buffer = poisoned(&ctx, shape.len());
        assert!(flow::warp(&ctx, shape, &buffer, &buffer, &buffer, [0.0; 3]).is_err());
        let shape = ActShape { channels: 3, height: 3, width: 5 };
        let small = poisoned(&ctx, 2 * 15 - 1);
        assert!(flow::warp(&ctx, shape, &buffer, &small, &buffer, [0.0; 3]).is_err(), "a flow buffer too small");
    }
}

/// A backward flow `b` and a forward flow `f` that make every rule decide a good share of
/// pixels. `b` is a translation per vertical stripe of 3 to 6 columns, each stripe's a step of 0.5
/// to 0.8 pixels from the last one's (small enough that a landing across the edge need not be an
/// occlusion, large enough that the edge is a motion boundary): an integer translation, exact, on
/// a third of them, else fractional with a little noise; every fourth stripe instead points out
/// past the left edge (outside, as are landings past the image's other edges). `f = -b`, which
/// takes each landing point back where it stays in its stripe, perturbed by 1 to 3 pixels on
/// every fourth band of 3 rows (occlusions). The image's edge pixels are offset a little, to test
/// the gradient at the border. Along a dimension of 1 pixel `b` is 0.
fn scene(rng: &mut Rng, h: usize, w: usize) -> (Vec<f64>, Vec<f64>) {
    let n = h * w;
    let mut backward = vec![0.0; 2 * n];
    let (mut x0, mut stripe) = (0, 0);
    let mut t: (f64, f64) = (rng.range(-1.0, 1.0), rng.range(-1.0, 1.0));
    // A step of 0.5 to 0.8 in a random direction, turned back toward 0 past 2.
    let step = |rng: &mut Rng, t: f64| {
        let size = rng.range(0.5, 0.8);
        if t > 2.0 || (t > -2.0 && rng.uniform() < 0.5) { t - size } else { t + size }
    };
    while x0 < w {
        let x1 = (x0 + 3 + (rng.uniform() * 4.0) as usize).min(w);
        let integer = rng.uniform() < 1.0 / 3.0;
        let (tx, ty) = if stripe % 4 == 1 {
            (-(x1 as f64) - rng.range(0.5, 2.0), rng.range(-2.0, 2.0))
        } else {
            t = (step(rng, t.0), step(rng, t.1));
            if integer { (t.0.round(), t.1.round()) } else { t }
        };
        for y in 0..h {
            for x in x0..x1 {
                let noise = if integer { (0.0, 0.0) } else { (rng.range(-0.01, 0.01), rng.range(-0.01, 0.01)) };
                backward[y * w + x] = tx + noise.0;
                backward[n + y * w + x] = ty + noise.1;
            }
        }
        x0 = x1;
        stripe += 1;
    }
    // The image's edge pixels offset from their neighbours by 0.05 to 0.4: within a stripe the
    // border's half difference and a full one then fall on either side of the boundary threshold
    // on many of them.
    let mut offset = |rng: &mut Rng, i: usize| {
        for plane in [0, n] {
            let size = rng.range(0.05, 0.4);
            backward[plane + i] += if rng.uniform() < 0.5 { -size } else { size };
        }
    };
    if w >= 3 {
        (0..h).for_each(|y| [0, w - 1].into_iter().for_each(|x| offset(rng, y * w + x)));
    }
    if h >= 3 {
        (0..w).for_each(|x| [0, h - 1].into_iter().for_each(|y| offset(rng, y * w + x)));
    }
    // Across an image one pixel high or wide, only a displacement of 0 lands inside.
    if h == 1 {
        backward[n..].fill(0.0);
    }
    if w == 1 {
        backward[..n].fill(0.0);
    }
    let mut forward: Vec<f64> = backward.iter().map(|b| -b).collect();
    for y in (0..h).filter(|y| (y / 3) % 4 == 2) {
        for x in 0..w {
            let (r, angle) = (rng.range(1.0, 3.0), rng.range(0.0, std::f64::consts::TAU));
            forward[y * w + x] += r * angle.cos();
            forward[n + y * w + x] += r * angle.sin();
        }
    }
    (as_uploaded(forward), as_uploaded(backward))
}

/// The tolerance on ties: a pixel whose occlusion or motion-boundary quantity is within this of
/// its threshold (relative), or whose landing point is within it of a bound without being on it,
/// may go either way in f32.
const TIE: f64 = 1e-4;

#[test]
fn gpu_consistency_matches_reference_exactly() {
    let mut rng = Rng::new(72);
    for (grid, ctx) in contexts("gpu_consistency_matches_reference_exactly") {
        for (h, w) in SIZES {
            for round in 0..2 {
                let n = h * w;
                let (forward, backward) = scene(&mut rng, h, w);
                let checks = flow::reference::consistency_checks(h, w, &forward, &backward);
                let expected = flow::reference::consistency(h, w, &forward, &backward);
                let (f, b) = (upload(&ctx, &forward), upload(&ctx, &backward));
                let out = poisoned(&ctx, n);
                run(&ctx, &single(flow::consistency(&ctx, h, w, &f, &b, &out)));
                let got = read(&ctx, &out, n);
                let what = format!("consistency {h} x {w} round {round} ({grid})");
                let mut ties = 0;
                for i in 0..n {
                    let g = got[i];
                    assert!(g == 0.0 || g == 1.0, "{what}: pixel {i} is {g}, not 0 or 1");
                    let tie = checks[i].threshold < TIE || (checks[i].bounds > 0.0 && checks[i].bounds < TIE);
                    if tie {
                        ties += 1;
                        continue;
                    }
                    assert_eq!(
                        f64::from(g),
                        expected[i],
                        "{what}: pixel {i} (x {}, y {}), reference {:?}",
                        i % w,
                        i / w,
                        checks[i]
                    );
                }
                let count = |rule| checks.iter().filter(|c| c.rule == rule).count();
                let counts = [Rule::Outside, Rule::Occlusion, Rule::MotionBoundary, Rule::Reliable].map(count);
                if grid == "full grid" {
                    eprintln!("{what}: outside/occlusion/boundary/reliable {counts:?}, ties {ties}");
                }
                assert!(ties * 100 <= n.max(100), "{what}: {ties} ties of {n}");
                if n >= 500 {
                    for (rule, k) in ["outside", "occlusion", "motion boundary", "reliable"].iter().zip(counts) {
                        assert!(k * 10 >= n, "{what}: only {k} of {n} pixels are {rule}");
                    }
                }
            }
        }
    }
}

#[test]
fn gpu_consistency_of_zero_flows_is_all_reliable() {
    for (grid, ctx) in contexts("gpu_consistency_of_zero_flows_is_all_reliable") {
        for (h, w) in SIZES {
            let zero = upload(&ctx, &vec![0.0; 2 * h * w]);
            let out = poisoned(&ctx, h * w);
            run(&ctx, &single(flow::consistency(&ctx, h, w, &zero, &zero, &out)));
            assert!(read(&ctx, &out, h * w).iter().all(|&c| c == 1.0), "{h} x {w} ({grid})");
        }
    }
}
