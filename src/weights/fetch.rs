//! Finding and downloading weight files: the cache path, a verified streaming download, and
//! `--weights PATH_OR_URL` resolution. Progress goes through a callback; nothing is printed.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::error::WeightsError;
use super::manifest::{ManifestEntry, manifest};

/// Bytes read from the network per step.
const CHUNK: usize = 1 << 16;
/// Bytes between two progress reports.
const PROGRESS_EVERY: u64 = 1 << 20;

/// What a download is doing, for a progress display.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchEvent {
    /// The server answered; `total` is the expected size when known.
    Started {
        /// The URL being fetched.
        url: String,
        /// Expected byte count, from the manifest or the `Content-Length`.
        total: Option<u64>,
    },
    /// Bytes received so far.
    Progress {
        /// Bytes received.
        done: u64,
        /// Expected byte count, when known.
        total: Option<u64>,
    },
    /// All bytes are in; size and hash are being checked.
    Verifying,
    /// The verified file is in place.
    Done {
        /// Where it is.
        path: PathBuf,
    },
}

/// Where weights live when no `--weights` is given: `$STYLIZE_WEIGHTS` if set (a file path),
/// else `<cache>/<file_name>` where cache is `$XDG_CACHE_HOME/stylize` or `~/.cache/stylize`.
pub fn default_weights_path(entry: &ManifestEntry) -> Result<PathBuf, WeightsError> {
    if let Some(path) = non_empty_env("STYLIZE_WEIGHTS") {
        return Ok(PathBuf::from(path));
    }
    Ok(cache_dir()?.join(&entry.file_name))
}

/// The cache folder: `$XDG_CACHE_HOME/stylize`, else `$HOME/.cache/stylize`.
fn cache_dir() -> Result<PathBuf, WeightsError> {
    if let Some(xdg) = non_empty_env("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(xdg).join("stylize"));
    }
    match non_empty_env("HOME") {
        Some(home) => Ok(PathBuf::from(home).join(".cache").join("stylize")),
        None => Err(WeightsError::Cache {
            detail: "neither XDG_CACHE_HOME nor HOME is set; pass --weights or set STYLIZE_WEIGHTS".into(),
        }),
    }
}

fn non_empty_env(name: &str) -> Option<std::ffi::OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

/// Downloads `url` to `dest`: streams into a temporary file in `dest`'s folder (created if
/// needed) while hashing, checks the byte count and SHA-256 when given, syncs, then renames
/// into place. On any failure the temporary file is removed and nothing is left at `dest`.
pub fn download(
    url: &str,
    dest: &Path,
    expected_size: Option<u64>,
    expected_sha256: Option<&str>,
    on_event: &mut dyn FnMut(FetchEvent),
) -> Result<PathBuf, WeightsError> {
    let fail = |detail: String| WeightsError::Download { url: url.to_string(), detail };
    let folder = parent_folder(dest);
    fs::create_dir_all(&folder).map_err(|e| fail(format!("cannot create folder {}: {e}", folder.display())))?;
    let mut response = http_agent().get(url).call().map_err(|e| fail(describe_http_error(&e)))?;
    if response.status().as_u16() != 200 {
        return Err(fail(format!("HTTP status {}", response.status().as_u16())));
    }
    let content_length = response.body().content_length();
    let total = expected_size.or(content_length);
    if let (Some(expected), Some(announced)) = (expected_size, content_length)
        && expected != announced
    {
        return Err(fail(format!("server announces {announced} bytes, expected {expected}")));
    }
    on_event(FetchEvent::Started { url: url.to_string(), total });
    let mut part = PartialFile::create(&folder, dest).map_err(fail)?;
    let mut body = response.body_mut().as_reader();
    let (received, digest) = stream_to(&mut body, &mut part, total, on_event).map_err(fail)?;
    on_event(FetchEvent::Verifying);
    check_received(received, content_length, expected_size, &digest, expected_sha256).map_err(fail)?;
    part.finish(dest).map_err(fail)?;
    on_event(FetchEvent::Done { path: dest.to_path_buf() });
    Ok(dest.to_path_buf())
}

fn parent_folder(dest: &Path) -> PathBuf {
    match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn http_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .build()
        .into()
}

fn describe_http_error(e: &ureq::Error) -> String {
    match e {
        ureq::Error::StatusCode(code) => format!("HTTP status {code}"),
        other => other.to_string(),
    }
}

/// Copies the body into the partial file, hashing and reporting progress.
/// Returns the byte count and the lowercase hex SHA-256.
fn stream_to(
    body: &mut dyn Read,
    part: &mut PartialFile,
    total: Option<u64>,
    on_event: &mut dyn FnMut(FetchEvent),
) -> Result<(u64, String), String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut done: u64 = 0;
    let mut next_report = 0;
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("connection broken after {done} bytes: {e}")),
        };
        hasher.update(&buf[..n]);
        part.write(&buf[..n])?;
        done += n as u64;
        if total.is_some_and(|t| done > t) {
            return Err(format!("server sent more than the expected {} bytes", total.unwrap_or(0)));
        }
        if done >= next_report {
            on_event(FetchEvent::Progress { done, total });
            next_report = done + PROGRESS_EVERY;
        }
    }
    on_event(FetchEvent::Progress { done, total });
    Ok((done, to_hex(&hasher.finalize())))
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn check_received(
    received: u64,
    content_length: Option<u64>,
    expected_size: Option<u64>,
    digest: &str,
    expected_sha256: Option<&str>,
) -> Result<(), String> {
    if let Some(announced) = content_length
        && received != announced
    {
        return Err(format!("body truncated: got {received} of {announced} bytes"));
    }
    if let Some(expected) = expected_size
        && received != expected
    {
        return Err(format!("size mismatch: got {received} bytes, expected {expected}"));
    }
    if let Some(expected) = expected_sha256
        && !digest.eq_ignore_ascii_case(expected.trim())
    {
        return Err(format!("SHA-256 mismatch: got {digest}, expected {expected}"));
    }
    Ok(())
}

/// A temporary file beside the destination, removed on drop unless renamed into place.
struct PartialFile {
    path: PathBuf,
    file: Option<File>,
}

impl PartialFile {
    fn create(folder: &Path, dest: &Path) -> Result<Self, String> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "weights".into());
        let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = folder.join(format!(".{name}.part-{}-{unique}", std::process::id()));
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(PartialFile { path, file: Some(file) })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        let file = self.file.as_mut().ok_or("temporary file already closed")?;
        file.write_all(bytes).map_err(|e| format!("cannot write {}: {e}", self.path.display()))
    }

    /// Syncs and renames into place.
    fn finish(mut self, dest: &Path) -> Result<(), String> {
        let file = self.file.take().ok_or("temporary file already closed")?;
        file.sync_all().map_err(|e| format!("cannot sync {}: {e}", self.path.display()))?;
        drop(file);
        fs::rename(&self.path, dest).map_err(|e| format!("cannot move into place at {}: {e}", dest.display()))?;
        if let Ok(dir) = File::open(parent_folder(dest)) {
            let _ = dir.sync_all();
        }
        self.path = PathBuf::new();
        Ok(())
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        self.file.take();
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Returns a path to the weights of `entry` at `dest`: an existing file of the manifest's
/// byte size is used as it is (its SHA-256 was checked when it was downloaded, and downloads
/// never leave partial files, so it is not re-hashed at every start); otherwise the file is
/// downloaded and verified.
pub fn ensure_weights(
    entry: &ManifestEntry,
    dest: &Path,
    on_event: &mut dyn FnMut(FetchEvent),
) -> Result<PathBuf, WeightsError> {
    if let Ok(meta) = fs::metadata(dest)
        && meta.is_file()
        && meta.len() == entry.size
    {
        return Ok(dest.to_path_buf());
    }
    download(&entry.url, dest, Some(entry.size), Some(&entry.sha256), on_event)
}

/// Resolves a `--weights` argument: an `http(s)://` URL is downloaded into the cache folder
/// under the URL's file name (verified when the URL is a manifest entry's, unchecked
/// otherwise; an earlier download there is reused); anything else is a file path.
pub fn resolve_weights_arg(arg: &str, on_event: &mut dyn FnMut(FetchEvent)) -> Result<PathBuf, WeightsError> {
    if !(arg.starts_with("http://") || arg.starts_with("https://")) {
        return Ok(PathBuf::from(arg));
    }
    if let Some(entry) = manifest().into_iter().find(|e| e.url == arg) {
        let dest = cache_dir()?.join(&entry.file_name);
        return ensure_weights(&entry, &dest, on_event);
    }
    let dest = cache_dir()?.join(file_name_of_url(arg));
    if dest.is_file() {
        return Ok(dest);
    }
    download(arg, &dest, None, None, on_event)
}

/// The last path segment of a URL, without query or fragment; `weights.pth` if none.
fn file_name_of_url(url: &str) -> String {
    let without_query = url.split(['?', '#']).next().unwrap_or(url);
    let after_scheme = without_query.split_once("://").map_or(without_query, |(_, r)| r);
    match after_scheme.split_once('/') {
        Some((_, path)) => path
            .rsplit('/')
            .next()
            .filter(|n| !n.is_empty() && *n != "." && *n != "..")
            .unwrap_or("weights.pth")
            .to_string(),
        None => "weights.pth".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_file_names() {
        assert_eq!(file_name_of_url("https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"), "vgg19-dcbb9e9d.pth");
        assert_eq!(file_name_of_url("http://h/x/w.npz?sig=1#f"), "w.npz");
        assert_eq!(file_name_of_url("http://h/"), "weights.pth");
        assert_eq!(file_name_of_url("http://h"), "weights.pth");
        assert_eq!(file_name_of_url("http://h/a/.."), "weights.pth");
    }
}
