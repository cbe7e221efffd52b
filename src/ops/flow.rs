//! Optical-flow kernels for video style transfer (Ruder, Dosovitskiy & Brox, "Artistic style
//! transfer for videos", 2016): warping a frame along a flow, and the reliability of a flow from
//! the forward-backward consistency check. f64 references beside.
//!
//! Images are planar `C x H x W` f32 arrays, flows planar `2 x H x W` ones: plane 0 the
//! x-displacement `u`, plane 1 the y-displacement `v`; a flow maps pixel `p = (x, y)` to
//! `p + (u, v)`.
//!
//! Sampling (both ops): a point `(sx, sy)` with `0 <= sx <= W-1` and `0 <= sy <= H-1` is inside
//! and interpolates its four neighbours bilinearly, `x0 = floor(sx)`, `x1 = min(x0 + 1, W-1)`
//! (rows alike: clamped at the last column and row, where the clamped neighbour weighs 0); any
//! other point, NaN included, is outside.

use bytemuck::{Pod, Zeroable};

use super::ActShape;
use crate::gpu::{Context, GpuError, Kernel, ShaderSource};

/// The compiled `kernels/flow.wgsl`.
pub const SHADER: ShaderSource = ShaderSource { name: "flow", source: include_str!("../../kernels/flow.wgsl") };

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    groups: u32,
    height: u32,
    width: u32,
    _pad0: u32,
    fill: [f32; 3],
    _pad1: u32,
}

/// The pixels of a `height x width` image, or an error when there are none or too many to index.
fn pixels(what: &str, height: usize, width: usize) -> Result<usize, GpuError> {
    let n = height.checked_mul(width).filter(|&n| n > 0 && n.saturating_mul(3) <= u32::MAX as usize);
    n.ok_or_else(|| GpuError::Device(format!("{what}: a {height} x {width} image is empty or too large")))
}

/// An error unless `buffer` holds at least `len` f32 values.
fn holds(what: &str, name: &str, buffer: &wgpu::Buffer, len: usize) -> Result<(), GpuError> {
    if buffer.size() < 4 * len as u64 {
        return Err(GpuError::Device(format!(
            "{what}: the {name} buffer has {} bytes, fewer than its {len} values",
            buffer.size()
        )));
    }
    Ok(())
}

fn kernel(
    ctx: &Context,
    entry: &str,
    height: usize,
    width: usize,
    fill: [f32; 3],
    buffers: [&wgpu::Buffer; 3],
) -> Result<Kernel, GpuError> {
    let n = height * width;
    let p = Params { groups: 0, height: height as u32, width: width as u32, _pad0: 0, fill, _pad1: 0 };
    Kernel::new(ctx, SHADER, entry, bytemuck::bytes_of(&p), &buffers, (n as u32).div_ceil(256))
}

/// out (`3 x H x W`) = `image` (`3 x H x W`) sampled bilinearly at `p + flow(p)` (`flow`:
/// `2 x H x W`), or `fill[c]` in channel `c` where that point is outside (the module's sampling).
/// Only 3 channels are supported (an error otherwise).
pub fn warp(
    ctx: &Context,
    shape: ActShape,
    image: &wgpu::Buffer,
    flow: &wgpu::Buffer,
    out: &wgpu::Buffer,
    fill: [f32; 3],
) -> Result<Kernel, GpuError> {
    if shape.channels != 3 {
        return Err(GpuError::Device(format!("flow::warp takes 3 channels, not {}", shape.channels)));
    }
    let n = pixels("flow::warp", shape.height, shape.width)?;
    holds("flow::warp", "image", image, 3 * n)?;
    holds("flow::warp", "flow", flow, 2 * n)?;
    holds("flow::warp", "output", out, 3 * n)?;
    kernel(ctx, "warp_bilinear", shape.height, shape.width, fill, [image, flow, out])
}

/// out (`H x W`) = the reliability, 1 or 0, of the `backward` flow (frame t -> t-1) at each pixel,
/// checked against the `forward` flow (t-1 -> t), both `2 x H x W`: `reference::consistency_checks`
/// has the rules and where they come from. It is the map before artistic-videos' smoothing.
pub fn consistency(
    ctx: &Context,
    height: usize,
    width: usize,
    forward: &wgpu::Buffer,
    backward: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<Kernel, GpuError> {
    let n = pixels("flow::consistency", height, width)?;
    holds("flow::consistency", "forward flow", forward, 2 * n)?;
    holds("flow::consistency", "backward flow", backward, 2 * n)?;
    holds("flow::consistency", "output", out, n)?;
    kernel(ctx, "consistency", height, width, [0.0; 3], [forward, backward, out])
}

/// f64 references of the flow ops.
pub mod reference {
    use super::ActShape;

    /// One `height x width` plane sampled at `(sx, sy)` (the module's sampling), `None` outside.
    pub fn sample(plane: &[f64], height: usize, width: usize, sx: f64, sy: f64) -> Option<f64> {
        let inside = (0.0..=(width - 1) as f64).contains(&sx) && (0.0..=(height - 1) as f64).contains(&sy);
        if !inside {
            return None;
        }
        let (x0, y0) = (sx.floor() as usize, sy.floor() as usize);
        let (x1, y1) = ((x0 + 1).min(width - 1), (y0 + 1).min(height - 1));
        let (ax, ay) = (sx - x0 as f64, sy - y0 as f64);
        let at = |x: usize, y: usize| plane[y * width + x];
        let top = (1.0 - ax) * at(x0, y0) + ax * at(x1, y0);
        let bottom = (1.0 - ax) * at(x0, y1) + ax * at(x1, y1);
        Some((1.0 - ay) * top + ay * bottom)
    }

    /// `image` warped along `flow`: `super::warp`'s definition, for any number of channels.
    pub fn warp(shape: ActShape, image: &[f64], flow: &[f64], fill: [f64; 3]) -> Vec<f64> {
        let (h, w) = (shape.height, shape.width);
        let n = h * w;
        let mut out = vec![0.0; shape.len()];
        for c in 0..shape.channels {
            let plane = &image[c * n..(c + 1) * n];
            for y in 0..h {
                for x in 0..w {
                    let i = y * w + x;
                    let (sx, sy) = (x as f64 + flow[i], y as f64 + flow[n + i]);
                    out[c * n + i] = sample(plane, h, w, sx, sy).unwrap_or(fill[c]);
                }
            }
        }
        out
    }

    /// Which rule decided a pixel's reliability (`consistency_checks`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Rule {
        /// `p + b(p)` is outside the image.
        Outside,
        /// The forward flow does not take `p + b(p)` back to `p`.
        Occlusion,
        /// The backward flow changes fast around `p`.
        MotionBoundary,
        /// None of the above: reliable.
        Reliable,
    }

    /// One pixel's verdict, and how far it is from going the other way (for comparing with f32
    /// arithmetic, which may decide a near tie the other way).
    #[derive(Clone, Copy, Debug, PartialEq)]
    pub struct Check {
        pub rule: Rule,
        /// The slack that decided inside or outside: the smallest of `sx`, `sy`,
        /// `(W-1 - sx) / max(W-1, 1)`, `(H-1 - sy) / max(H-1, 1)` in magnitude (inside iff none is
        /// negative). 0 means a landing exactly on a bound, which f32 computes exactly too when
        /// the displacement is an f32 (the sum is representable, and rounded sums are exact).
        pub bounds: f64,
        /// The smallest distance of the occlusion and motion-boundary quantities the verdict
        /// rests on from their thresholds, relative to the threshold; infinite when outside.
        pub threshold: f64,
    }

    /// The mirrored index of manuelruder/artistic-videos' `NFilter::filter` (CFilter.h): `-1 - i`
    /// below 0, `2n - 1 - i` from `n` on (so -1 reads 0 and n reads n - 1).
    fn mirror(i: isize, n: usize) -> usize {
        let n = n as isize;
        (if i < 0 {
            -1 - i
        } else if i >= n {
            2 * n - 1 - i
        } else {
            i
        }) as usize
    }

    /// Each plane of `flow` (`2 x H x W`) filtered by the derivative stencil `[-0.5, 0, 0.5]`
    /// along x (`along_x`) or y, borders mirrored: `NFilter::filter` with `CDerivative<float>(3)`.
    fn derivative(height: usize, width: usize, flow: &[f64], along_x: bool) -> Vec<f64> {
        let n = height * width;
        let mut out = vec![0.0; 2 * n];
        for z in 0..2 {
            for y in 0..height {
                for x in 0..width {
                    let at = |dx: isize, dy: isize| {
                        let (xx, yy) = (mirror(x as isize + dx, width), mirror(y as isize + dy, height));
                        flow[z * n + yy * width + xx]
                    };
                    let (before, after) = if along_x { (at(-1, 0), at(1, 0)) } else { (at(0, -1), at(0, 1)) };
                    out[z * n + y * width + x] = -0.5 * before + 0.5 * after;
                }
            }
        }
        out
    }

    /// The reliability of the `backward` flow `b` (frame t -> t-1) checked against the `forward`
    /// flow `f` (t-1 -> t), both `2 x H x W`, pixel by pixel: Ruder et al. 2016, section 3.1 (after
    /// Sundaram et al. 2010), as `checkConsistency` in manuelruder/artistic-videos'
    /// `consistencyChecker/consistencyChecker.cpp` (commit 40e7447) computes it (its `flow1` is
    /// `b`, `flow2` is `f`, as `makeOptFlow.sh` calls it). With `w~ = f` sampled at `p + b(p)`, in this order:
    ///
    /// - `Outside` where `p + b(p)` is outside `[0, W-1] x [0, H-1]`;
    /// - `Occlusion` where `|w~ + b|^2 >= 0.01 (|w~|^2 + |b|^2) + 0.5` (the checker's `>=`);
    /// - `MotionBoundary` where `|grad b_x|^2 + |grad b_y|^2 > 0.01 |b|^2 + 0.002`;
    /// - `Reliable` otherwise.
    ///
    /// The gradient follows the checker's `CDerivative<float>(3)` filtered with `NFilter::filter`
    /// (CFilter.h) in x and in y: the central difference `(b[x+1] - b[x-1]) / 2`, with an index
    /// past the edge mirrored onto the edge pixel, so `(b[1] - b[0]) / 2` at the first column,
    /// `(b[W-1] - b[W-2]) / 2` at the last (rows alike), and 0 across an image one pixel wide.
    ///
    /// Where this departs from the checker: the checker calls a sample with `floor(sx) + 1 >= W`
    /// outside, so that `sx = W-1` exactly (every pixel of the last column under zero flow, and
    /// every pixel of a one-column image) is unreliable; here the bounds are inclusive, with the
    /// warp's clamped sampling. The checker's one-pixel-wide filtering reads and writes out of
    /// bounds; the mirror rule above gives 0 there. And the checker then smooths its 0/255 map
    /// (a Gaussian of 0.8 over occlusions set to -255) and clips it, which is not done here.
    pub fn consistency_checks(height: usize, width: usize, forward: &[f64], backward: &[f64]) -> Vec<Check> {
        let n = height * width;
        let dx = derivative(height, width, backward, true);
        let dy = derivative(height, width, backward, false);
        let motion_edge: Vec<f64> =
            (0..n).map(|i| dx[i].powi(2) + dx[n + i].powi(2) + dy[i].powi(2) + dy[n + i].powi(2)).collect();
        let relative = |q: f64, t: f64| (q - t).abs() / t.abs();
        let mut checks = Vec::with_capacity(n);
        for y in 0..height {
            for x in 0..width {
                let i = y * width + x;
                let (bx, by) = (backward[i], backward[n + i]);
                let (sx, sy) = (x as f64 + bx, y as f64 + by);
                // The bounds' slacks, positive where met: inside iff all are >= 0, and the verdict
                // turns only by moving the smallest slack through 0.
                let (xmax, ymax) = ((width - 1) as f64, (height - 1) as f64);
                let slack = [sx, sy, (xmax - sx) / xmax.max(1.0), (ymax - sy) / ymax.max(1.0)];
                let bounds = slack.iter().copied().fold(f64::INFINITY, f64::min).abs();
                let forward_x = sample(&forward[..n], height, width, sx, sy);
                let forward_y = sample(&forward[n..], height, width, sx, sy);
                let (Some(wx), Some(wy)) = (forward_x, forward_y) else {
                    checks.push(Check { rule: Rule::Outside, bounds, threshold: f64::INFINITY });
                    continue;
                };
                let round_trip = (wx + bx).powi(2) + (wy + by).powi(2);
                let occlusion_threshold = 0.01 * (wx * wx + wy * wy + bx * bx + by * by) + 0.5;
                let mut threshold = relative(round_trip, occlusion_threshold);
                if round_trip >= occlusion_threshold {
                    checks.push(Check { rule: Rule::Occlusion, bounds, threshold });
                    continue;
                }
                let boundary_threshold = 0.01 * (bx * bx + by * by) + 0.002;
                threshold = threshold.min(relative(motion_edge[i], boundary_threshold));
                let rule = if motion_edge[i] > boundary_threshold { Rule::MotionBoundary } else { Rule::Reliable };
                checks.push(Check { rule, bounds, threshold });
            }
        }
        checks
    }

    /// The reliability map of `consistency_checks`: 1 where `Reliable`, else 0 (`H x W`).
    pub fn consistency(height: usize, width: usize, forward: &[f64], backward: &[f64]) -> Vec<f64> {
        let checks = consistency_checks(height, width, forward, backward);
        checks.iter().map(|c| if c.rule == Rule::Reliable { 1.0 } else { 0.0 }).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::ActShape;
    use super::reference::{self, Rule};

    const FILL: [f64; 3] = [-7.0, -8.0, -9.0];

    fn shape(height: usize, width: usize) -> ActShape {
        ActShape { channels: 3, height, width }
    }

    /// A 3 x H x W image whose values name their place: `100 c + 10 y + x`.
    fn named(shape: ActShape) -> Vec<f64> {
        let (h, w) = (shape.height, shape.width);
        (0..shape.len()).map(|i| (100 * (i / (h * w)) + 10 * (i / w % h) + i % w) as f64).collect()
    }

    /// A flow that is `(u(x, y), v(x, y))` at each pixel.
    fn flow_of(height: usize, width: usize, f: impl Fn(usize, usize) -> (f64, f64)) -> Vec<f64> {
        let mut flow = vec![0.0; 2 * height * width];
        for y in 0..height {
            for x in 0..width {
                let (u, v) = f(x, y);
                flow[y * width + x] = u;
                flow[height * width + y * width + x] = v;
            }
        }
        flow
    }

    fn at(image: &[f64], shape: ActShape, c: usize, y: usize, x: usize) -> f64 {
        image[(c * shape.height + y) * shape.width + x]
    }

    #[test]
    fn zero_flow_is_the_identity() {
        for (h, w) in [(4, 5), (1, 6), (6, 1), (1, 1)] {
            let s = shape(h, w);
            let image = named(s);
            assert_eq!(reference::warp(s, &image, &vec![0.0; 2 * h * w], FILL), image, "{h} x {w}");
        }
    }

    #[test]
    fn integer_translation_shifts_and_fills_from_outside() {
        let s = shape(4, 5);
        let image = named(s);
        let out = reference::warp(s, &image, &flow_of(4, 5, |_, _| (-2.0, 1.0)), FILL);
        for (c, &fill) in FILL.iter().enumerate() {
            for y in 0..4 {
                for x in 0..5 {
                    let expected = if x >= 2 && y + 1 < 4 { at(&image, s, c, y + 1, x - 2) } else { fill };
                    assert_eq!(at(&out, s, c, y, x), expected, "c {c} y {y} x {x}");
                }
            }
        }
    }

    #[test]
    fn half_pixel_shifts_average_neighbours() {
        let s = shape(3, 4);
        let image = named(s);
        let right = reference::warp(s, &image, &flow_of(3, 4, |_, _| (0.5, 0.0)), FILL);
        let both = reference::warp(s, &image, &flow_of(3, 4, |_, _| (0.5, 0.5)), FILL);
        for (c, &fill) in FILL.iter().enumerate() {
            for y in 0..3 {
                for x in 0..4 {
                    let p = |y, x| at(&image, s, c, y, x);
                    let expected = if x < 3 { (p(y, x) + p(y, x + 1)) / 2.0 } else { fill };
                    assert_eq!(at(&right, s, c, y, x), expected);
                    let expected = if x < 3 && y < 2 {
                        (p(y, x) + p(y, x + 1) + p(y + 1, x) + p(y + 1, x + 1)) / 4.0
                    } else {
                        fill
                    };
                    assert_eq!(at(&both, s, c, y, x), expected);
                }
            }
        }
    }

    #[test]
    fn samples_on_the_last_column_and_row_clamp() {
        let (h, w) = (3, 4);
        let s = shape(h, w);
        let image = named(s);
        // Every pixel samples (W-1, y), (x, H-1), the corner, and (W-1 + 0.25, y) (outside).
        let column = reference::warp(s, &image, &flow_of(h, w, |x, _| ((w - 1 - x) as f64, 0.0)), FILL);
        let row = reference::warp(s, &image, &flow_of(h, w, |_, y| (0.0, (h - 1 - y) as f64)), FILL);
        let corner = reference::warp(s, &image, &flow_of(h, w, |x, y| ((w - 1 - x) as f64, (h - 1 - y) as f64)), FILL);
        let past = reference::warp(s, &image, &flow_of(h, w, |x, _| ((w - 1 - x) as f64 + 0.25, 0.0)), FILL);
        // And a point on the last column between rows interpolates that column.
        let between = reference::warp(
            s,
            &image,
            &flow_of(h, w, |x, y| ((w - 1 - x) as f64, if y == 0 { 0.5 } else { 0.0 })),
            FILL,
        );
        for (c, &fill) in FILL.iter().enumerate() {
            for y in 0..h {
                for x in 0..w {
                    assert_eq!(at(&column, s, c, y, x), at(&image, s, c, y, w - 1));
                    assert_eq!(at(&row, s, c, y, x), at(&image, s, c, h - 1, x));
                    assert_eq!(at(&corner, s, c, y, x), at(&image, s, c, h - 1, w - 1));
                    assert_eq!(at(&past, s, c, y, x), fill);
                }
            }
            let mid = (at(&image, s, c, 0, w - 1) + at(&image, s, c, 1, w - 1)) / 2.0;
            assert_eq!(at(&between, s, c, 0, 1), mid);
        }
        // One row, one column: every inside sample is on the clamp.
        let s1 = shape(1, 3);
        let out = reference::warp(s1, &named(s1), &flow_of(1, 3, |x, _| (x as f64 * 0.5, 0.0)), FILL);
        assert_eq!(&out[..3], &[0.0, 1.5, FILL[0]]);
    }

    fn rules(h: usize, w: usize, forward: &[f64], backward: &[f64]) -> Vec<Rule> {
        reference::consistency_checks(h, w, forward, backward).iter().map(|c| c.rule).collect()
    }

    #[test]
    fn zero_flows_are_reliable() {
        for (h, w) in [(4, 5), (1, 6), (6, 1), (1, 1)] {
            let zero = vec![0.0; 2 * h * w];
            assert_eq!(reference::consistency(h, w, &zero, &zero), vec![1.0; h * w], "{h} x {w}");
        }
    }

    #[test]
    fn a_backward_flow_pointing_outside_is_unreliable() {
        let (h, w) = (3, 4);
        // Zero flows but at pixel (1, 1), whose own central differences stay 0: there b points
        // left out of the image, onto the last row and the last column (in: the bounds are
        // inclusive), or past them; where it lands inside, f takes it back.
        let cases = [
            ((-1.5, 0.0), Rule::Outside),
            ((0.0, 1.0), Rule::Reliable),
            ((2.0, 0.0), Rule::Reliable),
            ((2.0, 1.0), Rule::Reliable),
            ((0.0, 1.5), Rule::Outside),
            ((2.25, 0.0), Rule::Outside),
            ((0.0, -1.0001), Rule::Outside),
        ];
        for (b, expect) in cases {
            let backward = flow_of(h, w, |x, y| if (x, y) == (1, 1) { b } else { (0.0, 0.0) });
            let (lx, ly) = (1.0 + b.0, 1.0 + b.1);
            let forward =
                flow_of(h, w, |x, y| if (x as f64, y as f64) == (lx, ly) { (-b.0, -b.1) } else { (0.0, 0.0) });
            assert_eq!(rules(h, w, &forward, &backward)[w + 1], expect, "backward {b:?}");
        }
    }

    #[test]
    fn a_forward_flow_that_does_not_invert_the_backward_is_an_occlusion() {
        let (h, w) = (4, 5);
        let zero = vec![0.0; 2 * h * w];
        // b = 0, so w~ = f(p): |f|^2 >= 0.01 |f|^2 + 0.5 is an occlusion.
        for (f, expect) in
            [((1.0, 0.0), Rule::Occlusion), ((0.5, 0.5), Rule::Reliable), ((0.0, -0.72), Rule::Occlusion)]
        {
            let forward = flow_of(h, w, |_, _| f);
            assert!(rules(h, w, &forward, &zero).iter().all(|&r| r == expect), "forward {f:?}");
        }
        // A translation by (1, -1) with its inverse is consistent; with the same flow forward, not.
        let backward = flow_of(h, w, |_, _| (1.0, -1.0));
        let inverse = flow_of(h, w, |_, _| (-1.0, 1.0));
        let got = rules(h, w, &inverse, &backward);
        let same = rules(h, w, &backward, &backward);
        for y in 0..h {
            for x in 0..w {
                let inside = x + 1 < w && y >= 1;
                let i = y * w + x;
                assert_eq!(got[i], if inside { Rule::Reliable } else { Rule::Outside }, "x {x} y {y}");
                assert_eq!(same[i], if inside { Rule::Occlusion } else { Rule::Outside }, "x {x} y {y}");
            }
        }
    }

    #[test]
    fn a_step_in_the_backward_flow_is_a_motion_boundary_and_a_ramp_is_not() {
        let (h, w) = (3, 8);
        // b_x = 0 left of column 4, 1 from it on; the forward flow takes each landing point back.
        let backward = flow_of(h, w, |x, _| (if x >= 4 { 1.0 } else { 0.0 }, 0.0));
        let forward = flow_of(h, w, |x, _| (if x >= 5 { -1.0 } else { 0.0 }, 0.0));
        let got = rules(h, w, &forward, &backward);
        let expected = [
            Rule::Reliable,
            Rule::Reliable,
            Rule::Reliable,
            Rule::MotionBoundary,
            Rule::MotionBoundary,
            Rule::Reliable,
            Rule::Reliable,
            Rule::Outside,
        ];
        for y in 0..h {
            assert_eq!(&got[y * w..(y + 1) * w], &expected, "row {y}");
        }
        // A ramp b_x = -s x (into the image), inverted exactly by f_x = s x / (1 - s): its gradient
        // s^2 = 0.0016 stays under 0.002 (and 0.0004 at the borders, the half differences).
        let s = 0.04;
        let backward = flow_of(h, w, |x, _| (-s * x as f64, 0.0));
        let forward = flow_of(h, w, |x, _| (s * x as f64 / (1.0 - s), 0.0));
        assert!(rules(h, w, &forward, &backward).iter().all(|&r| r == Rule::Reliable));
        // Steeper, s = 0.06, the interior (s^2 = 0.0036, over 0.002 + 0.01 (6 s)^2) turns into
        // motion boundary; the borders' half differences, (s / 2)^2 = 0.0009, do not.
        let s = 0.06;
        let backward = flow_of(h, w, |x, _| (-s * x as f64, 0.0));
        let forward = flow_of(h, w, |x, _| (s * x as f64 / (1.0 - s), 0.0));
        let got = rules(h, w, &forward, &backward);
        for (x, &rule) in got.iter().enumerate().take(w) {
            let expect = if x == 0 || x == w - 1 { Rule::Reliable } else { Rule::MotionBoundary };
            assert_eq!(rule, expect, "x {x}");
        }
    }

    #[test]
    fn the_gradient_at_the_border_is_half_the_one_sided_difference() {
        // b_x = 0.06 on column 0 only, f = 0 (|b|^2 is far under the occlusion threshold). The
        // checker's mirrored stencil gives (b[1] - b[0]) / 2 = -0.03 at x = 0 and
        // (b[2] - b[0]) / 2 = -0.03 at x = 1: 0.0009 < 0.002, reliable. A full one-sided
        // difference (0.0036) would make column 0 a motion boundary.
        let (h, w) = (2, 5);
        let backward = flow_of(h, w, |x, _| (if x == 0 { 0.06 } else { 0.0 }, 0.0));
        let zero = vec![0.0; 2 * h * w];
        assert!(rules(h, w, &zero, &backward).iter().all(|&r| r == Rule::Reliable));
        // At 0.1 both x = 0 and x = 1 see 0.0025 > 0.002 + 0.0001 and turn; x = 2 does not.
        let backward = flow_of(h, w, |x, _| (if x == 0 { 0.1 } else { 0.0 }, 0.0));
        let got = rules(h, w, &zero, &backward);
        assert_eq!(
            &got[..w],
            &[Rule::MotionBoundary, Rule::MotionBoundary, Rule::Reliable, Rule::Reliable, Rule::Reliable]
        );
        // The same along y, at the last row.
        let (h, w) = (5, 2);
        let backward = flow_of(h, w, |_, y| (0.0, if y == h - 1 { -0.1 } else { 0.0 }));
        let zero = vec![0.0; 2 * h * w];
        let got = rules(h, w, &zero, &backward);
        let column: Vec<Rule> = (0..h).map(|y| got[y * w]).collect();
        assert_eq!(
            column,
            [Rule::Reliable, Rule::Reliable, Rule::Reliable, Rule::MotionBoundary, Rule::MotionBoundary]
        );
    }
}
