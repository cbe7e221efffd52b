//! Composing several images onto one canvas.

use super::Image;

/// Colour of canvas area not covered by any image.
const BACKGROUND: [f32; 3] = [1.0, 1.0, 1.0];

/// Places images left to right with no gap on one white canvas as tall as the tallest,
/// each vertically centred (e.g. content | style | result). No images gives a 0x0 image.
pub fn side_by_side(images: &[&Image]) -> Image {
    let width = images.iter().map(|img| img.width).sum();
    let height = images.iter().map(|img| img.height).max().unwrap_or(0);
    let mut canvas = Image::filled(width, height, BACKGROUND);
    let mut left = 0;
    for img in images {
        let top = (height - img.height) / 2;
        paste(&mut canvas, img, left, top);
        left += img.width;
    }
    canvas
}

/// Copies `img` onto `canvas` with its top-left corner at (`left`, `top`); it must fit.
fn paste(canvas: &mut Image, img: &Image, left: u32, top: u32) {
    let canvas_plane = canvas.plane_len();
    let img_plane = img.plane_len();
    let row_len = img.width as usize;
    for channel in 0..3 {
        for y in 0..img.height as usize {
            let src_start = channel * img_plane + y * row_len;
            let dst_start = channel * canvas_plane + (top as usize + y) * canvas.width as usize + left as usize;
            canvas.data[dst_start..dst_start + row_len].copy_from_slice(&img.data[src_start..src_start + row_len]);
        }
    }
}
