//! Errors for image loading and saving, each displayed as one line naming the file.

use std::path::{Path, PathBuf};

/// An image could not be loaded or saved; `Display` is one line naming the file and the problem.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Reading or decoding an input image failed.
    #[error("image {}: {problem}", path.display())]
    Load {
        /// The input file.
        path: PathBuf,
        /// What went wrong.
        problem: LoadProblem,
    },
    /// Checking, encoding or writing an output image failed.
    #[error("output {}: {problem}", path.display())]
    Save {
        /// The output file.
        path: PathBuf,
        /// What went wrong.
        problem: SaveProblem,
    },
}

impl ImageError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            ImageError::Load { path, .. } | ImageError::Save { path, .. } => path,
        }
    }

    pub(crate) fn load(path: &Path, problem: LoadProblem) -> Self {
        ImageError::Load { path: path.to_path_buf(), problem }
    }

    pub(crate) fn save(path: &Path, problem: SaveProblem) -> Self {
        ImageError::Save { path: path.to_path_buf(), problem }
    }
}

/// Why an input image could not be loaded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LoadProblem {
    /// Nothing exists at the path.
    #[error("file not found")]
    NotFound,
    /// The file has no bytes.
    #[error("empty file (0 bytes)")]
    Empty,
    /// The path names a directory.
    #[error("is a directory")]
    IsDirectory,
    /// The file exists but could not be opened or read.
    #[error("cannot read file ({0})")]
    Unreadable(String),
    /// The first bytes match no image format the decoder knows.
    #[error("not a supported image (format could not be recognised)")]
    UnrecognisedFormat,
    /// The format was recognised but this kind of file is not supported.
    #[error("not a supported image ({0})")]
    Unsupported(String),
    /// The data ends early or breaks the format's rules.
    #[error("truncated or corrupt {format} data ({detail})")]
    Corrupt {
        /// Format name, e.g. `PNG`.
        format: String,
        /// The decoder's description.
        detail: String,
    },
    /// The header claims more pixels per side than allowed.
    #[error("dimensions {width}x{height} exceed the limit of {limit} pixels per side")]
    TooLarge {
        /// Claimed width.
        width: u32,
        /// Claimed height.
        height: u32,
        /// Largest allowed side.
        limit: u32,
    },
    /// Decoding would need more memory than allowed.
    #[error("dimensions {width}x{height} need {needed_mib} MiB to decode, more than the limit of {limit_mib} MiB")]
    TooMuchMemory {
        /// Claimed width.
        width: u32,
        /// Claimed height.
        height: u32,
        /// Memory the decode would need, in MiB (rounded up).
        needed_mib: u64,
        /// Memory allowed, in MiB.
        limit_mib: u64,
    },
    /// The decoder refused the image because of its resource limits.
    #[error("exceeds the decoder's limits ({0})")]
    LimitExceeded(String),
}

/// Why an output image could not be checked or written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SaveProblem {
    /// The folder that should hold the file does not exist.
    #[error("folder {} does not exist", folder.display())]
    FolderMissing {
        /// The missing folder.
        folder: PathBuf,
    },
    /// The parent path exists but is not a folder.
    #[error("{} is not a folder", folder.display())]
    ParentNotFolder {
        /// The parent path.
        folder: PathBuf,
    },
    /// The output path is an existing directory.
    #[error("is a directory")]
    IsDirectory,
    /// The path has no extension to pick a format from.
    #[error("no file extension to choose the format from (use png, jpg, webp, tif or bmp)")]
    MissingExtension,
    /// The extension names no supported output format.
    #[error("unsupported output format \"{extension}\" (use png, jpg, webp, tif or bmp)")]
    UnsupportedFormat {
        /// The extension as written.
        extension: String,
    },
    /// The bit depth is not 8 or 16, or 16 was asked for a format that lacks it.
    #[error("{bit_depth}-bit output is not supported for {format} ({hint})")]
    UnsupportedBitDepth {
        /// The bit depth asked for.
        bit_depth: u8,
        /// Format name, e.g. `JPEG`.
        format: String,
        /// What is allowed instead.
        hint: String,
    },
    /// The folder exists but a file cannot be created in it.
    #[error("folder {} is not writable ({detail})", folder.display())]
    NotWritable {
        /// The folder.
        folder: PathBuf,
        /// The operating system's description.
        detail: String,
    },
    /// The image has no pixels.
    #[error("cannot save an empty {width}x{height} image")]
    EmptyImage {
        /// Image width.
        width: u32,
        /// Image height.
        height: u32,
    },
    /// The encoder failed.
    #[error("could not encode {format} ({detail})")]
    Encode {
        /// Format name.
        format: String,
        /// The encoder's description.
        detail: String,
    },
    /// Writing, syncing or renaming the file failed.
    #[error("could not write file ({detail})")]
    Write {
        /// The operating system's description.
        detail: String,
    },
}

/// Collapses a message onto one line so errors stay one line.
pub(crate) fn one_line(message: impl std::fmt::Display) -> String {
    message.to_string().lines().map(str::trim).filter(|line| !line.is_empty()).collect::<Vec<_>>().join("; ")
}
