//! Encoding and atomic writing of output images, and up-front checks of output paths.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, ImageFormat};

use super::error::{ImageError, SaveProblem, one_line};
use super::{Image, to_rgb8, to_rgb16};

/// JPEG quality used for output (1-100).
const JPEG_QUALITY: u8 = 95;

/// Counter making temp-file names unique within this process.
static TEMP_FILE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// An output file format, chosen from the path's extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// `.png`, 8 or 16 bit.
    Png,
    /// `.jpg` / `.jpeg`, 8 bit, quality 95.
    Jpeg,
    /// `.webp`, 8 bit, lossless.
    WebP,
    /// `.tif` / `.tiff`, 8 or 16 bit.
    Tiff,
    /// `.bmp`, 8 bit.
    Bmp,
}

impl OutputFormat {
    /// The format for an extension (case-insensitive), or `None` if unsupported.
    pub fn from_extension(extension: &str) -> Option<Self> {
        match extension.to_ascii_lowercase().as_str() {
            "png" => Some(OutputFormat::Png),
            "jpg" | "jpeg" => Some(OutputFormat::Jpeg),
            "webp" => Some(OutputFormat::WebP),
            "tif" | "tiff" => Some(OutputFormat::Tiff),
            "bmp" => Some(OutputFormat::Bmp),
            _ => None,
        }
    }

    /// The format named by a path's extension, or the reason there is none.
    pub fn from_path(path: &Path) -> Result<Self, SaveProblem> {
        let extension = path.extension().ok_or(SaveProblem::MissingExtension)?.to_string_lossy();
        OutputFormat::from_extension(&extension)
            .ok_or_else(|| SaveProblem::UnsupportedFormat { extension: extension.into_owned() })
    }

    /// Short name for messages, e.g. `PNG`.
    pub fn name(self) -> &'static str {
        match self {
            OutputFormat::Png => "PNG",
            OutputFormat::Jpeg => "JPEG",
            OutputFormat::WebP => "WebP",
            OutputFormat::Tiff => "TIFF",
            OutputFormat::Bmp => "BMP",
        }
    }

    /// Whether the format can store 16 bits per sample.
    pub fn supports_16_bit(self) -> bool {
        matches!(self, OutputFormat::Png | OutputFormat::Tiff)
    }

    /// Checks that `bit_depth` is 8, or 16 for a format that stores it.
    pub fn check_bit_depth(self, bit_depth: u8) -> Result<(), SaveProblem> {
        let allowed = bit_depth == 8 || (bit_depth == 16 && self.supports_16_bit());
        if allowed {
            return Ok(());
        }
        let hint = if bit_depth == 16 { "16-bit needs png or tif" } else { "use 8 or 16" };
        Err(SaveProblem::UnsupportedBitDepth { bit_depth, format: self.name().into(), hint: hint.into() })
    }

    fn image_format(self) -> ImageFormat {
        match self {
            OutputFormat::Png => ImageFormat::Png,
            OutputFormat::Jpeg => ImageFormat::Jpeg,
            OutputFormat::WebP => ImageFormat::WebP,
            OutputFormat::Tiff => ImageFormat::Tiff,
            OutputFormat::Bmp => ImageFormat::Bmp,
        }
    }
}

/// Writes `img` atomically; the format comes from the extension (png, jpg/jpeg, webp, tif/tiff,
/// bmp) and `bit_depth` is 8 or 16 (16 for png and tiff only). Samples are clamped to [0, 1]
/// and rounded. The bytes go to a temp file in the same folder, which is fsynced and renamed
/// over the destination; on failure the temp file is removed and an existing destination is
/// left untouched.
pub fn save_image(path: &Path, img: &Image, bit_depth: u8) -> Result<(), ImageError> {
    let fail = |problem| ImageError::save(path, problem);
    let format = check_format_and_folder(path, bit_depth).map_err(fail)?;
    let bytes = encode(img, format, bit_depth).map_err(fail)?;
    write_atomically(path, &bytes).map_err(|err| fail(SaveProblem::Write { detail: one_line(err) }))
}

/// Checks, before any work starts, that `path` can be written as an image: its folder exists
/// and is a folder, the path is not a folder, the extension is a supported format at
/// `bit_depth`, and the folder is writable (a probe file is created and removed).
pub fn check_output_path(path: &Path, bit_depth: u8) -> Result<(), ImageError> {
    let fail = |problem| ImageError::save(path, problem);
    check_format_and_folder(path, bit_depth).map_err(fail)?;
    let folder = parent_folder(path);
    probe_writable(path).map_err(|err| fail(SaveProblem::NotWritable { folder, detail: one_line(err) }))
}

/// The checks shared by saving and pre-checking, apart from writability.
fn check_format_and_folder(path: &Path, bit_depth: u8) -> Result<OutputFormat, SaveProblem> {
    check_folder(path)?;
    let format = OutputFormat::from_path(path)?;
    format.check_bit_depth(bit_depth)?;
    Ok(format)
}

/// Checks that the parent folder exists and is a folder, and that the path is not a folder.
fn check_folder(path: &Path) -> Result<(), SaveProblem> {
    let folder = parent_folder(path);
    match fs::metadata(&folder) {
        Ok(metadata) if metadata.is_dir() => {}
        Ok(_) => return Err(SaveProblem::ParentNotFolder { folder }),
        Err(_) => return Err(SaveProblem::FolderMissing { folder }),
    }
    if path.is_dir() {
        return Err(SaveProblem::IsDirectory);
    }
    Ok(())
}

/// The folder holding `path` (`.` for a bare file name).
fn parent_folder(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Encodes the image into memory in `format` at `bit_depth` (already checked).
fn encode(img: &Image, format: OutputFormat, bit_depth: u8) -> Result<Vec<u8>, SaveProblem> {
    if img.plane_len() == 0 {
        return Err(SaveProblem::EmptyImage { width: img.width, height: img.height });
    }
    let encode_error =
        |err: image::ImageError| SaveProblem::Encode { format: format.name().into(), detail: one_line(err) };
    let mut bytes = Cursor::new(Vec::new());
    if format == OutputFormat::Jpeg {
        JpegEncoder::new_with_quality(&mut bytes, JPEG_QUALITY).encode_image(&to_rgb8(img)).map_err(encode_error)?;
    } else {
        let interleaved = if bit_depth == 16 {
            DynamicImage::ImageRgb16(to_rgb16(img))
        } else {
            DynamicImage::ImageRgb8(to_rgb8(img))
        };
        interleaved.write_to(&mut bytes, format.image_format()).map_err(encode_error)?;
    }
    Ok(bytes.into_inner())
}

/// A fresh temp-file path next to `path`: `.<name>.tmp-<pid>-<n>`.
fn temp_path_beside(path: &Path) -> PathBuf {
    let mut name = OsString::from(".");
    name.push(path.file_name().unwrap_or_else(|| "output".as_ref()));
    let counter = TEMP_FILE_COUNTER.fetch_add(1, Ordering::Relaxed);
    name.push(format!(".tmp-{}-{counter}", std::process::id()));
    parent_folder(path).join(name)
}

/// Writes `bytes` to a temp file beside `dest`, fsyncs it and renames it over `dest`;
/// removes the temp file if any step fails.
pub(crate) fn write_atomically(dest: &Path, bytes: &[u8]) -> io::Result<()> {
    let temp_path = temp_path_beside(dest);
    let result = write_and_sync(&temp_path, bytes).and_then(|()| fs::rename(&temp_path, dest));
    if result.is_err() {
        let _ = fs::remove_file(&temp_path);
        return result;
    }
    sync_folder(&parent_folder(dest));
    Ok(())
}

/// Creates a new file (never overwriting), writes all bytes and fsyncs them.
fn write_and_sync(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).open(path)?;
    file.write_all(bytes)?;
    file.flush()?;
    file.sync_all()
}

/// Best-effort fsync of a folder so a rename survives a crash (not possible on every OS).
fn sync_folder(folder: &Path) {
    if let Ok(handle) = File::open(folder) {
        let _ = handle.sync_all();
    }
}

/// Creates and removes a probe temp file beside `path`.
fn probe_writable(path: &Path) -> io::Result<()> {
    let probe_path = temp_path_beside(path);
    let created = OpenOptions::new().write(true).create_new(true).open(&probe_path);
    match created {
        Ok(file) => {
            drop(file);
            fs::remove_file(&probe_path)
        }
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leftover_temp_files(folder: &Path) -> Vec<String> {
        fs::read_dir(folder)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.contains(".tmp-"))
            .collect()
    }

    #[test]
    fn temp_names_are_hidden_unique_and_beside_the_destination() {
        let dest = Path::new("/some/dir/out.png");
        let first = temp_path_beside(dest);
        let second = temp_path_beside(dest);
        assert_ne!(first, second);
        assert_eq!(first.parent(), Some(Path::new("/some/dir")));
        let name = first.file_name().unwrap().to_string_lossy().into_owned();
        let prefix = format!(".out.png.tmp-{}-", std::process::id());
        assert!(name.starts_with(&prefix), "{name}");
    }

    #[test]
    fn failed_rename_removes_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.png");
        fs::create_dir(&dest).unwrap();
        fs::write(dest.join("keep.txt"), b"x").unwrap();
        assert!(write_atomically(&dest, b"data").is_err());
        assert!(leftover_temp_files(dir.path()).is_empty());
        assert_eq!(fs::read(dest.join("keep.txt")).unwrap(), b"x");
    }

    #[test]
    fn write_atomically_replaces_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.bin");
        fs::write(&dest, b"old").unwrap();
        write_atomically(&dest, b"new contents").unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"new contents");
        assert!(leftover_temp_files(dir.path()).is_empty());
    }

    #[test]
    fn bare_file_name_uses_current_folder() {
        assert_eq!(parent_folder(Path::new("out.png")), PathBuf::from("."));
    }

    #[test]
    fn bit_depth_rules() {
        assert!(OutputFormat::Png.check_bit_depth(16).is_ok());
        assert!(OutputFormat::Tiff.check_bit_depth(16).is_ok());
        assert!(OutputFormat::Jpeg.check_bit_depth(16).is_err());
        assert!(OutputFormat::Png.check_bit_depth(12).is_err());
        assert!(OutputFormat::Bmp.check_bit_depth(8).is_ok());
    }
}
