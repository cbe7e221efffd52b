//! Resizing: fitting the longer side within a bound, and exact Lanczos3 resampling.

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

/// Resizes so the longer side is at most `max_side`, keeping aspect ratio (see [`fitted_size`]);
/// never upscales (an image that already fits is returned unchanged).
pub fn fit_within(img: &Image, max_side: u32) -> Image {
    let (width, height) = fitted_size(img.width, img.height, max_side);
    resize_exact(img, width, height)
}

/// Resizes to exactly `width` x `height` with a Lanczos3 filter (antialiased when shrinking),
/// clamping the result to [0, 1]. Same size returns a copy; an empty source gives black.
pub fn resize_exact(img: &Image, width: u32, height: u32) -> Image {
    if (width, height) == (img.width, img.height) {
        return img.clone();
    }
    if img.plane_len() == 0 || width == 0 || height == 0 {
        return Image::filled(width, height, [0.0; 3]);
    }
    let resized = resize(&to_rgb32f(img), width, height, FilterType::Lanczos3);
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

#[cfg(test)]
mod tests {
    use super::*;

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
