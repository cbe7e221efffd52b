//! Weight files: manifest, npz, pth (restricted unpickler), download.
//!
//! [`read_tensors`] reads named tensors from a PyTorch `.pth` (legacy or zip container) or a
//! NumPy `.npz`, chosen by the file's content. [`load_model`] picks and checks a model's
//! convolutions up to `conv5_1` (13 for VGG-19). Nothing in a file is ever executed.

mod error;
pub mod fetch;
mod lock;
pub mod manifest;
mod npz;
mod pickle;
mod pth;
mod tensor;
mod vgg;

use std::collections::HashMap;
use std::fs::File;
use std::io::{Cursor, Read, Seek, SeekFrom};
use std::path::Path;

pub use error::{Problem, WeightsError};
pub use fetch::{
    DownloadOptions, FetchEvent, default_weights_path, download, download_with, ensure_weights, ensure_weights_with,
    is_downloaded, resolve_weights_arg,
};
pub use manifest::{ManifestEntry, default_entry, manifest, model_entry};
pub use vgg::{
    ConvLayerWeights, Model, VGG16_CONV_INDICES, VGG19_CONV_INDICES, VggWeights, load_model, load_vgg19,
    load_vgg19_from_bytes,
};

/// One tensor read from a weights file: shape and row-major f32 data.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// Size of each axis.
    pub shape: Vec<usize>,
    /// Elements in row-major order (float64/float16/bfloat16 files are converted).
    pub data: Vec<f32>,
}

/// Read only the named keys from a `.pth` (any form) or `.npz` file.
///
/// The format is chosen by content: a zip holding `*/data.pkl` is a torch zip container, a
/// zip holding `*.npy` members is an npz, and a file starting with a pickled long is a legacy
/// torch container. Only the data of the named keys is read.
pub fn read_tensors(path: &Path, keys: &[String]) -> Result<HashMap<String, Tensor>, WeightsError> {
    read_tensors_inner(path, keys, Missing::Refuse).map_err(|p| p.at(path))
}

/// What a reader does with a requested key the file does not hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Missing {
    /// `Problem::MissingKey`.
    Refuse,
    /// Leave it out of the result (the caller checks what it needs: a model's loader asks for
    /// every model's keys at once, to say which model a file fits).
    Skip,
}

/// [`read_tensors`] of the keys the file holds, the others left out.
pub(crate) fn read_present_tensors(path: &Path, keys: &[String]) -> Result<HashMap<String, Tensor>, WeightsError> {
    read_tensors_inner(path, keys, Missing::Skip).map_err(|p| p.at(path))
}

fn read_tensors_inner(path: &Path, keys: &[String], missing: Missing) -> Result<HashMap<String, Tensor>, Problem> {
    let file = File::open(path).map_err(Problem::Io)?;
    let meta = file.metadata().map_err(Problem::Io)?;
    if meta.is_dir() {
        return Err(Problem::Io(std::io::Error::other("is a directory")));
    }
    read_tensors_from(file, meta.len(), keys, missing)
}

/// [`read_tensors`] on the bytes of a weights file held in memory (the error names no file).
pub fn read_tensors_from_bytes(bytes: &[u8], keys: &[String]) -> Result<HashMap<String, Tensor>, Problem> {
    read_tensors_from(Cursor::new(bytes), bytes.len() as u64, keys, Missing::Refuse)
}

/// [`read_present_tensors`] on bytes held in memory.
pub(crate) fn read_present_tensors_from_bytes(
    bytes: &[u8],
    keys: &[String],
) -> Result<HashMap<String, Tensor>, Problem> {
    read_tensors_from(Cursor::new(bytes), bytes.len() as u64, keys, Missing::Skip)
}

/// Runs the restricted unpickler alone on one pickle (up to its STOP) and returns how many
/// tensors the state dict it builds holds (0 when it builds something else). For fuzzing.
#[doc(hidden)]
pub fn unpickle_bytes(bytes: &[u8]) -> Result<usize, Problem> {
    let mut input = pickle::PickleInput::new(bytes, bytes.len() as u64);
    let value = pickle::unpickle(&mut input)?;
    Ok(pickle::all_tensors(&value).len())
}

/// Reads `keys` from a reader holding `file_len` bytes, positioned at its start.
fn read_tensors_from<R: Read + Seek>(
    mut file: R,
    file_len: u64,
    keys: &[String],
    missing: Missing,
) -> Result<HashMap<String, Tensor>, Problem> {
    let mut head = [0u8; 4];
    let head_len = read_up_to(&mut file, &mut head)?;
    file.seek(SeekFrom::Start(0)).map_err(Problem::Io)?;
    let head = &head[..head_len];
    if head == b"PK\x03\x04" {
        read_zip_kind(file, file_len, keys, missing)
    } else if pth::looks_legacy(head) {
        pth::read_legacy(file, file_len, keys, missing)
    } else {
        Err(Problem::NotWeights)
    }
}

fn read_up_to(file: &mut impl Read, buf: &mut [u8]) -> Result<usize, Problem> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Problem::Io(e)),
        }
    }
    Ok(filled)
}

fn read_zip_kind<R: Read + Seek>(
    file: R,
    file_len: u64,
    keys: &[String],
    missing: Missing,
) -> Result<HashMap<String, Tensor>, Problem> {
    let reader = std::io::BufReader::new(file);
    let mut zip = zip::ZipArchive::new(reader).map_err(|e| match e {
        zip::result::ZipError::Io(e) => Problem::from_read(e, "zip archive"),
        other => Problem::Malformed(format!("damaged or cut-short zip archive ({other})")),
    })?;
    if let Some(prefix) = pth::torch_zip_prefix(&zip) {
        pth::read_zip(&mut zip, &prefix, file_len, keys, missing)
    } else if npz::looks_npz(&zip) {
        npz::read_npz(&mut zip, file_len, keys, missing)
    } else {
        Err(Problem::NotWeights)
    }
}

/// Most bytes DEFLATE can expand one byte into (258-byte matches coded in about 2 bits).
const MAX_DEFLATE_RATIO: u64 = 1032;

/// The most bytes a zip member can really yield: its declared size, checked against what its
/// stored bytes can hold (the file's length for a stored member; the DEFLATE limit times its
/// compressed size for a deflated one). A member that claims more is refused naming it, before
/// anything is allocated for it.
pub(crate) fn member_capacity(member: &zip::read::ZipFile<'_>, file_len: u64) -> Result<u64, Problem> {
    let (declared, compressed) = (member.size(), member.compressed_size());
    let holds = match member.compression() {
        zip::CompressionMethod::Stored => compressed.min(file_len),
        _ => compressed.min(file_len).saturating_mul(MAX_DEFLATE_RATIO).saturating_add(1 << 10),
    };
    if declared > holds {
        return Err(Problem::Malformed(format!(
            "zip member {} claims {declared} bytes, but its {compressed} stored bytes in a file of {file_len} can hold at most {holds}",
            member.name()
        )));
    }
    Ok(declared)
}
