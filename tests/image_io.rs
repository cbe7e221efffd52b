//! Integration tests for `stylize::image_io`: decoding, resizing, atomic saving, errors.

use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use image::codecs::gif::GifEncoder;
use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, Frame, GrayImage, ImageBuffer, ImageFormat, Luma, Rgb, RgbImage, Rgba, RgbaImage};
use stylize::image_io::{
    Image, check_output_path, fit_within, from_dynamic, load_image, resize_exact, save_image, side_by_side, to_rgb8,
};
use tempfile::TempDir;

// ---------------------------------------------------------------- helpers

fn temp_dir() -> TempDir {
    tempfile::tempdir().expect("create temp dir")
}

/// A small RGB image whose every sample differs, so orientation mistakes show.
fn pattern_rgb8(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        Rgb([(x * 37 + y * 11) as u8, (255 - x * 13 - y * 7) as u8, (x * y * 5 + 3) as u8])
    })
}

fn u8_sample(value: u8) -> f32 {
    f32::from(value) / 255.0
}

fn assert_close(actual: f32, expected: f32, tolerance: f32, what: &str) {
    assert!(
        (actual - expected).abs() <= tolerance,
        "{what}: got {actual}, expected {expected} (tolerance {tolerance})"
    );
}

fn assert_matches_rgb8(img: &Image, expected: &RgbImage, tolerance: f32) {
    assert_eq!((img.width, img.height), expected.dimensions());
    for (x, y, pixel) in expected.enumerate_pixels() {
        let actual = img.pixel(x, y);
        for (channel, (&got, &want)) in actual.iter().zip(&pixel.0).enumerate() {
            assert_close(got, u8_sample(want), tolerance, &format!("pixel ({x}, {y}) channel {channel}"));
        }
    }
}

fn error_text(result: Result<impl std::fmt::Debug, stylize::image_io::ImageError>) -> String {
    let message = result.expect_err("expected an error").to_string();
    assert!(!message.contains('\n'), "error is not one line: {message:?}");
    message
}

fn temp_files_in(folder: &Path) -> Vec<String> {
    fs::read_dir(folder)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".tmp-"))
        .collect()
}

fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Cursor::new(Vec::new());
    img.write_to(&mut bytes, format).unwrap();
    bytes.into_inner()
}

/// CRC-32 (IEEE), as PNG chunks use.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xedb8_8320 & mask);
        }
    }
    !crc
}

/// A real PNG whose IHDR is patched to claim `width` x `height`, with the chunk CRC fixed.
fn png_claiming_size(width: u32, height: u32) -> Vec<u8> {
    let mut png = encode(&DynamicImage::ImageRgb8(pattern_rgb8(4, 4)), ImageFormat::Png);
    // Signature (8) + IHDR length (4) + "IHDR" (4) + 13 data bytes + CRC (4).
    assert_eq!(&png[12..16], b"IHDR");
    png[16..20].copy_from_slice(&width.to_be_bytes());
    png[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

/// An APP1 segment holding EXIF with only an Orientation tag (little-endian TIFF).
fn exif_app1_with_orientation(orientation: u16) -> Vec<u8> {
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"II");
    tiff.extend_from_slice(&42u16.to_le_bytes());
    tiff.extend_from_slice(&8u32.to_le_bytes()); // first IFD right after the header
    tiff.extend_from_slice(&1u16.to_le_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_le_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_le_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_le_bytes()); // count
    tiff.extend_from_slice(&orientation.to_le_bytes());
    tiff.extend_from_slice(&[0, 0]); // value padding
    tiff.extend_from_slice(&0u32.to_le_bytes()); // no next IFD

    let mut payload = b"Exif\0\0".to_vec();
    payload.extend_from_slice(&tiff);
    let mut segment = vec![0xff, 0xe1];
    segment.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    segment.extend_from_slice(&payload);
    segment
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

// ---------------------------------------------------------------- decoding

#[test]
fn png_8bit_rgb_round_trips_exactly() {
    let dir = temp_dir();
    let path = dir.path().join("in.png");
    let expected = pattern_rgb8(7, 5);
    expected.save(&path).unwrap();
    let img = load_image(&path).unwrap();
    assert_matches_rgb8(&img, &expected, 0.0);
    assert_eq!(to_rgb8(&img), expected);
}

#[test]
fn png_16bit_keeps_full_precision() {
    let dir = temp_dir();
    let path = dir.path().join("deep.png");
    let samples = [1u16, 1000, 12345, 40000, 65534, 65535];
    let deep = ImageBuffer::<Rgb<u16>, Vec<u16>>::from_fn(2, 1, |x, _| {
        let base = 3 * x as usize;
        Rgb([samples[base], samples[base + 1], samples[base + 2]])
    });
    deep.save(&path).unwrap();
    let img = load_image(&path).unwrap();
    for x in 0..2 {
        let pixel = img.pixel(x, 0);
        for channel in 0..3 {
            let expected = f32::from(samples[3 * x as usize + channel]) / 65535.0;
            assert_close(pixel[channel], expected, 1e-7, "16-bit sample");
        }
    }
    // 12345/65535 lies between two 8-bit steps: an 8-bit path would have lost it.
    let via_8_bit = (img.pixel(0, 0)[2] * 255.0).round() / 255.0;
    assert!((img.pixel(0, 0)[2] - via_8_bit).abs() > 1e-4);
}

#[test]
fn png_16bit_save_round_trips() {
    let dir = temp_dir();
    let path = dir.path().join("out16.png");
    let data: Vec<f32> = (0..3 * 6 * 4).map(|i| (i * 1237 % 65536) as f32 / 65535.0).collect();
    let img = Image::new(6, 4, data);
    save_image(&path, &img, 16).unwrap();
    let decoded = image::open(&path).unwrap();
    assert!(matches!(decoded, DynamicImage::ImageRgb16(_)));
    let loaded = load_image(&path).unwrap();
    for (a, b) in loaded.data.iter().zip(&img.data) {
        assert_close(*a, *b, 1e-7, "16-bit round trip");
    }
}

#[test]
fn tiff_16bit_save_round_trips() {
    let dir = temp_dir();
    let path = dir.path().join("out16.tif");
    let data: Vec<f32> = (0..3 * 5 * 3).map(|i| (i * 4099 % 65536) as f32 / 65535.0).collect();
    let img = Image::new(5, 3, data);
    save_image(&path, &img, 16).unwrap();
    let loaded = load_image(&path).unwrap();
    for (a, b) in loaded.data.iter().zip(&img.data) {
        assert_close(*a, *b, 1e-7, "16-bit TIFF round trip");
    }
}

#[test]
fn grayscale_becomes_equal_channels() {
    let dir = temp_dir();
    let path = dir.path().join("gray.png");
    GrayImage::from_fn(4, 3, |x, y| Luma([(x * 60 + y * 5) as u8])).save(&path).unwrap();
    let img = load_image(&path).unwrap();
    assert_eq!((img.width, img.height), (4, 3));
    for y in 0..3 {
        for x in 0..4 {
            let [r, g, b] = img.pixel(x, y);
            assert_eq!(r, g);
            assert_eq!(g, b);
            assert_close(r, u8_sample((x * 60 + y * 5) as u8), 1e-6, "grey level");
        }
    }
}

#[test]
fn grayscale_16bit_becomes_equal_channels() {
    let dir = temp_dir();
    let path = dir.path().join("gray16.png");
    ImageBuffer::<Luma<u16>, Vec<u16>>::from_fn(3, 2, |x, y| Luma([(x * 20000 + y * 7) as u16])).save(&path).unwrap();
    let img = load_image(&path).unwrap();
    let [r, g, b] = img.pixel(2, 1);
    assert_eq!((r, g), (g, b));
    assert_close(r, 40007.0 / 65535.0, 1e-7, "16-bit gray");
}

#[test]
fn rgba_alpha_is_dropped_not_premultiplied() {
    let dir = temp_dir();
    let path = dir.path().join("alpha.png");
    RgbaImage::from_fn(2, 2, |x, _| Rgba([10, 200, 30, (x * 100) as u8])).save(&path).unwrap();
    let img = load_image(&path).unwrap();
    for y in 0..2 {
        for x in 0..2 {
            assert_eq!(img.pixel(x, y), [u8_sample(10), u8_sample(200), u8_sample(30)]);
        }
    }
}

#[test]
fn jpeg_loads_within_tolerance() {
    let dir = temp_dir();
    let path = dir.path().join("photo.jpg");
    let expected = RgbImage::from_pixel(16, 16, Rgb([200, 120, 40]));
    expected.save(&path).unwrap();
    let img = load_image(&path).unwrap();
    assert_matches_rgb8(&img, &expected, 0.03);
}

#[test]
fn gif_loads_first_frame() {
    let dir = temp_dir();
    let path = dir.path().join("anim.gif");
    let red = RgbaImage::from_pixel(3, 2, Rgba([255, 0, 0, 255]));
    let blue = RgbaImage::from_pixel(3, 2, Rgba([0, 0, 255, 255]));
    {
        let file = fs::File::create(&path).unwrap();
        let mut encoder = GifEncoder::new(file);
        encoder.encode_frames([Frame::new(red), Frame::new(blue)]).unwrap();
    }
    let img = load_image(&path).unwrap();
    assert_eq!((img.width, img.height), (3, 2));
    assert_eq!(img.pixel(1, 1), [1.0, 0.0, 0.0]);
}

#[test]
fn bmp_tiff_webp_load_exactly() {
    let dir = temp_dir();
    let expected = pattern_rgb8(5, 4);
    for name in ["in.bmp", "in.tif", "in.webp"] {
        let path = dir.path().join(name);
        expected.save(&path).unwrap();
        let img = load_image(&path).unwrap_or_else(|err| panic!("{name}: {err}"));
        assert_matches_rgb8(&img, &expected, 0.0);
    }
}

#[test]
fn format_is_recognised_from_content_not_extension() {
    let dir = temp_dir();
    let path = dir.path().join("actually_png.jpg");
    let expected = pattern_rgb8(3, 3);
    fs::write(&path, encode(&DynamicImage::ImageRgb8(expected.clone()), ImageFormat::Png)).unwrap();
    assert_matches_rgb8(&load_image(&path).unwrap(), &expected, 0.0);
}

#[test]
fn exif_orientation_6_rotates_clockwise() {
    let dir = temp_dir();
    let path = dir.path().join("rotated.jpg");
    // Grayscale at quality 100 keeps the values within a few steps (no chroma subsampling).
    let source = GrayImage::from_fn(4, 2, |x, y| Luma([(20 + 60 * x + 30 * y) as u8]));
    let mut jpeg = Vec::new();
    JpegEncoder::new_with_quality(&mut jpeg, 100).encode_image(&source).unwrap();
    assert_eq!(&jpeg[..2], &[0xff, 0xd8]);
    let mut with_exif = jpeg[..2].to_vec();
    with_exif.extend_from_slice(&exif_app1_with_orientation(6));
    with_exif.extend_from_slice(&jpeg[2..]);
    fs::write(&path, with_exif).unwrap();

    let img = load_image(&path).unwrap();
    assert_eq!((img.width, img.height), (2, 4));
    // Rotating 90° clockwise: output (x, y) shows source (y, H - 1 - x), H = 2.
    for y in 0..4 {
        for x in 0..2 {
            let expected = u8_sample(source.get_pixel(y, 1 - x).0[0]);
            assert_close(img.pixel(x, y)[0], expected, 4.0 / 255.0, "rotated pixel");
        }
    }
}

#[test]
fn sample_images_load_with_expected_sizes() {
    for (name, size) in [("astronaut.png", (512, 512)), ("rocket.jpg", (640, 427)), ("coffee.png", (600, 400))] {
        let img = load_image(&examples_dir().join(name)).unwrap();
        assert_eq!((img.width, img.height), size, "{name}");
        assert!(img.data.iter().all(|v| (0.0..=1.0).contains(v)), "{name}");
    }
}

// ---------------------------------------------------------------- resizing

#[test]
fn fit_within_landscape_and_portrait() {
    let landscape = Image::filled(800, 600, [0.2, 0.4, 0.6]);
    let fitted = fit_within(&landscape, 400);
    assert_eq!((fitted.width, fitted.height), (400, 300));
    let portrait = Image::filled(600, 800, [0.2, 0.4, 0.6]);
    let fitted = fit_within(&portrait, 400);
    assert_eq!((fitted.width, fitted.height), (300, 400));
    assert_close(fitted.pixel(150, 200)[1], 0.4, 1e-5, "constant colour kept");
}

#[test]
fn fit_within_never_upscales() {
    let small = Image::new(3, 2, (0..18).map(|i| i as f32 / 17.0).collect());
    assert_eq!(fit_within(&small, 400), small);
    let exact = Image::filled(400, 100, [0.5; 3]);
    assert_eq!(fit_within(&exact, 400), exact);
}

#[test]
fn fit_within_extreme_aspect_keeps_one_pixel() {
    let strip = Image::filled(4000, 3, [0.7; 3]);
    let fitted = fit_within(&strip, 400);
    assert_eq!((fitted.width, fitted.height), (400, 1));
    let column = Image::filled(2, 5000, [0.7; 3]);
    let fitted = fit_within(&column, 400);
    assert_eq!((fitted.width, fitted.height), (1, 400));
}

#[test]
fn fit_within_rounds_to_nearest() {
    let rocket_sized = Image::filled(640, 427, [0.5; 3]);
    let fitted = fit_within(&rocket_sized, 400);
    assert_eq!((fitted.width, fitted.height), (400, 267));
}

#[test]
fn resize_exact_preserves_constant_image() {
    let img = Image::filled(37, 23, [0.3, 0.6, 0.9]);
    for (width, height) in [(10, 7), (80, 50), (37, 5), (1, 1)] {
        let resized = resize_exact(&img, width, height);
        assert_eq!((resized.width, resized.height), (width, height));
        for y in 0..height {
            for x in 0..width {
                let [r, g, b] = resized.pixel(x, y);
                assert_close(r, 0.3, 1e-5, "r");
                assert_close(g, 0.6, 1e-5, "g");
                assert_close(b, 0.9, 1e-5, "b");
            }
        }
    }
}

#[test]
fn resize_exact_preserves_gradient_mean() {
    let (width, height) = (64u32, 48u32);
    let mut img = Image::filled(width, height, [0.0; 3]);
    for y in 0..height {
        for x in 0..width {
            let value = x as f32 / (width - 1) as f32;
            img.set_pixel(x, y, [value, 1.0 - value, 0.5]);
        }
    }
    let red_mean = |img: &Image| img.data[..img.plane_len()].iter().sum::<f32>() / img.plane_len() as f32;
    for (w, h) in [(20, 15), (100, 70)] {
        let resized = resize_exact(&img, w, h);
        assert_close(red_mean(&resized), red_mean(&img), 0.01, "gradient mean");
    }
}

#[test]
fn resize_exact_downscale_is_antialiased() {
    let mut checker = Image::filled(64, 64, [0.0; 3]);
    for y in 0..64 {
        for x in 0..64 {
            if (x + y) % 2 == 0 {
                checker.set_pixel(x, y, [1.0; 3]);
            }
        }
    }
    let small = resize_exact(&checker, 8, 8);
    for value in &small.data {
        assert_close(*value, 0.5, 0.1, "checkerboard averages to grey");
    }
}

// ---------------------------------------------------------------- bad inputs

#[test]
fn missing_file_error() {
    let dir = temp_dir();
    let path = dir.path().join("nope.png");
    let message = error_text(load_image(&path));
    assert_eq!(message, format!("image {}: file not found", path.display()));
}

#[test]
fn empty_file_error() {
    let dir = temp_dir();
    let path = dir.path().join("empty.png");
    fs::write(&path, b"").unwrap();
    let message = error_text(load_image(&path));
    assert_eq!(message, format!("image {}: empty file (0 bytes)", path.display()));
}

#[test]
fn directory_error() {
    let dir = temp_dir();
    let message = error_text(load_image(dir.path()));
    assert_eq!(message, format!("image {}: is a directory", dir.path().display()));
}

#[test]
fn text_file_named_png_error() {
    let dir = temp_dir();
    let path = dir.path().join("notes.png");
    fs::write(&path, "this is not an image\n").unwrap();
    let message = error_text(load_image(&path));
    assert_eq!(message, format!("image {}: not a supported image (format could not be recognised)", path.display()));
}

#[test]
fn truncated_png_error() {
    let dir = temp_dir();
    let path = dir.path().join("cut.png");
    let noisy = RgbImage::from_fn(64, 64, |x, y| Rgb([((x * 7) ^ (y * 13)) as u8, (x * y) as u8, (x + y * 3) as u8]));
    let png = encode(&DynamicImage::ImageRgb8(noisy), ImageFormat::Png);
    fs::write(&path, &png[..png.len() / 2]).unwrap();
    let message = error_text(load_image(&path));
    let prefix = format!("image {}: truncated or corrupt PNG data (", path.display());
    assert!(message.starts_with(&prefix), "{message}");
    assert!(message.ends_with(')'), "{message}");
}

#[test]
fn png_claiming_huge_size_is_refused_quickly() {
    let dir = temp_dir();
    let path = dir.path().join("bomb.png");
    fs::write(&path, png_claiming_size(100_000, 100_000)).unwrap();
    let started = Instant::now();
    let message = error_text(load_image(&path));
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        message,
        format!("image {}: dimensions 100000x100000 exceed the limit of 16384 pixels per side", path.display())
    );
}

#[test]
fn png_needing_too_much_memory_is_refused() {
    let dir = temp_dir();
    let path = dir.path().join("big.png");
    fs::write(&path, png_claiming_size(16000, 16000)).unwrap();
    let message = error_text(load_image(&path));
    assert!(message.contains("dimensions 16000x16000 need"), "{message}");
    assert!(message.contains("more than the limit of 1024 MiB"), "{message}");
}

#[test]
fn patched_png_with_sane_size_still_decodes() {
    // The CRC helper is right: an unchanged size keeps the file valid.
    let dir = temp_dir();
    let path = dir.path().join("same.png");
    fs::write(&path, png_claiming_size(4, 4)).unwrap();
    assert_eq!(load_image(&path).unwrap().width, 4);
}

// ---------------------------------------------------------------- saving

#[test]
fn save_round_trips_in_each_lossless_format() {
    let dir = temp_dir();
    let expected = pattern_rgb8(6, 5);
    let img = from_dynamic(DynamicImage::ImageRgb8(expected.clone()));
    for name in ["out.png", "out.bmp", "out.tif", "out.tiff", "out.webp", "OUT2.PNG"] {
        let path = dir.path().join(name);
        save_image(&path, &img, 8).unwrap_or_else(|err| panic!("{name}: {err}"));
        assert_eq!(to_rgb8(&load_image(&path).unwrap()), expected, "{name}");
    }
    assert!(temp_files_in(dir.path()).is_empty());
}

#[test]
fn save_jpeg_is_close() {
    let dir = temp_dir();
    let img = Image::filled(16, 16, [0.8, 0.5, 0.2]);
    for name in ["out.jpg", "out.jpeg"] {
        let path = dir.path().join(name);
        save_image(&path, &img, 8).unwrap();
        let loaded = load_image(&path).unwrap();
        for (a, b) in loaded.data.iter().zip(&img.data) {
            assert_close(*a, *b, 0.02, name);
        }
    }
}

#[test]
fn save_clamps_and_rounds() {
    let dir = temp_dir();
    let path = dir.path().join("clamped.png");
    let img = Image::new(3, 1, vec![-0.5, 1.5, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    save_image(&path, &img, 8).unwrap();
    let saved = image::open(&path).unwrap().into_rgb8();
    assert_eq!(saved.get_pixel(0, 0).0[0], 0);
    assert_eq!(saved.get_pixel(1, 0).0[0], 255);
    assert_eq!(saved.get_pixel(2, 0).0[0], 128);
}

#[test]
fn save_unsupported_extension_error() {
    let dir = temp_dir();
    let path = dir.path().join("out.xyz");
    let message = error_text(save_image(&path, &Image::filled(2, 2, [0.5; 3]), 8));
    assert_eq!(
        message,
        format!("output {}: unsupported output format \"xyz\" (use png, jpg, webp, tif or bmp)", path.display())
    );
    assert!(!path.exists());
}

#[test]
fn save_missing_folder_error() {
    let dir = temp_dir();
    let folder = dir.path().join("missing");
    let path = folder.join("out.png");
    let message = error_text(save_image(&path, &Image::filled(2, 2, [0.5; 3]), 8));
    assert_eq!(message, format!("output {}: folder {} does not exist", path.display(), folder.display()));
}

#[test]
fn save_16bit_jpeg_refused() {
    let dir = temp_dir();
    let path = dir.path().join("out.jpg");
    let message = error_text(save_image(&path, &Image::filled(2, 2, [0.5; 3]), 16));
    assert!(
        message.starts_with(&format!("output {}: 16-bit output is not supported for JPEG", path.display())),
        "{message}"
    );
    let message = error_text(save_image(&path, &Image::filled(2, 2, [0.5; 3]), 12));
    assert!(message.contains("12-bit output is not supported"), "{message}");
    assert!(!path.exists());
}

#[test]
fn save_over_non_empty_directory_fails_cleanly() {
    let dir = temp_dir();
    let path = dir.path().join("out.png");
    fs::create_dir(&path).unwrap();
    fs::write(path.join("keep.txt"), b"keep").unwrap();
    let message = error_text(save_image(&path, &Image::filled(2, 2, [0.5; 3]), 8));
    assert_eq!(message, format!("output {}: is a directory", path.display()));
    assert_eq!(fs::read(path.join("keep.txt")).unwrap(), b"keep");
    assert!(temp_files_in(dir.path()).is_empty());
}

#[test]
fn failed_save_leaves_existing_destination_untouched() {
    let dir = temp_dir();
    let path = dir.path().join("out.png");
    fs::write(&path, b"previous result").unwrap();
    // An empty image cannot be encoded: the failure comes after the path checks.
    let message = error_text(save_image(&path, &Image::new(0, 0, Vec::new()), 8));
    assert!(message.contains("cannot save an empty 0x0 image"), "{message}");
    assert_eq!(fs::read(&path).unwrap(), b"previous result");
    assert!(temp_files_in(dir.path()).is_empty());
}

#[test]
fn successful_save_replaces_existing_destination() {
    let dir = temp_dir();
    let path = dir.path().join("out.png");
    fs::write(&path, b"previous result").unwrap();
    let img = Image::filled(3, 3, [0.0, 1.0, 0.0]);
    save_image(&path, &img, 8).unwrap();
    assert_eq!(load_image(&path).unwrap(), img);
    assert!(temp_files_in(dir.path()).is_empty());
}

// ---------------------------------------------------------------- check_output_path

#[test]
fn check_output_path_accepts_writable_targets() {
    let dir = temp_dir();
    check_output_path(&dir.path().join("out.png"), 8).unwrap();
    check_output_path(&dir.path().join("out.png"), 16).unwrap();
    check_output_path(&dir.path().join("out.tif"), 16).unwrap();
    check_output_path(&dir.path().join("out.jpg"), 8).unwrap();
    let existing = dir.path().join("existing.webp");
    fs::write(&existing, b"old").unwrap();
    check_output_path(&existing, 8).unwrap();
    assert_eq!(fs::read(&existing).unwrap(), b"old");
    let entries = fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(entries, 1, "probe file left behind");
}

#[test]
fn check_output_path_rejections() {
    let dir = temp_dir();
    let shown = |path: &Path| path.display().to_string();

    let missing_folder = dir.path().join("missing");
    let missing = missing_folder.join("out.png");
    assert_eq!(
        error_text(check_output_path(&missing, 8)),
        format!("output {}: folder {} does not exist", shown(&missing), shown(&missing_folder))
    );

    let file_as_folder = dir.path().join("plain.txt");
    fs::write(&file_as_folder, b"x").unwrap();
    let under_file = file_as_folder.join("out.png");
    assert_eq!(
        error_text(check_output_path(&under_file, 8)),
        format!("output {}: {} is not a folder", shown(&under_file), shown(&file_as_folder))
    );

    let folder_target = dir.path().join("folder.png");
    fs::create_dir(&folder_target).unwrap();
    assert_eq!(
        error_text(check_output_path(&folder_target, 8)),
        format!("output {}: is a directory", shown(&folder_target))
    );

    let bad_extension = dir.path().join("out.xyz");
    assert!(error_text(check_output_path(&bad_extension, 8)).contains("unsupported output format \"xyz\""));

    let no_extension = dir.path().join("out");
    assert!(error_text(check_output_path(&no_extension, 8)).contains("no file extension"));

    let deep_jpeg = dir.path().join("out.jpg");
    assert!(error_text(check_output_path(&deep_jpeg, 16)).contains("16-bit output is not supported for JPEG"));
    let deep_bmp = dir.path().join("out.bmp");
    assert!(error_text(check_output_path(&deep_bmp, 16)).contains("16-bit"));
}

#[cfg(unix)]
#[test]
fn check_output_path_rejects_read_only_folder() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir();
    let folder = dir.path().join("locked");
    fs::create_dir(&folder).unwrap();
    fs::set_permissions(&folder, fs::Permissions::from_mode(0o555)).unwrap();
    let can_write_anyway = fs::write(folder.join("root-test"), b"x").is_ok();
    let result = check_output_path(&folder.join("out.png"), 8);
    fs::set_permissions(&folder, fs::Permissions::from_mode(0o755)).unwrap();
    if can_write_anyway {
        return; // running as root: permissions are not enforced
    }
    let message = error_text(result);
    assert!(message.contains(&format!("folder {} is not writable (", folder.display())), "{message}");
}

// ---------------------------------------------------------------- side_by_side

#[test]
fn side_by_side_sizes_and_placement() {
    const WHITE: [f32; 3] = [1.0, 1.0, 1.0];
    let red = Image::filled(2, 3, [1.0, 0.0, 0.0]);
    let green = Image::filled(4, 5, [0.0, 1.0, 0.0]);
    let blue = Image::filled(1, 1, [0.0, 0.0, 1.0]);
    let canvas = side_by_side(&[&red, &green, &blue]);
    assert_eq!((canvas.width, canvas.height), (7, 5));

    // red: columns 0-1, centred vertically in rows 1-3
    for x in 0..2 {
        assert_eq!(canvas.pixel(x, 0), WHITE);
        for y in 1..4 {
            assert_eq!(canvas.pixel(x, y), [1.0, 0.0, 0.0]);
        }
        assert_eq!(canvas.pixel(x, 4), WHITE);
    }
    // green: columns 2-5, full height
    for x in 2..6 {
        for y in 0..5 {
            assert_eq!(canvas.pixel(x, y), [0.0, 1.0, 0.0]);
        }
    }
    // blue: column 6, row 2
    for y in 0..5 {
        let expected = if y == 2 { [0.0, 0.0, 1.0] } else { WHITE };
        assert_eq!(canvas.pixel(6, y), expected);
    }
}

#[test]
fn side_by_side_edge_cases() {
    let empty = side_by_side(&[]);
    assert_eq!((empty.width, empty.height, empty.data.len()), (0, 0, 0));
    let single = Image::new(2, 1, vec![0.1, 0.2, 0.3, 0.4, 0.5, 0.6]);
    assert_eq!(side_by_side(&[&single]), single);
}

/// Found by the `image` fuzz target on 2026-12-01: a progressive JPEG on which zune-jpeg 0.5.15's
/// AVX2 upsampler fails an assertion (`input.len() * 2 <= scratch_space.len()`). The library
/// catches the decoder's panic and keeps it quiet: the load is a one-line error naming the file,
/// never a crash, and the panic is counted where the fuzz targets and tests look.
#[test]
fn jpeg_that_panics_inside_zune_jpeg_is_an_error() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_regressions/image/upstream-zune-jpeg-0.5.15-avx2-upsample.jpg");
    let bytes = fs::read(&path).unwrap();
    let before = stylize::image_io::caught_decoder_panics();
    let err = stylize::image_io::load_image(&path).expect_err("the decoder fails on it");
    assert!(err.to_string().contains("upstream-zune-jpeg-0.5.15-avx2-upsample.jpg"), "{err}");
    assert!(stylize::image_io::load_image_from_bytes(&bytes, Path::new("crash.jpg")).is_err());
    assert_eq!(stylize::image_io::caught_decoder_panics(), before + 2, "the decoder's two panics, caught");
}
