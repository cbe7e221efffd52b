//! Decoding image files into [`Image`], with limits against decompression bombs.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Cursor, Seek};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Once;

use image::error::{ImageError as CrateError, LimitErrorKind};
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

use super::error::{ImageError, LoadProblem, one_line};
use super::{Image, from_dynamic};

/// Largest width or height, in pixels, that [`load_image`] accepts.
pub const MAX_SIDE_PIXELS: u32 = 16384;

/// Most memory, in bytes, that decoding one image may need (decoder buffer plus f32 copies).
pub const MAX_DECODE_BYTES: u64 = 1 << 30;

const BYTES_PER_MIB: u64 = 1 << 20;

/// Bytes per pixel of each float RGB copy made after decoding (interleaved, then planar).
const FLOAT_RGB_BYTES_PER_PIXEL: u64 = 3 * 4;

/// Decodes an image file (PNG, JPEG, WebP, BMP, TIFF, GIF first frame, ...) to RGB in [0, 1].
///
/// The format is recognised from the content, not the extension. Grayscale becomes RGB,
/// alpha is dropped, 16-bit samples keep full precision, and EXIF orientation is applied.
/// Headers claiming more than [`MAX_SIDE_PIXELS`] per side or needing more than
/// [`MAX_DECODE_BYTES`] are refused before any pixel buffer is allocated.
pub fn load_image(path: &Path) -> Result<Image, ImageError> {
    let fail = |problem| ImageError::load(path, problem);
    check_input_file(path).map_err(fail)?;
    let file = File::open(path).map_err(|err| fail(problem_from_io(&err)))?;
    decode_guarded(BufReader::new(file)).map_err(fail)
}

/// Bits per sample the file stores: 16 for 16-bit or floating-point samples, 8 otherwise. Reads
/// the header only; errors as [`load_image`]'s.
pub fn source_bit_depth(path: &Path) -> Result<u8, ImageError> {
    let fail = |problem| ImageError::load(path, problem);
    check_input_file(path).map_err(fail)?;
    let file = File::open(path).map_err(|err| fail(problem_from_io(&err)))?;
    let reader =
        ImageReader::new(BufReader::new(file)).with_guessed_format().map_err(|err| fail(problem_from_io(&err)))?;
    let format = reader.format().ok_or(LoadProblem::UnrecognisedFormat).map_err(fail)?;
    let decoder = reader.into_decoder().map_err(|err| fail(problem_from_decoder(err, &format_name(format))))?;
    let color = decoder.color_type();
    Ok(if color.bits_per_pixel() / u16::from(color.channel_count()) > 8 { 16 } else { 8 })
}

/// [`load_image`] on the bytes of an image file held in memory; `name` is the path that
/// errors name.
pub fn load_image_from_bytes(bytes: &[u8], name: &Path) -> Result<Image, ImageError> {
    if bytes.is_empty() {
        return Err(ImageError::load(name, LoadProblem::Empty));
    }
    decode_guarded(Cursor::new(bytes)).map_err(|problem| ImageError::load(name, problem))
}

thread_local! {
    /// Whether this thread is inside a decoder (`decode_guarded`), whose panics become errors.
    static DECODING: Cell<bool> = const { Cell::new(false) };
    /// Decoder panics this thread caught and kept quiet.
    static CAUGHT: Cell<u64> = const { Cell::new(0) };
}

/// Installs, once per process, a panic hook that keeps quiet for a panic inside a decoder (it
/// becomes the one-line error of the load; only `caught_decoder_panics` counts it) and passes
/// every other panic to the hook that was there before.
fn quiet_decoder_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if DECODING.with(Cell::get) {
                CAUGHT.with(|n| n.set(n.get() + 1));
            } else {
                previous(info);
            }
        }));
    });
}

/// Decoder panics this thread has caught (and kept quiet) so far: for the fuzz targets and the
/// regression tests, which must still see them.
#[doc(hidden)]
pub fn caught_decoder_panics() -> u64 {
    CAUGHT.with(Cell::get)
}

/// [`decode_image`] with any decoder panic turned into an error.
fn decode_guarded<R: BufRead + Seek>(reader: R) -> Result<Image, LoadProblem> {
    // Decoders are third-party code fed untrusted bytes: turn any panic into an error, without
    // the panic's message and backtrace on stderr (the error is the one line the user gets).
    quiet_decoder_panics();
    DECODING.with(|d| d.set(true));
    let outcome = catch_unwind(AssertUnwindSafe(|| decode_image(reader)));
    DECODING.with(|d| d.set(false));
    match outcome {
        Ok(result) => result,
        Err(_) => {
            Err(LoadProblem::Corrupt { format: "image".into(), detail: "the decoder failed on malformed data".into() })
        }
    }
}

/// Checks that the path is a non-empty regular file before opening it.
fn check_input_file(path: &Path) -> Result<(), LoadProblem> {
    let metadata = std::fs::metadata(path).map_err(|err| problem_from_io(&err))?;
    if metadata.is_dir() {
        return Err(LoadProblem::IsDirectory);
    }
    if metadata.len() == 0 {
        return Err(LoadProblem::Empty);
    }
    Ok(())
}

/// Recognises the format from the first bytes, checks the header against the limits, decodes.
fn decode_image<R: BufRead + Seek>(reader: R) -> Result<Image, LoadProblem> {
    let mut reader = ImageReader::new(reader).with_guessed_format().map_err(|err| problem_from_io(&err))?;
    let format = reader.format().ok_or(LoadProblem::UnrecognisedFormat)?;
    let format_name = format_name(format);
    // Side limits are checked below by hand so the error can name the dimensions.
    reader.limits(allocation_limits());
    let mut decoder = reader.into_decoder().map_err(|err| problem_from_decoder(err, &format_name))?;
    let (width, height) = decoder.dimensions();
    check_dimensions(width, height, decoder.total_bytes())?;
    decoder.set_limits(full_limits()).map_err(|err| problem_from_decoder(err, &format_name))?;
    let orientation = decoder.orientation().map_err(|err| problem_from_decoder(err, &format_name))?;
    let mut decoded = DynamicImage::from_decoder(decoder).map_err(|err| problem_from_decoder(err, &format_name))?;
    decoded.apply_orientation(orientation);
    Ok(from_dynamic(decoded))
}

/// Limits with only the allocation cap, so the header can be read and reported.
fn allocation_limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    limits
}

/// Allocation cap plus the per-side limits.
fn full_limits() -> Limits {
    let mut limits = allocation_limits();
    limits.max_image_width = Some(MAX_SIDE_PIXELS);
    limits.max_image_height = Some(MAX_SIDE_PIXELS);
    limits
}

/// Refuses headers whose sides or decode memory exceed the limits.
fn check_dimensions(width: u32, height: u32, decoder_bytes: u64) -> Result<(), LoadProblem> {
    if width > MAX_SIDE_PIXELS || height > MAX_SIDE_PIXELS {
        return Err(LoadProblem::TooLarge { width, height, limit: MAX_SIDE_PIXELS });
    }
    let pixels = u64::from(width) * u64::from(height);
    let float_copies_bytes = 2 * pixels * FLOAT_RGB_BYTES_PER_PIXEL;
    let needed = decoder_bytes.saturating_add(float_copies_bytes);
    if needed > MAX_DECODE_BYTES {
        return Err(LoadProblem::TooMuchMemory {
            width,
            height,
            needed_mib: needed.div_ceil(BYTES_PER_MIB),
            limit_mib: MAX_DECODE_BYTES / BYTES_PER_MIB,
        });
    }
    Ok(())
}

/// Short upper-case name of a format for messages, e.g. `PNG`.
fn format_name(format: ImageFormat) -> String {
    match format {
        ImageFormat::Jpeg => "JPEG".into(),
        ImageFormat::WebP => "WebP".into(),
        ImageFormat::Tiff => "TIFF".into(),
        other => other
            .extensions_str()
            .first()
            .map(|ext| ext.to_uppercase())
            .unwrap_or_else(|| format!("{other:?}").to_uppercase()),
    }
}

/// Maps an operating-system error from opening or reading the file.
fn problem_from_io(err: &io::Error) -> LoadProblem {
    match err.kind() {
        io::ErrorKind::NotFound => LoadProblem::NotFound,
        io::ErrorKind::IsADirectory => LoadProblem::IsDirectory,
        _ => LoadProblem::Unreadable(one_line(err)),
    }
}

/// Maps an error from the `image` crate's decoder.
fn problem_from_decoder(err: CrateError, format_name: &str) -> LoadProblem {
    match err {
        CrateError::Decoding(decoding) => {
            LoadProblem::Corrupt { format: format_name.to_string(), detail: innermost_message(&decoding) }
        }
        CrateError::IoError(io_err) if io_err.kind() == io::ErrorKind::UnexpectedEof => {
            LoadProblem::Corrupt { format: format_name.to_string(), detail: "unexpected end of file".into() }
        }
        CrateError::IoError(io_err) => problem_from_io(&io_err),
        CrateError::Limits(limit) => match limit.kind() {
            LimitErrorKind::InsufficientMemory => LoadProblem::LimitExceeded(format!(
                "needs more than {} MiB of memory",
                MAX_DECODE_BYTES / BYTES_PER_MIB
            )),
            _ => LoadProblem::LimitExceeded(one_line(limit)),
        },
        CrateError::Unsupported(unsupported) => LoadProblem::Unsupported(one_line(unsupported)),
        other => LoadProblem::Corrupt { format: format_name.to_string(), detail: one_line(other) },
    }
}

/// The underlying cause's message when there is one (it omits the "decoding PNG" prefix).
fn innermost_message(err: &dyn std::error::Error) -> String {
    let mut current = err;
    while let Some(source) = current.source() {
        current = source;
    }
    one_line(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn dimensions_over_side_limit_are_refused() {
        let problem = check_dimensions(MAX_SIDE_PIXELS + 1, 10, 0).unwrap_err();
        assert!(matches!(problem, LoadProblem::TooLarge { .. }));
    }

    #[test]
    fn dimensions_needing_too_much_memory_are_refused() {
        let problem = check_dimensions(MAX_SIDE_PIXELS, MAX_SIDE_PIXELS, 0).unwrap_err();
        assert!(matches!(problem, LoadProblem::TooMuchMemory { .. }));
        assert!(check_dimensions(4000, 3000, 4000 * 3000 * 3).is_ok());
    }

    #[test]
    fn garbage_bytes_never_panic() {
        let mut seed = 0x2545_f491u32;
        for len in [1usize, 7, 16, 64, 300] {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    seed as u8
                })
                .collect();
            assert!(decode_image(Cursor::new(bytes)).is_err());
        }
    }

    #[test]
    fn truncated_files_of_each_format_never_panic() {
        let img = DynamicImage::ImageRgb8(image::RgbImage::from_pixel(8, 8, image::Rgb([9, 99, 199])));
        for format in [
            ImageFormat::Png,
            ImageFormat::Jpeg,
            ImageFormat::Bmp,
            ImageFormat::Tiff,
            ImageFormat::Gif,
            ImageFormat::WebP,
        ] {
            let mut encoded = Cursor::new(Vec::new());
            img.write_to(&mut encoded, format).unwrap();
            let bytes = encoded.into_inner();
            assert!(decode_image(Cursor::new(bytes.clone())).is_ok(), "{format:?}");
            for cut in [bytes.len() / 4, bytes.len() / 2] {
                let _ = decode_image(Cursor::new(bytes[..cut].to_vec()));
            }
        }
    }
}
