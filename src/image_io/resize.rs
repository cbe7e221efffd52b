//! Resizing: fitting the longer side within a bound, exact resampling with a filter (Lanczos3
//! by default, or Catmull-Rom bicubic as PIL's BICUBIC), and PyTorch's `F.interpolate` (bicubic
//! and bilinear, `align_corners=False`) on planes of f64 values.

use image::imageops::{FilterType, resize};

use super::{Image, from_rgb32f, to_rgb32f};

/// The size whose longer side is at most `max_side` (treated as at least 1), keeping the
/// aspect ratio: each side rounded to nearest and at least 1 px; never larger than the input.
pub fn fitted_size(width: u32, height: u32, max_side: u32) -> (u32, u32) {
    let max_side = max_side.max(1);
    let longer_side = width.max(height);
    if longer_side <= max_side {
        return (width, height);
    }
    let scale = f64::from(max_side) / f64::from(longer_side);
    let scaled = |side: u32| ((f64::from(side) * scale).round() as u32).clamp(1, max_side);
    (scaled(width), scaled(height))
}

/// The resampling filter of `resize_with`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Filter {
    /// Lanczos3 (the default everywhere).
    #[default]
    Lanczos3,
    /// Catmull-Rom cubic (a = -0.5), PIL's `Image.BICUBIC`; like it, antialiased when shrinking
    /// (the kernel widened by the reduction factor).
    CatmullRom,
}

/// Resizes so the longer side is at most `max_side`, keeping aspect ratio (see [`fitted_size`]);
/// never upscales (an image that already fits is returned unchanged).
pub fn fit_within(img: &Image, max_side: u32) -> Image {
    fit_within_with(img, max_side, Filter::Lanczos3)
}

/// As `fit_within` with `filter`.
pub fn fit_within_with(img: &Image, max_side: u32, filter: Filter) -> Image {
    let (width, height) = fitted_size(img.width, img.height, max_side);
    resize_with(img, width, height, filter)
}

/// Resizes to exactly `width` x `height` with a Lanczos3 filter (antialiased when shrinking),
/// clamping the result to [0, 1]. Same size returns a copy; an empty source gives black.
pub fn resize_exact(img: &Image, width: u32, height: u32) -> Image {
    resize_with(img, width, height, Filter::Lanczos3)
}

/// As `resize_exact` with `filter`.
pub fn resize_with(img: &Image, width: u32, height: u32, filter: Filter) -> Image {
    if (width, height) == (img.width, img.height) {
        return img.clone();
    }
    if img.plane_len() == 0 || width == 0 || height == 0 {
        return Image::filled(width, height, [0.0; 3]);
    }
    let filter = match filter {
        Filter::Lanczos3 => FilterType::Lanczos3,
        Filter::CatmullRom => FilterType::CatmullRom,
    };
    let resized = resize(&to_rgb32f(img), width, height, filter);
    let mut out = from_rgb32f(&resized);
    clamp_to_unit_range(&mut out.data);
    out
}

/// Lanczos overshoot at sharp edges can leave [0, 1]; clamp it back (NaN becomes 0).
fn clamp_to_unit_range(samples: &mut [f32]) {
    for sample in samples {
        *sample = if sample.is_nan() { 0.0 } else { sample.clamp(0.0, 1.0) };
    }
}

/// PyTorch's `F.interpolate(x, (height, width), mode=..., align_corners=False)` on one plane
/// (row-major `height x width` f64 values), written from ATen's CPU kernels: output pixel `o`
/// reads the source at `(o + 0.5) * in / out - 0.5`.
pub mod interpolate {
    /// The source coordinate of output index `o` (ATen's `area_pixel_compute_source_index`):
    /// bilinear clamps it at 0, bicubic does not.
    fn source(o: usize, input: usize, output: usize, cubic: bool) -> f64 {
        let x = (o as f64 + 0.5) * (input as f64 / output as f64) - 0.5;
        if cubic { x } else { x.max(0.0) }
    }

    /// Bilinear; the upper neighbour stops at the last row/column.
    pub fn bilinear(plane: &[f64], width: usize, height: usize, out_width: usize, out_height: usize) -> Vec<f64> {
        let taps = |o: usize, input: usize, output: usize| {
            let x = source(o, input, output, false);
            let i0 = (x.floor() as usize).min(input - 1);
            let i1 = (i0 + 1).min(input - 1);
            let t = x - i0 as f64;
            [(i0, 1.0 - t), (i1, t)]
        };
        separable(plane, width, height, out_width, out_height, &|o, i, n| taps(o, i, n).to_vec())
    }

    /// Bicubic with A = -0.75 (ATen's `upsample_bicubic2d`), the four taps' indices clamped to
    /// the image.
    pub fn bicubic(plane: &[f64], width: usize, height: usize, out_width: usize, out_height: usize) -> Vec<f64> {
        const A: f64 = -0.75;
        let near = |x: f64| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
        let far = |x: f64| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
        let taps = |o: usize, input: usize, output: usize| {
            let x = source(o, input, output, true);
            let floor = x.floor();
            let t = x - floor;
            let weights = [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)];
            (0..4)
                .map(|k| {
                    let i = (floor as i64 - 1 + k as i64).clamp(0, input as i64 - 1) as usize;
                    (i, weights[k])
                })
                .collect()
        };
        separable(plane, width, height, out_width, out_height, &taps)
    }

    /// CHW planes (`channels` of them, f32) resized from `from` to `to` (width, height): bicubic,
    /// or bilinear when `bilinear`.
    pub fn planes(data: &[f32], from: (u32, u32), to: (u32, u32), channels: usize, bilinear: bool) -> Vec<f64> {
        let (w, h) = (from.0 as usize, from.1 as usize);
        let (w2, h2) = (to.0 as usize, to.1 as usize);
        let resize = if bilinear { self::bilinear } else { bicubic };
        (0..channels)
            .flat_map(|c| {
                let plane: Vec<f64> = data[c * w * h..(c + 1) * w * h].iter().map(|&v| f64::from(v)).collect();
                resize(&plane, w, h, w2, h2)
            })
            .collect()
    }

    /// Rows then columns, each output value a weighted sum of its taps.
    fn separable(
        plane: &[f64],
        width: usize,
        height: usize,
        out_width: usize,
        out_height: usize,
        taps: &dyn Fn(usize, usize, usize) -> Vec<(usize, f64)>,
    ) -> Vec<f64> {
        assert_eq!(plane.len(), width * height, "a plane of {width} x {height}");
        let columns: Vec<Vec<(usize, f64)>> = (0..out_width).map(|o| taps(o, width, out_width)).collect();
        let rows: Vec<Vec<(usize, f64)>> = (0..out_height).map(|o| taps(o, height, out_height)).collect();
        let mut wide = vec![0.0; height * out_width];
        for y in 0..height {
            for (x, column) in columns.iter().enumerate() {
                wide[y * out_width + x] = column.iter().map(|&(i, w)| w * plane[y * width + i]).sum();
            }
        }
        let mut out = vec![0.0; out_height * out_width];
        for (y, row) in rows.iter().enumerate() {
            for x in 0..out_width {
                out[y * out_width + x] = row.iter().map(|&(i, w)| w * wide[i * out_width + x]).sum();
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values ATen gives (torch 2.x, float64), computed by hand from its formulas for a 2 x 3
    /// plane upsampled to 3 x 5; and the identities every interpolation must keep.
    #[test]
    fn interpolate_keeps_constants_and_ramps_and_matches_hand_values() {
        let constant = vec![0.25; 6];
        for f in [interpolate::bilinear, interpolate::bicubic] {
            let out = f(&constant, 3, 2, 5, 3);
            assert!(out.iter().all(|v| (v - 0.25).abs() < 1e-12), "{out:?}");
            // Same size: the identity.
            let plane: Vec<f64> = (0..6).map(|i| (i * i) as f64).collect();
            assert_eq!(f(&plane, 3, 2, 3, 2), plane);
        }
        // A horizontal ramp 0, 1, 2 upsampled to 5 columns: bilinear reads x = (o + 0.5) * 0.6 - 0.5,
        // clamped at 0: 0, 0.4, 1.0, 1.6, 2 (the last clamped by the edge).
        let ramp = vec![0.0, 1.0, 2.0, 0.0, 1.0, 2.0];
        let out = interpolate::bilinear(&ramp, 3, 2, 5, 2);
        for (got, want) in out[..5].iter().zip([0.0, 0.4, 1.0, 1.6, 2.0]) {
            assert!((got - want).abs() < 1e-12, "{out:?}");
        }
        // Bicubic at x = 0.4 (output 2 of 5 from 3... o = 1: x = 0.4): taps -1 (clamped to 0), 0, 1,
        // 2 with A = -0.75: 0 * w0 + 0 * w1 + 1 * w2 + 2 * w3.
        let (a, t): (f64, f64) = (-0.75, 0.4);
        let near = |x: f64| ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
        let far = |x: f64| ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a;
        let want = near(1.0 - t) + 2.0 * far(2.0 - t);
        let out = interpolate::bicubic(&ramp, 3, 2, 5, 2);
        assert!((out[1] - want).abs() < 1e-12, "{} vs {want}", out[1]);
    }

    #[test]
    fn fitted_size_cases() {
        assert_eq!(fitted_size(800, 600, 400), (400, 300));
        assert_eq!(fitted_size(600, 800, 400), (300, 400));
        assert_eq!(fitted_size(300, 200, 400), (300, 200));
        assert_eq!(fitted_size(10000, 3, 400), (400, 1));
        assert_eq!(fitted_size(640, 427, 400), (400, 267));
        assert_eq!(fitted_size(5, 5, 0), (1, 1));
    }

    #[test]
    fn resize_to_zero_gives_empty_image() {
        let img = Image::filled(4, 4, [0.5; 3]);
        let out = resize_exact(&img, 0, 3);
        assert_eq!((out.width, out.height, out.data.len()), (0, 3, 0));
    }

    #[test]
    fn resize_output_stays_in_unit_range() {
        let mut img = Image::filled(16, 16, [0.0; 3]);
        for y in 0..16 {
            for x in 8..16 {
                img.set_pixel(x, y, [1.0; 3]);
            }
        }
        let out = resize_exact(&img, 37, 5);
        assert!(out.data.iter().all(|v| (0.0..=1.0).contains(v)));
    }
}
