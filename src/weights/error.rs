//! The one error type of weight loading and downloading.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Why a weights file could not be read, checked, found or downloaded.
///
/// Its `Display` is one line that names the file (or URL) and the problem.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// A problem with the contents of (or access to) a weights file.
    #[error("weights file {}: {problem}", path.display())]
    File {
        /// The file that was being read.
        path: PathBuf,
        /// What is wrong with it.
        problem: Problem,
    },
    /// A download failed; nothing was left at the destination.
    #[error("download {url}: {detail}")]
    Download {
        /// The URL being fetched.
        url: String,
        /// What went wrong.
        detail: String,
    },
    /// The cache folder for weights could not be worked out or created.
    #[error("weights cache: {detail}")]
    Cache {
        /// What went wrong.
        detail: String,
    },
    /// The download could not start (no network, unknown host, refused connection, proxy
    /// failure); the message says where the file can be put by hand instead.
    #[error(
        "cannot download {url} ({detail}). Without network, fetch that URL elsewhere and put the file at {}, \
         or pass --weights PATH (for vgg19, STYLIZE_WEIGHTS=PATH also works)",
        dest.display()
    )]
    Unreachable {
        /// The URL that could not be fetched.
        url: String,
        /// Where the file is looked for (the cache path, or `$STYLIZE_WEIGHTS` for vgg19).
        dest: PathBuf,
        /// What went wrong.
        detail: String,
    },
}

impl WeightsError {
    /// The problem with a weights file, when the error is about one.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            WeightsError::File { problem, .. } => Some(problem),
            _ => None,
        }
    }
}

/// What is wrong with a weights file (without the file name).
#[derive(Debug)]
pub enum Problem {
    /// The file could not be opened or read.
    Io(io::Error),
    /// The bytes are neither a PyTorch nor a NumPy weights file.
    NotWeights,
    /// The file ends before the data it announces.
    Truncated(String),
    /// The pickle names a global outside the allow-list; nothing was run.
    Forbidden(String),
    /// A requested key is absent.
    MissingKey(String),
    /// A tensor has a shape other than the one required.
    BadShape {
        /// The tensor's key.
        key: String,
        /// The shape found in the file.
        found: Vec<usize>,
        /// The shape that was required, in words.
        expected: String,
    },
    /// A tensor has an element type that cannot be used.
    BadDtype {
        /// The tensor's key.
        key: String,
        /// The element type found, e.g. `int64`.
        dtype: String,
    },
    /// A tensor holds a NaN or an infinity.
    NonFinite {
        /// The tensor's key.
        key: String,
        /// `NaN` or `an infinity`.
        what: &'static str,
    },
    /// The file is of a known kind but its structure is broken.
    Malformed(String),
    /// The file's convolutions are another model's layers (`--model` names the wrong one).
    OtherModel {
        /// The model the file was loaded as.
        model: crate::net::vgg::Model,
        /// The first tensor that does not fit it, in words.
        first_mismatch: String,
        /// The models whose layers it fits.
        fits: Vec<crate::net::vgg::Model>,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Io(e) => write!(f, "cannot read: {e}"),
            Problem::NotWeights => write!(f, "not a PyTorch or NumPy weights file"),
            Problem::Truncated(detail) => write!(f, "truncated ({detail})"),
            Problem::Forbidden(global) => {
                write!(f, "refused to load: the pickle calls {global}, which a state dict never needs")
            }
            Problem::MissingKey(key) => write!(f, "missing key {key}"),
            Problem::BadShape { key, found, expected } => write!(f, "{key} has shape {found:?}, expected {expected}"),
            Problem::BadDtype { key, dtype } => {
                write!(f, "{key} holds {dtype} values, expected float32")
            }
            Problem::NonFinite { key, what } => write!(f, "{key} holds {what}"),
            Problem::Malformed(detail) => write!(f, "malformed: {detail}"),
            Problem::OtherModel { model, first_mismatch, fits } => {
                let flags: Vec<String> = fits.iter().map(|m| format!("--model {m}")).collect();
                write!(
                    f,
                    "does not fit {model} ({first_mismatch}); its convolutions are those of {}: pass {}",
                    fits[0],
                    flags.join(" or ")
                )
            }
        }
    }
}

impl Problem {
    /// Attaches the file name, making the public error.
    pub(crate) fn at(self, path: &Path) -> WeightsError {
        WeightsError::File { path: path.to_path_buf(), problem: self }
    }

    /// Maps a read error: an early end of file becomes `Truncated`.
    pub(crate) fn from_read(err: io::Error, what: &str) -> Problem {
        if err.kind() == io::ErrorKind::UnexpectedEof {
            Problem::Truncated(format!("{what} ends early"))
        } else {
            Problem::Io(err)
        }
    }
}
