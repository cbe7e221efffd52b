//! Image decoding, resizing and atomic encoding.
//!
//! Images are RGB with `f32` samples in `[0, 1]`, stored planar (CHW).

pub mod color;
mod compose;
mod error;
mod load;
mod resize;
mod save;

pub use compose::side_by_side;
pub use error::{ImageError, LoadProblem, SaveProblem};
pub use load::{
    MAX_DECODE_BYTES, MAX_SIDE_PIXELS, caught_decoder_panics, load_image, load_image_from_bytes, source_bit_depth,
};
pub use resize::{Filter, fit_within, fit_within_with, fitted_size, interpolate, resize_exact, resize_with};
pub(crate) use save::write_atomically;
pub use save::{OutputFormat, check_output_path, save_image};

use image::{DynamicImage, Rgb, Rgb32FImage, RgbImage};

/// An RGB image with f32 samples in [0, 1], stored planar (CHW): `data[c*h*w + y*w + x]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Samples, one full plane per channel (R, then G, then B).
    pub data: Vec<f32>,
}

impl Image {
    /// Wraps planar RGB samples; panics unless `data.len() == 3 * width * height`.
    pub fn new(width: u32, height: u32, data: Vec<f32>) -> Self {
        assert_eq!(
            data.len(),
            3 * width as usize * height as usize,
            "Image::new: {width}x{height} RGB needs {} samples, got {}",
            3 * width as usize * height as usize,
            data.len()
        );
        Image { width, height, data }
    }

    /// From interleaved 8-bit RGB (`rgb24`, as ffmpeg's raw video): each sample / 255; panics
    /// unless `bytes.len() == 3 * width * height`.
    pub fn from_rgb8(width: u32, height: u32, bytes: &[u8]) -> Self {
        let plane_len = width as usize * height as usize;
        assert_eq!(bytes.len(), 3 * plane_len, "Image::from_rgb8: {width}x{height} needs {} bytes", 3 * plane_len);
        let data = (0..3).flat_map(|c| (0..plane_len).map(move |p| bytes[3 * p + c] as f32 / 255.0)).collect();
        Image::new(width, height, data)
    }

    /// An image filled with one colour.
    pub fn filled(width: u32, height: u32, rgb: [f32; 3]) -> Self {
        let plane_len = width as usize * height as usize;
        let data = rgb.iter().flat_map(|&value| std::iter::repeat_n(value, plane_len)).collect();
        Image::new(width, height, data)
    }

    /// Number of pixels in one channel plane.
    pub fn plane_len(&self) -> usize {
        self.width as usize * self.height as usize
    }

    /// The `[r, g, b]` samples at column `x`, row `y`; panics when out of bounds.
    pub fn pixel(&self, x: u32, y: u32) -> [f32; 3] {
        assert!(x < self.width && y < self.height, "pixel ({x}, {y}) outside {}x{}", self.width, self.height);
        let index = y as usize * self.width as usize + x as usize;
        let plane_len = self.plane_len();
        [self.data[index], self.data[plane_len + index], self.data[2 * plane_len + index]]
    }

    /// Sets the `[r, g, b]` samples at column `x`, row `y`; panics when out of bounds.
    pub fn set_pixel(&mut self, x: u32, y: u32, rgb: [f32; 3]) {
        assert!(x < self.width && y < self.height, "pixel ({x}, {y}) outside {}x{}", self.width, self.height);
        let index = y as usize * self.width as usize + x as usize;
        let plane_len = self.plane_len();
        for (channel, value) in rgb.into_iter().enumerate() {
            self.data[channel * plane_len + index] = value;
        }
    }
}

/// Converts any decoded image to planar RGB in [0, 1]: grey is copied to all channels,
/// alpha is dropped (not premultiplied), 16-bit and float samples keep full precision.
pub fn from_dynamic(img: DynamicImage) -> Image {
    from_rgb32f(&img.into_rgb32f())
}

/// Converts interleaved `Rgb32FImage` samples to a planar [`Image`] (values copied as they are).
pub fn from_rgb32f(interleaved: &Rgb32FImage) -> Image {
    let (width, height) = interleaved.dimensions();
    let plane_len = width as usize * height as usize;
    let mut data = vec![0.0f32; 3 * plane_len];
    for (index, pixel) in interleaved.pixels().enumerate() {
        for channel in 0..3 {
            data[channel * plane_len + index] = pixel.0[channel];
        }
    }
    Image::new(width, height, data)
}

/// Converts a planar [`Image`] to an interleaved `Rgb32FImage` (values copied as they are).
pub fn to_rgb32f(img: &Image) -> Rgb32FImage {
    let plane_len = img.plane_len();
    Rgb32FImage::from_fn(img.width, img.height, |x, y| {
        let index = y as usize * img.width as usize + x as usize;
        Rgb([img.data[index], img.data[plane_len + index], img.data[2 * plane_len + index]])
    })
}

/// Converts to interleaved 8-bit RGB, clamping to [0, 1] and rounding to nearest.
pub fn to_rgb8(img: &Image) -> RgbImage {
    let plane_len = img.plane_len();
    RgbImage::from_fn(img.width, img.height, |x, y| {
        let index = y as usize * img.width as usize + x as usize;
        Rgb(std::array::from_fn(|channel| quantize(img.data[channel * plane_len + index], 255.0) as u8))
    })
}

/// Converts to interleaved 16-bit RGB, clamping to [0, 1] and rounding to nearest.
pub fn to_rgb16(img: &Image) -> image::ImageBuffer<Rgb<u16>, Vec<u16>> {
    let plane_len = img.plane_len();
    image::ImageBuffer::from_fn(img.width, img.height, |x, y| {
        let index = y as usize * img.width as usize + x as usize;
        Rgb(std::array::from_fn(|channel| quantize(img.data[channel * plane_len + index], 65535.0) as u16))
    })
}

/// Clamps a sample to [0, 1] (NaN becomes 0) and scales it to `0..=max`, rounded.
fn quantize(sample: f32, max: f32) -> f32 {
    let clamped = if sample.is_nan() { 0.0 } else { sample.clamp(0.0, 1.0) };
    (clamped * max).round()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixel_reads_planar_layout() {
        let img = Image::new(2, 1, vec![0.1, 0.2, 0.3, 0.4, 0.5, 0.6]);
        assert_eq!(img.pixel(0, 0), [0.1, 0.3, 0.5]);
        assert_eq!(img.pixel(1, 0), [0.2, 0.4, 0.6]);
    }

    #[test]
    #[should_panic]
    fn new_rejects_wrong_length() {
        Image::new(2, 2, vec![0.0; 11]);
    }

    #[test]
    fn rgb8_round_trip_is_exact() {
        let rgb = RgbImage::from_fn(3, 2, |x, y| Rgb([x as u8 * 80, y as u8 * 200, 7]));
        let img = from_dynamic(DynamicImage::ImageRgb8(rgb.clone()));
        assert_eq!(to_rgb8(&img), rgb);
    }

    #[test]
    fn quantize_clamps_and_handles_nan() {
        let img = Image::new(3, 1, vec![-1.0, 2.0, f32::NAN, 0.5, 0.5, 0.5, 0.0, 0.0, 0.0]);
        let rgb = to_rgb8(&img);
        assert_eq!(rgb.get_pixel(0, 0).0[0], 0);
        assert_eq!(rgb.get_pixel(1, 0).0[0], 255);
        assert_eq!(rgb.get_pixel(2, 0).0[0], 0);
        assert_eq!(rgb.get_pixel(0, 0).0[1], 128);
    }

    #[test]
    fn rgb32f_round_trip_is_exact() {
        let img = Image::new(2, 2, (0..12).map(|i| i as f32 / 11.0).collect());
        assert_eq!(from_rgb32f(&to_rgb32f(&img)), img);
    }
}
