//! Middlebury `.flo` optical-flow files and PGM reliability maps, the files
//! manuelruder/artistic-videos exchanges between its flow step and its stylization step.
//!
//! A `.flo` file is the 4 bytes `PIEH` (the float 202021.25, little-endian), the width and height
//! as little-endian `i32`, then `width * height` interleaved `(u, v)` little-endian `f32` pairs,
//! row-major. In memory a [`Flow`] is planar instead (all `u`, then all `v`), the layout of the GPU
//! kernels. A reliability map is a greyscale PGM whose samples, divided by maxval, weight each
//! pixel of the temporal loss (1 where the flow is trusted, 0 where it is not).

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::image_io::write_atomically;

/// The magic number at the start of a `.flo` file; its little-endian bytes spell `PIEH`.
pub const FLO_MAGIC: f32 = 202021.25;

/// The largest width or height accepted in a `.flo` header. A header is read before anything is
/// allocated, so a corrupt or hostile one cannot make us reserve gigabytes.
pub const MAX_FLOW_SIDE: usize = 1 << 15;

/// Magic, width and height.
const FLO_HEADER_LEN: usize = 12;

/// A dense optical flow between two frames: pixel `(x, y)` maps to `(x + u, y + v)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Flow {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Planar displacements, a `2 x height x width` array: the `height * width` horizontal
    /// displacements `u` (row-major), then the `height * width` vertical ones `v`.
    pub data: Vec<f32>,
}

/// Why a flow, reliability map or clip input could not be read, written or used.
///
/// Its `Display` is one line that names the file and the problem.
#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    /// The operating system refused to open, read or write the file.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The file's contents do not follow its format (bad magic or header, truncated, trailing
    /// bytes, non-finite values), or the data handed to a writer cannot be stored.
    #[error("{}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A flow or reliability map whose size is not the frames' size.
    #[error("{}: a {}x{} {what} for {}x{} frames", path.display(), found.0, found.1, expected.0, expected.1)]
    WrongSize {
        /// The file.
        path: PathBuf,
        /// What the file holds, e.g. `flow` or `reliability map`.
        what: &'static str,
        /// Width and height in the file.
        found: (usize, usize),
        /// Width and height of the frames.
        expected: (usize, usize),
    },
    /// Nothing exists at the path.
    #[error("{}: no such file or folder", path.display())]
    NotFound {
        /// The path.
        path: PathBuf,
    },
    /// The input yields no frames: an empty folder, a pattern that matches nothing, a file that
    /// is not a video.
    #[error("{}: {reason}", path.display())]
    NoFrames {
        /// The input as given.
        path: PathBuf,
        /// Why there are no frames.
        reason: String,
    },
}

impl VideoError {
    /// The file or input the error is about.
    pub fn path(&self) -> &Path {
        match self {
            VideoError::Io { path, .. }
            | VideoError::Invalid { path, .. }
            | VideoError::WrongSize { path, .. }
            | VideoError::NotFound { path }
            | VideoError::NoFrames { path, .. } => path,
        }
    }

    pub(crate) fn io(path: &Path, source: io::Error) -> Self {
        VideoError::Io { path: path.to_path_buf(), source }
    }

    pub(crate) fn invalid(path: &Path, reason: impl Into<String>) -> Self {
        VideoError::Invalid { path: path.to_path_buf(), reason: reason.into() }
    }
}

impl Flow {
    /// Number of pixels, the length of each of the two planes.
    pub fn plane_len(&self) -> usize {
        self.width * self.height
    }

    /// Refuses a flow that was computed for frames of another size (`path` is the file it came from).
    pub fn check_size(&self, path: &Path, width: usize, height: usize) -> Result<(), VideoError> {
        if (self.width, self.height) == (width, height) {
            return Ok(());
        }
        Err(VideoError::WrongSize {
            path: path.to_path_buf(),
            what: "flow",
            found: (self.width, self.height),
            expected: (width, height),
        })
    }

    /// Describes the first NaN or infinite displacement, if any: such a value would poison
    /// every pixel the warp samples it into.
    fn first_non_finite(&self) -> Option<String> {
        let index = self.data.iter().position(|value| !value.is_finite())?;
        let plane_len = self.plane_len().max(1);
        let component = if index < plane_len { "u" } else { "v" };
        let pixel = index % plane_len;
        let (x, y) = (pixel % self.width.max(1), pixel / self.width.max(1));
        Some(format!("non-finite flow ({component} = {}) at pixel ({x}, {y})", self.data[index]))
    }
}

/// Reads a Middlebury `.flo` file into a planar [`Flow`].
///
/// Refuses a bad magic, a side outside `1..=MAX_FLOW_SIDE`, a file longer or shorter than its
/// header says (checked against the file's length before the body is allocated) and NaN or
/// infinite displacements.
pub fn read_flo(path: &Path) -> Result<Flow, VideoError> {
    let (mut file, file_len) = open_regular_file(path)?;
    let mut header = Vec::with_capacity(FLO_HEADER_LEN);
    file.by_ref().take(FLO_HEADER_LEN as u64).read_to_end(&mut header).map_err(|err| VideoError::io(path, err))?;
    let (width, height) = parse_flo_header(path, &header)?;
    let body_len = check_flo_length(path, width, height, file_len)?;
    let mut body = vec![0u8; body_len];
    file.read_exact(&mut body).map_err(|err| VideoError::io(path, err))?;
    let flow = Flow { width, height, data: deinterleave(width * height, &body) };
    match flow.first_non_finite() {
        Some(problem) => Err(VideoError::invalid(path, problem)),
        None => Ok(flow),
    }
}

/// Writes `flow` as a Middlebury `.flo` file, atomically: the bytes go to a temp file beside
/// `path` that is renamed over it, so a failure never leaves a half-written flow behind.
pub fn write_flo(path: &Path, flow: &Flow) -> Result<(), VideoError> {
    check_writable_flow(path, flow)?;
    write_atomically(path, &flo_bytes(flow)).map_err(|err| VideoError::io(path, err))
}

/// Opens `path` and returns it with its length; refuses folders and other non-files.
fn open_regular_file(path: &Path) -> Result<(File, u64), VideoError> {
    let file = File::open(path).map_err(|err| VideoError::io(path, err))?;
    let metadata = file.metadata().map_err(|err| VideoError::io(path, err))?;
    if metadata.is_dir() {
        return Err(VideoError::invalid(path, "is a folder, not a file"));
    }
    if !metadata.is_file() {
        return Err(VideoError::invalid(path, "not a regular file"));
    }
    Ok((file, metadata.len()))
}

/// Checks the magic and returns the width and height of a `.flo` header (`header` holds the
/// file's first bytes, at most 12).
fn parse_flo_header(path: &Path, header: &[u8]) -> Result<(usize, usize), VideoError> {
    let magic = FLO_MAGIC.to_le_bytes();
    let magic_part = &header[..header.len().min(4)];
    if header.is_empty() {
        return Err(VideoError::invalid(path, "empty file (0 bytes)"));
    }
    if magic_part != &magic[..magic_part.len()] {
        let hex: String = magic_part.iter().map(|byte| format!("{byte:02x}")).collect();
        return Err(VideoError::invalid(path, format!("not a .flo file (bad magic 0x{hex}, expected \"PIEH\")")));
    }
    if header.len() < FLO_HEADER_LEN {
        return Err(VideoError::invalid(path, format!("truncated: {} of {FLO_HEADER_LEN} header bytes", header.len())));
    }
    let width = i32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    let height = i32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    let side = |value: i32| usize::try_from(value).ok().filter(|side| (1..=MAX_FLOW_SIDE).contains(side));
    match (side(width), side(height)) {
        (Some(width), Some(height)) => Ok((width, height)),
        _ => Err(VideoError::invalid(
            path,
            format!("bad size {width}x{height} in the header (each side must be 1 to {MAX_FLOW_SIDE})"),
        )),
    }
}

/// Compares the file's length with the one its header implies and returns the body's length.
fn check_flo_length(path: &Path, width: usize, height: usize, file_len: u64) -> Result<usize, VideoError> {
    // At most 2^30 pixels of 8 bytes: no overflow in u64, nor in usize on 64-bit targets.
    let body_len = width as u64 * height as u64 * 8;
    let expected = FLO_HEADER_LEN as u64 + body_len;
    if file_len < expected {
        return Err(VideoError::invalid(
            path,
            format!("truncated: {file_len} of {expected} bytes for a {width}x{height} flow"),
        ));
    }
    if file_len > expected {
        return Err(VideoError::invalid(
            path,
            format!("{} trailing bytes after a {width}x{height} flow ({expected} bytes)", file_len - expected),
        ));
    }
    usize::try_from(body_len).map_err(|_| VideoError::invalid(path, "too large for this machine"))
}

/// Splits interleaved little-endian `(u, v)` pairs into the planar layout.
fn deinterleave(plane_len: usize, body: &[u8]) -> Vec<f32> {
    let mut data = vec![0.0; 2 * plane_len];
    for (index, pair) in body.chunks_exact(8).enumerate() {
        data[index] = f32::from_le_bytes(pair[..4].try_into().expect("4 bytes"));
        data[plane_len + index] = f32::from_le_bytes(pair[4..].try_into().expect("4 bytes"));
    }
    data
}

/// Refuses a flow that could not be read back: a side out of range, a data length that does not
/// match the size, or non-finite values.
fn check_writable_flow(path: &Path, flow: &Flow) -> Result<(), VideoError> {
    let (width, height) = (flow.width, flow.height);
    if !(1..=MAX_FLOW_SIDE).contains(&width) || !(1..=MAX_FLOW_SIDE).contains(&height) {
        return Err(VideoError::invalid(
            path,
            format!("cannot write a {width}x{height} flow (each side must be 1 to {MAX_FLOW_SIDE})"),
        ));
    }
    if flow.data.len() != 2 * flow.plane_len() {
        return Err(VideoError::invalid(
            path,
            format!(
                "cannot write a {width}x{height} flow from {} values (it needs 2 x {width} x {height} = {})",
                flow.data.len(),
                2 * flow.plane_len()
            ),
        ));
    }
    match flow.first_non_finite() {
        Some(problem) => Err(VideoError::invalid(path, format!("cannot write {problem}"))),
        None => Ok(()),
    }
}

/// The `.flo` encoding of a flow already checked by [`check_writable_flow`].
fn flo_bytes(flow: &Flow) -> Vec<u8> {
    let plane_len = flow.plane_len();
    let mut bytes = Vec::with_capacity(FLO_HEADER_LEN + 8 * plane_len);
    bytes.extend_from_slice(&FLO_MAGIC.to_le_bytes());
    bytes.extend_from_slice(&(flow.width as i32).to_le_bytes());
    bytes.extend_from_slice(&(flow.height as i32).to_le_bytes());
    let (u, v) = flow.data.split_at(plane_len);
    for (u, v) in u.iter().zip(v) {
        bytes.extend_from_slice(&u.to_le_bytes());
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    bytes
}

/// The name artistic-videos gives the flow from frame `prev` to frame `next` (1-based numbers).
pub fn forward_name(prev: usize, next: usize) -> String {
    format!("forward_{prev}_{next}.flo")
}

/// The name artistic-videos gives the flow from frame `next` back to frame `prev` (1-based numbers).
pub fn backward_name(next: usize, prev: usize) -> String {
    format!("backward_{next}_{prev}.flo")
}

/// The name artistic-videos gives the reliability map of the backward flow `next` to `prev`.
pub fn reliable_name(next: usize, prev: usize) -> String {
    format!("reliable_{next}_{prev}.pgm")
}

/// The header of a PGM file.
#[derive(Debug, PartialEq)]
struct PgmHeader {
    /// `P2` (ASCII samples) rather than `P5` (binary samples).
    plain: bool,
    width: usize,
    height: usize,
    maxval: u32,
    /// Offset of the first sample byte (or the first byte after maxval for `P2`).
    data_start: usize,
}

/// Reads a reliability map for `width x height` frames from a PGM file: binary `P5` (1-byte
/// samples up to maxval 255, 2-byte big-endian ones up to 65535) or ASCII `P2`, with `#` comments
/// in the header. Returns `sample / maxval` per pixel, row-major, each in `[0, 1]`.
pub fn read_reliability(path: &Path, width: usize, height: usize) -> Result<Vec<f32>, VideoError> {
    let bytes = read_capped(path, pgm_size_limit(width, height))?;
    let header = parse_pgm_header(path, &bytes)?;
    if (header.width, header.height) != (width, height) {
        return Err(VideoError::WrongSize {
            path: path.to_path_buf(),
            what: "reliability map",
            found: (header.width, header.height),
            expected: (width, height),
        });
    }
    let data = &bytes[header.data_start..];
    let samples = if header.plain { plain_samples(path, &header, data)? } else { raw_samples(path, &header, data)? };
    let maxval = header.maxval as f32;
    Ok(samples.into_iter().map(|sample| sample as f32 / maxval).collect())
}

/// Writes a reliability map as an 8-bit binary PGM (`round(value * 255)`, clamped to 0..=255),
/// atomically like [`write_flo`].
pub fn write_reliability(path: &Path, width: usize, height: usize, values: &[f32]) -> Result<(), VideoError> {
    if width == 0 || height == 0 {
        return Err(VideoError::invalid(path, format!("cannot write an empty {width}x{height} reliability map")));
    }
    if values.len() != width * height {
        return Err(VideoError::invalid(
            path,
            format!("cannot write a {width}x{height} reliability map from {} values", values.len()),
        ));
    }
    if let Some(index) = values.iter().position(|value| value.is_nan()) {
        let (x, y) = (index % width, index / width);
        return Err(VideoError::invalid(path, format!("cannot write NaN reliability at pixel ({x}, {y})")));
    }
    let mut bytes = format!("P5\n{width} {height}\n255\n").into_bytes();
    bytes.extend(values.iter().map(|value| (value * 255.0).round().clamp(0.0, 255.0) as u8));
    write_atomically(path, &bytes).map_err(|err| VideoError::io(path, err))
}

/// The largest PGM accepted for `width x height` frames: room for a long commented header and
/// ASCII samples with generous spacing. It keeps a wrong path (say, a video) from being read
/// into memory whole.
fn pgm_size_limit(width: usize, height: usize) -> u64 {
    (1 << 20) + 16 * width as u64 * height as u64
}

/// Reads the whole file unless it is longer than `limit` bytes.
fn read_capped(path: &Path, limit: u64) -> Result<Vec<u8>, VideoError> {
    let (file, file_len) = open_regular_file(path)?;
    if file_len > limit {
        return Err(VideoError::invalid(path, format!("too large for a reliability map ({file_len} bytes)")));
    }
    let mut bytes = Vec::with_capacity(file_len as usize);
    file.take(limit + 1).read_to_end(&mut bytes).map_err(|err| VideoError::io(path, err))?;
    if bytes.len() as u64 > limit {
        return Err(VideoError::invalid(path, "too large for a reliability map (it grew while being read)"));
    }
    Ok(bytes)
}

/// Netpbm's whitespace: space, tab, LF, VT, FF, CR.
fn is_pnm_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Reads the whitespace-separated tokens of a Netpbm file, skipping `#` comments (to the end of
/// the line) between them.
struct Tokens<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Tokens<'a> {
    /// The next token, or `None` at the end of the bytes.
    fn next_token(&mut self) -> Option<&'a [u8]> {
        self.skip_space_and_comments();
        let start = self.pos;
        while self.pos < self.bytes.len() && !is_pnm_space(self.bytes[self.pos]) && self.bytes[self.pos] != b'#' {
            self.pos += 1;
        }
        (self.pos > start).then(|| &self.bytes[start..self.pos])
    }

    fn skip_space_and_comments(&mut self) {
        while let Some(&byte) = self.bytes.get(self.pos) {
            if byte == b'#' {
                while self.bytes.get(self.pos).is_some_and(|&byte| byte != b'\n' && byte != b'\r') {
                    self.pos += 1;
                }
            } else if is_pnm_space(byte) {
                self.pos += 1;
            } else {
                return;
            }
        }
    }
}

/// A decimal number no larger than `max`, or `None`.
fn parse_decimal(token: &[u8], max: u32) -> Option<u32> {
    if token.is_empty() || !token.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(token).ok()?.parse::<u32>().ok().filter(|&value| value <= max)
}

/// Parses the magic, width, height and maxval of a `P5` or `P2` file.
fn parse_pgm_header(path: &Path, bytes: &[u8]) -> Result<PgmHeader, VideoError> {
    let plain = match bytes.get(..2) {
        Some(b"P5") => false,
        Some(b"P2") => true,
        _ => {
            let start = &bytes[..bytes.len().min(2)];
            let reason =
                format!("not a PGM file (starts with \"{}\", expected \"P5\" or \"P2\")", start.escape_ascii());
            return Err(VideoError::invalid(path, reason));
        }
    };
    let mut tokens = Tokens { bytes, pos: 2 };
    if !bytes.get(2).is_some_and(|&byte| is_pnm_space(byte) || byte == b'#') {
        return Err(VideoError::invalid(path, "bad PGM header: no whitespace after the magic"));
    }
    let mut field = |name: &str, min: u32, max: u32| -> Result<u32, VideoError> {
        let token = tokens
            .next_token()
            .ok_or_else(|| VideoError::invalid(path, format!("truncated: the PGM header ends before the {name}")))?;
        parse_decimal(token, u32::MAX).filter(|value| (min..=max).contains(value)).ok_or_else(|| {
            let shown = token.escape_ascii();
            VideoError::invalid(path, format!("bad PGM header: {name} \"{shown}\" (must be {min} to {max})"))
        })
    };
    let width = field("width", 1, u32::MAX)? as usize;
    let height = field("height", 1, u32::MAX)? as usize;
    let maxval = field("maxval", 1, 65535)?;
    let data_start = raster_start(path, plain, &tokens)?;
    Ok(PgmHeader { plain, width, height, maxval, data_start })
}

/// Where the samples start: in `P5` exactly one whitespace byte follows maxval (the samples
/// themselves may be bytes that look like whitespace); in `P2` the sample tokenizer skips spacing.
fn raster_start(path: &Path, plain: bool, tokens: &Tokens) -> Result<usize, VideoError> {
    if plain {
        return Ok(tokens.pos);
    }
    match tokens.bytes.get(tokens.pos) {
        Some(&byte) if is_pnm_space(byte) => Ok(tokens.pos + 1),
        Some(_) => Err(VideoError::invalid(path, "bad PGM header: no whitespace after the maxval")),
        None => Err(VideoError::invalid(path, "truncated: no samples after the PGM header")),
    }
}

/// The samples of a `P5` file: one byte each when maxval < 256, else two bytes big-endian.
fn raw_samples(path: &Path, header: &PgmHeader, data: &[u8]) -> Result<Vec<u32>, VideoError> {
    let (width, height) = (header.width, header.height);
    let sample_len = if header.maxval < 256 { 1 } else { 2 };
    let expected = width * height * sample_len;
    if data.len() < expected {
        let reason = format!("truncated: {} of {expected} sample bytes for a {width}x{height} map", data.len());
        return Err(VideoError::invalid(path, reason));
    }
    if data.len() > expected {
        let reason = format!("{} trailing bytes after the {width}x{height} samples", data.len() - expected);
        return Err(VideoError::invalid(path, reason));
    }
    let samples: Vec<u32> = match sample_len {
        1 => data.iter().map(|&byte| u32::from(byte)).collect(),
        _ => data.chunks_exact(2).map(|pair| u32::from(u16::from_be_bytes([pair[0], pair[1]]))).collect(),
    };
    check_samples_within_maxval(path, header, &samples)?;
    Ok(samples)
}

/// The samples of a `P2` file, decimal numbers separated by whitespace.
fn plain_samples(path: &Path, header: &PgmHeader, data: &[u8]) -> Result<Vec<u32>, VideoError> {
    let (width, height) = (header.width, header.height);
    let expected = width * height;
    let mut tokens = Tokens { bytes: data, pos: 0 };
    let mut samples = Vec::with_capacity(expected);
    while samples.len() < expected {
        let Some(token) = tokens.next_token() else {
            let reason = format!("truncated: {} of {expected} samples for a {width}x{height} map", samples.len());
            return Err(VideoError::invalid(path, reason));
        };
        let sample = parse_decimal(token, u32::MAX).ok_or_else(|| {
            let (x, y) = (samples.len() % width, samples.len() / width);
            VideoError::invalid(path, format!("bad sample \"{}\" at pixel ({x}, {y})", token.escape_ascii()))
        })?;
        samples.push(sample);
    }
    if tokens.next_token().is_some() {
        return Err(VideoError::invalid(path, format!("trailing data after the {width}x{height} samples")));
    }
    check_samples_within_maxval(path, header, &samples)?;
    Ok(samples)
}

/// Refuses a sample above maxval, which would give a reliability above 1.
fn check_samples_within_maxval(path: &Path, header: &PgmHeader, samples: &[u32]) -> Result<(), VideoError> {
    let Some(index) = samples.iter().position(|&sample| sample > header.maxval) else {
        return Ok(());
    };
    let (x, y) = (index % header.width, index / header.width);
    let reason = format!("sample {} at pixel ({x}, {y}) is above the maxval {}", samples[index], header.maxval);
    Err(VideoError::invalid(path, reason))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A flow whose values say where they are: `u = 10 y + x`, `v = -(10 y + x) - 0.5`.
    fn labelled_flow(width: usize, height: usize) -> Flow {
        let u: Vec<f32> = (0..height).flat_map(|y| (0..width).map(move |x| (10 * y + x) as f32)).collect();
        let v: Vec<f32> = u.iter().map(|value| -value - 0.5).collect();
        Flow { width, height, data: [u, v].concat() }
    }

    /// The bytes of a `.flo` file with the given header fields and interleaved `(u, v)` pairs.
    fn flo_file_bytes(width: i32, height: i32, pairs: &[(f32, f32)]) -> Vec<u8> {
        let mut bytes = b"PIEH".to_vec();
        bytes.extend_from_slice(&width.to_le_bytes());
        bytes.extend_from_slice(&height.to_le_bytes());
        for (u, v) in pairs {
            bytes.extend_from_slice(&u.to_le_bytes());
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        bytes
    }

    fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, bytes).unwrap();
        path
    }

    /// The message of the error, checked to be one line that starts with the file's path.
    fn checked_message(err: VideoError, path: &Path) -> String {
        let message = err.to_string();
        assert!(!message.contains('\n'), "not one line: {message}");
        assert!(message.starts_with(&format!("{}: ", path.display())), "does not name {}: {message}", path.display());
        assert_eq!(err.path(), path);
        message
    }

    fn read_flo_error(bytes: &[u8]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = write_file(dir.path(), "forward_1_2.flo", bytes);
        checked_message(read_flo(&path).unwrap_err(), &path)
    }

    fn leftover_files(dir: &Path) -> Vec<String> {
        fs::read_dir(dir).unwrap().map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn magic_float_is_pieh() {
        assert_eq!(&FLO_MAGIC.to_le_bytes(), b"PIEH");
    }

    #[test]
    fn reads_interleaved_pairs_into_planar_layout() {
        // 3x2: pixel (x, y) holds (u, v) = (10y + x, 100 + 10y + x), row-major.
        let pairs: Vec<(f32, f32)> =
            (0..2).flat_map(|y| (0..3).map(move |x| ((10 * y + x) as f32, (100 + 10 * y + x) as f32))).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = write_file(dir.path(), "f.flo", &flo_file_bytes(3, 2, &pairs));
        let flow = read_flo(&path).unwrap();
        assert_eq!((flow.width, flow.height), (3, 2));
        assert_eq!(flow.data, vec![0.0, 1.0, 2.0, 10.0, 11.0, 12.0, 100.0, 101.0, 102.0, 110.0, 111.0, 112.0]);
    }

    #[test]
    fn writes_the_middlebury_byte_layout() {
        let flow = Flow { width: 2, height: 1, data: vec![1.5, -2.0, 0.25, 3.0] };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.flo");
        write_flo(&path, &flow).unwrap();
        assert_eq!(fs::read(&path).unwrap(), flo_file_bytes(2, 1, &[(1.5, 0.25), (-2.0, 3.0)]));
    }

    #[test]
    fn write_then_read_round_trips_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backward_2_1.flo");
        let mut flow = labelled_flow(7, 5);
        flow.data[3] = f32::MIN_POSITIVE;
        flow.data[40] = -1e9; // Middlebury's "unknown flow" values are large but finite: kept.
        write_flo(&path, &flow).unwrap();
        assert_eq!(read_flo(&path).unwrap(), flow);
        assert_eq!(fs::metadata(&path).unwrap().len(), 12 + 7 * 5 * 8);
    }

    #[test]
    fn refuses_a_bad_magic() {
        let png_start = [0x89, b'P', b'N', b'G', 13, 10, 26, 10, 0, 0, 0, 13];
        let message = read_flo_error(&png_start);
        assert!(
            message.ends_with("forward_1_2.flo: not a .flo file (bad magic 0x89504e47, expected \"PIEH\")"),
            "{message}"
        );
        // Big-endian magic (the bytes reversed) is refused too.
        let message = read_flo_error(&[b'H', b'E', b'I', b'P', 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(message.contains("bad magic 0x48454950"), "{message}");
    }

    #[test]
    fn refuses_empty_and_short_headers() {
        assert!(read_flo_error(b"").ends_with(": empty file (0 bytes)"));
        assert!(read_flo_error(b"PIE").ends_with(": truncated: 3 of 12 header bytes"));
        assert!(read_flo_error(b"PIEH\x01\x00\x00\x00\x01").ends_with(": truncated: 9 of 12 header bytes"));
        // A short file whose first bytes are not the magic is "not a .flo file", not "truncated".
        assert!(read_flo_error(b"ab").contains("bad magic 0x6162"));
    }

    #[test]
    fn refuses_sides_out_of_range() {
        for (width, height) in [(0, 1), (1, 0), (-1, 4), (4, -3), (32769, 1), (1, 32769), (i32::MIN, i32::MAX)] {
            let message = read_flo_error(&flo_file_bytes(width, height, &[(0.0, 0.0)]));
            let expected = format!(": bad size {width}x{height} in the header (each side must be 1 to 32768)");
            assert!(message.ends_with(&expected), "{message}");
        }
    }

    #[test]
    fn a_huge_header_on_a_small_file_is_refused_before_allocating() {
        // 32768 x 32768 would need an 8 GiB body; the length check must come first.
        let message = read_flo_error(&flo_file_bytes(32768, 32768, &[(1.0, 2.0)]));
        assert!(message.ends_with(": truncated: 20 of 8589934604 bytes for a 32768x32768 flow"), "{message}");
    }

    #[test]
    fn refuses_a_truncated_body_and_trailing_bytes() {
        let mut bytes = flo_file_bytes(2, 2, &[(0.0, 0.0); 4]);
        let message = read_flo_error(&bytes[..bytes.len() - 1]);
        assert!(message.ends_with(": truncated: 43 of 44 bytes for a 2x2 flow"), "{message}");
        let message = read_flo_error(&bytes[..12]);
        assert!(message.ends_with(": truncated: 12 of 44 bytes for a 2x2 flow"), "{message}");
        bytes.extend_from_slice(b"xyz");
        let message = read_flo_error(&bytes);
        assert!(message.ends_with(": 3 trailing bytes after a 2x2 flow (44 bytes)"), "{message}");
    }

    #[test]
    fn refuses_non_finite_values_and_says_where() {
        let mut pairs = vec![(0.0, 0.0); 6];
        pairs[4] = (f32::NAN, 0.0); // pixel (1, 1) of a 3x2 flow
        let message = read_flo_error(&flo_file_bytes(3, 2, &pairs));
        assert!(message.ends_with(": non-finite flow (u = NaN) at pixel (1, 1)"), "{message}");
        pairs[4] = (0.0, 0.0);
        pairs[2] = (0.0, f32::NEG_INFINITY);
        let message = read_flo_error(&flo_file_bytes(3, 2, &pairs));
        assert!(message.ends_with(": non-finite flow (v = -inf) at pixel (2, 0)"), "{message}");
    }

    #[test]
    fn missing_files_and_folders_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("clip").join("forward_1_2.flo");
        let err = read_flo(&missing).unwrap_err();
        assert!(matches!(err, VideoError::Io { ref source, .. } if source.kind() == io::ErrorKind::NotFound));
        checked_message(err, &missing);
        let message = checked_message(read_flo(dir.path()).unwrap_err(), dir.path());
        assert!(message.ends_with(": is a folder, not a file"), "{message}");
    }

    #[test]
    fn refuses_to_write_inconsistent_or_non_finite_flows_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.flo");
        let short = Flow { width: 3, height: 2, data: vec![0.0; 11] };
        let message = checked_message(write_flo(&path, &short).unwrap_err(), &path);
        assert!(message.ends_with(": cannot write a 3x2 flow from 11 values (it needs 2 x 3 x 2 = 12)"), "{message}");
        let mut nan = labelled_flow(3, 2);
        nan.data[8] = f32::NAN;
        let message = checked_message(write_flo(&path, &nan).unwrap_err(), &path);
        assert!(message.ends_with(": cannot write non-finite flow (v = NaN) at pixel (2, 0)"), "{message}");
        let empty = Flow { width: 0, height: 2, data: vec![] };
        assert!(write_flo(&path, &empty).unwrap_err().to_string().contains("cannot write a 0x2 flow"));
        let wide = Flow { width: MAX_FLOW_SIDE + 1, height: 1, data: vec![0.0; 2 * (MAX_FLOW_SIDE + 1)] };
        assert!(write_flo(&path, &wide).is_err());
        assert!(leftover_files(dir.path()).is_empty(), "{:?}", leftover_files(dir.path()));
    }

    #[test]
    fn write_replaces_atomically_and_a_failed_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.flo");
        fs::write(&path, b"old contents").unwrap();
        write_flo(&path, &labelled_flow(2, 2)).unwrap();
        assert_eq!(read_flo(&path).unwrap(), labelled_flow(2, 2));
        assert_eq!(leftover_files(dir.path()), vec!["f.flo".to_string()]);

        let missing_folder = dir.path().join("no-such-folder").join("f.flo");
        let err = write_flo(&missing_folder, &labelled_flow(2, 2)).unwrap_err();
        assert!(matches!(err, VideoError::Io { .. }));
        checked_message(err, &missing_folder);
        // A folder in the way: the rename fails and the temp file is removed.
        let blocked = dir.path().join("blocked.flo");
        fs::create_dir(&blocked).unwrap();
        assert!(write_flo(&blocked, &labelled_flow(2, 2)).is_err());
        let mut left = leftover_files(dir.path());
        left.sort();
        assert_eq!(left, vec!["blocked.flo".to_string(), "f.flo".to_string()]);
    }

    #[test]
    fn check_size_names_the_file_and_both_sizes() {
        let flow = Flow { width: 40, height: 30, data: vec![0.0; 2 * 40 * 30] };
        assert!(flow.check_size(Path::new("f.flo"), 40, 30).is_ok());
        let err = flow.check_size(Path::new("f.flo"), 64, 48).unwrap_err();
        assert_eq!(err.to_string(), "f.flo: a 40x30 flow for 64x48 frames");
        assert!(flow.check_size(Path::new("f.flo"), 30, 40).is_err());
    }

    #[test]
    fn names_follow_artistic_videos() {
        assert_eq!(forward_name(1, 2), "forward_1_2.flo");
        assert_eq!(backward_name(2, 1), "backward_2_1.flo");
        assert_eq!(reliable_name(2, 1), "reliable_2_1.pgm");
        assert_eq!(forward_name(99, 100), "forward_99_100.flo");
        assert_eq!(backward_name(12, 11), "backward_12_11.flo");
        assert_eq!(reliable_name(100, 99), "reliable_100_99.pgm");
    }

    fn read_reliability_error(bytes: &[u8], width: usize, height: usize) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = write_file(dir.path(), "reliable_2_1.pgm", bytes);
        checked_message(read_reliability(&path, width, height).unwrap_err(), &path)
    }

    fn read_reliability_bytes(bytes: &[u8], width: usize, height: usize) -> Vec<f32> {
        let dir = tempfile::tempdir().unwrap();
        let path = write_file(dir.path(), "reliable_2_1.pgm", bytes);
        read_reliability(&path, width, height).unwrap()
    }

    #[test]
    fn reads_8_bit_binary_pgm_row_major() {
        let mut bytes = b"P5\n3 2\n255\n".to_vec();
        bytes.extend_from_slice(&[0, 51, 255, 102, 204, 153]);
        assert_eq!(read_reliability_bytes(&bytes, 3, 2), vec![0.0, 0.2, 1.0, 0.4, 0.8, 0.6]);
    }

    #[test]
    fn raster_bytes_that_look_like_whitespace_are_samples() {
        // Only one whitespace byte separates maxval from the samples; 10 and 32 are samples here.
        let mut bytes = b"P5 2 1 255\n".to_vec();
        bytes.extend_from_slice(&[10, 32]);
        assert_eq!(read_reliability_bytes(&bytes, 2, 1), vec![10.0 / 255.0, 32.0 / 255.0]);
    }

    #[test]
    fn reads_small_maxval_and_16_bit_big_endian_samples() {
        let mut bytes = b"P5\n2 1\n1\n".to_vec();
        bytes.extend_from_slice(&[1, 0]);
        assert_eq!(read_reliability_bytes(&bytes, 2, 1), vec![1.0, 0.0]);
        let mut bytes = b"P5\n3 1\n65535\n".to_vec();
        bytes.extend_from_slice(&[0xff, 0xff, 0x00, 0x00, 0x80, 0x00]);
        assert_eq!(read_reliability_bytes(&bytes, 3, 1), vec![1.0, 0.0, 32768.0 / 65535.0]);
        let mut bytes = b"P5\n1 1\n256\n".to_vec();
        bytes.extend_from_slice(&[0x01, 0x00]); // 256 in two bytes, because maxval >= 256
        assert_eq!(read_reliability_bytes(&bytes, 1, 1), vec![1.0]);
    }

    #[test]
    fn reads_ascii_pgm_and_header_comments() {
        let bytes = b"P2\n# made by consistencyChecker\n3 2 # width height\n# maxval next\n10\n0 5 10\n 2\n\t4  6\n";
        assert_eq!(read_reliability_bytes(bytes, 3, 2), vec![0.0, 0.5, 1.0, 0.2, 0.4, 0.6]);
        let mut bytes = b"P5# comment right after the magic\n2# w\n1\n#c\n255\n".to_vec();
        bytes.extend_from_slice(&[255, 0]);
        assert_eq!(read_reliability_bytes(&bytes, 2, 1), vec![1.0, 0.0]);
    }

    #[test]
    fn refuses_a_map_of_another_size() {
        let mut bytes = b"P5\n40 30\n255\n".to_vec();
        bytes.resize(bytes.len() + 40 * 30, 255);
        let message = read_reliability_error(&bytes, 64, 48);
        assert!(message.ends_with("reliable_2_1.pgm: a 40x30 reliability map for 64x48 frames"), "{message}");
    }

    #[test]
    fn refuses_bad_headers() {
        let cases: [(&[u8], &str); 9] = [
            (b"P6\n1 1\n255\n\0\0\0", ": not a PGM file (starts with \"P6\", expected \"P5\" or \"P2\")"),
            (b"\x89PNG", ": not a PGM file (starts with \"\\x89P\", expected \"P5\" or \"P2\")"),
            (b"", ": not a PGM file (starts with \"\", expected \"P5\" or \"P2\")"),
            (b"P55 1 1 255\n\0", ": bad PGM header: no whitespace after the magic"),
            (b"P5\n1 x 255\n\0", ": bad PGM header: height \"x\" (must be 1 to 4294967295)"),
            (b"P5\n0 1 255\n\0", ": bad PGM header: width \"0\" (must be 1 to 4294967295)"),
            (b"P5\n1 1 0\n\0", ": bad PGM header: maxval \"0\" (must be 1 to 65535)"),
            (b"P5\n1 1 65536\n\0\0", ": bad PGM header: maxval \"65536\" (must be 1 to 65535)"),
            (b"P5\n1 1 255#c\n\0", ": bad PGM header: no whitespace after the maxval"),
        ];
        for (bytes, expected) in cases {
            let message = read_reliability_error(bytes, 1, 1);
            assert!(message.ends_with(expected), "{message} (expected ...{expected})");
        }
        let message = read_reliability_error(b"P5\n1 1", 1, 1);
        assert!(message.ends_with(": truncated: the PGM header ends before the maxval"), "{message}");
        let message = read_reliability_error(b"P5\n1 1 255", 1, 1);
        assert!(message.ends_with(": truncated: no samples after the PGM header"), "{message}");
        let message = read_reliability_error(b"P5\n99999999999 1 255\n", 1, 1);
        assert!(message.contains("bad PGM header: width \"99999999999\""), "{message}");
    }

    #[test]
    fn refuses_truncated_and_trailing_samples() {
        let message = read_reliability_error(b"P5\n2 2\n255\n\x01\x02\x03", 2, 2);
        assert!(message.ends_with(": truncated: 3 of 4 sample bytes for a 2x2 map"), "{message}");
        let message = read_reliability_error(b"P5\n2 1\n1000\n\x00\x01\x00", 2, 1);
        assert!(message.ends_with(": truncated: 3 of 4 sample bytes for a 2x1 map"), "{message}");
        let message = read_reliability_error(b"P5\n2 1\n255\n\x01\x02\n", 2, 1);
        assert!(message.ends_with(": 1 trailing bytes after the 2x1 samples"), "{message}");
        let message = read_reliability_error(b"P2\n2 2\n255\n1 2 3\n", 2, 2);
        assert!(message.ends_with(": truncated: 3 of 4 samples for a 2x2 map"), "{message}");
        let message = read_reliability_error(b"P2\n2 1\n255\n1 2 3\n", 2, 1);
        assert!(message.ends_with(": trailing data after the 2x1 samples"), "{message}");
        let message = read_reliability_error(b"P2\n2 1\n255\n1 -2\n", 2, 1);
        assert!(message.ends_with(": bad sample \"-2\" at pixel (1, 0)"), "{message}");
    }

    #[test]
    fn refuses_samples_above_maxval() {
        let message = read_reliability_error(b"P5\n2 1\n100\n\x64\x65", 2, 1);
        assert!(message.ends_with(": sample 101 at pixel (1, 0) is above the maxval 100"), "{message}");
        let message = read_reliability_error(b"P5\n1 1\n1000\n\x03\xe9", 1, 1);
        assert!(message.ends_with(": sample 1001 at pixel (0, 0) is above the maxval 1000"), "{message}");
        let message = read_reliability_error(b"P2\n1 2\n9\n9 10", 1, 2);
        assert!(message.ends_with(": sample 10 at pixel (0, 1) is above the maxval 9"), "{message}");
    }

    #[test]
    fn refuses_files_far_too_large_for_the_frames() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge.pgm");
        let file = File::create(&path).unwrap();
        file.set_len(pgm_size_limit(4, 4) + 1).unwrap();
        let message = checked_message(read_reliability(&path, 4, 4).unwrap_err(), &path);
        assert!(message.contains("too large for a reliability map"), "{message}");
        let message = checked_message(read_reliability(dir.path(), 4, 4).unwrap_err(), dir.path());
        assert!(message.ends_with(": is a folder, not a file"), "{message}");
    }

    #[test]
    fn writes_8_bit_pgm_rounded_and_clamped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reliable_2_1.pgm");
        let values = [0.0, 1.0, 0.5, 0.2, -0.5, 1.5, f32::INFINITY, 0.001];
        write_reliability(&path, 4, 2, &values).unwrap();
        let mut expected = b"P5\n4 2\n255\n".to_vec();
        expected.extend_from_slice(&[0, 255, 128, 51, 0, 255, 255, 0]);
        assert_eq!(fs::read(&path).unwrap(), expected);
        assert_eq!(leftover_files(dir.path()), vec!["reliable_2_1.pgm".to_string()]);
    }

    #[test]
    fn reliability_round_trips_within_half_a_step() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.pgm");
        let values: Vec<f32> = (0..35).map(|index| index as f32 / 34.0).collect();
        write_reliability(&path, 7, 5, &values).unwrap();
        let read = read_reliability(&path, 7, 5).unwrap();
        assert_eq!(read.len(), values.len());
        for (read, written) in read.iter().zip(&values) {
            assert!((read - written).abs() <= 0.5 / 255.0 + 1e-6, "{read} vs {written}");
            assert!((0.0..=1.0).contains(read));
        }
    }

    #[test]
    fn refuses_to_write_bad_reliability_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.pgm");
        let message = checked_message(write_reliability(&path, 3, 2, &[0.0; 5]).unwrap_err(), &path);
        assert!(message.ends_with(": cannot write a 3x2 reliability map from 5 values"), "{message}");
        let message = checked_message(write_reliability(&path, 0, 2, &[]).unwrap_err(), &path);
        assert!(message.ends_with(": cannot write an empty 0x2 reliability map"), "{message}");
        let mut values = [0.5; 6];
        values[4] = f32::NAN;
        let message = checked_message(write_reliability(&path, 3, 2, &values).unwrap_err(), &path);
        assert!(message.ends_with(": cannot write NaN reliability at pixel (1, 1)"), "{message}");
        assert!(leftover_files(dir.path()).is_empty());
    }
}
