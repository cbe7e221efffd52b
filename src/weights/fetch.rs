//! Finding and downloading weight files: the cache path, a verified streaming download, and
//! `--weights PATH_OR_URL` resolution. Progress goes through a callback; nothing is printed.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::error::WeightsError;
use super::lock::{self, Acquired};
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
    /// Bytes in the partial file so far (a resumed download starts above 0).
    Progress {
        /// Bytes received, earlier tries and runs included.
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
    /// A try failed; the next one starts after `delay`.
    Retrying {
        /// The number of the next try (2 for the first retry).
        attempt: u32,
        /// Most tries in a row without new bytes.
        attempts: u32,
        /// The wait before it.
        delay: Duration,
        /// What went wrong, in one line.
        reason: String,
    },
    /// The server agreed to send the rest: the download continues at byte `from`.
    Resumed {
        /// Bytes already in the partial file (and hashed again).
        from: u64,
        /// Expected byte count, when known.
        total: Option<u64>,
    },
    /// The partial file was dropped and the download starts again from byte 0.
    Restarted {
        /// Why (e.g. the server ignored the `Range` request).
        reason: String,
    },
    /// Another process is downloading the same file; this one waits for it.
    Waiting {
        /// The lock file.
        lock: PathBuf,
        /// The other process's id, when the lock file names it.
        holder: Option<u32>,
    },
    /// The other process's download has not progressed for a while: this one downloads on
    /// its own (into a private partial file) instead of waiting.
    LockStalled {
        /// The lock file.
        lock: PathBuf,
        /// The other process's id, when the lock file names it.
        holder: Option<u32>,
    },
    /// The file another process downloaded meanwhile is used as it is.
    Reused {
        /// Where it is.
        path: PathBuf,
    },
}

/// How hard a download tries and how it waits for another process's download of the same file.
/// `Default` is what the CLI uses; tests shorten the waits.
#[derive(Clone, Debug)]
pub struct DownloadOptions {
    /// Most tries in a row that bring no new byte (a try that brings bytes starts the count
    /// again), the first one included.
    pub attempts: u32,
    /// Wait before the first retry; doubled before each further one (1, 2, 4, 8 s).
    pub first_backoff: Duration,
    /// How often a process waiting for another's download looks at the lock.
    pub lock_poll: Duration,
    /// How long another process's partial file may stay unchanged before this one stops
    /// waiting and downloads on its own.
    pub lock_stall: Duration,
    /// Longest wait for a TCP connection.
    pub connect_timeout: Duration,
    /// Longest wait for the response's head, and for each read of the body.
    pub read_timeout: Duration,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        Self {
            attempts: 5,
            first_backoff: Duration::from_secs(1),
            lock_poll: Duration::from_millis(500),
            lock_stall: Duration::from_secs(600),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
        }
    }
}

/// Where weights live when no `--weights` is given: for the default model (vgg19)
/// `$STYLIZE_WEIGHTS` if set (a file path, so it names one model's file), else
/// `<cache>/<file_name>` where cache is `$XDG_CACHE_HOME/stylize` or `~/.cache/stylize`.
pub fn default_weights_path(entry: &ManifestEntry) -> Result<PathBuf, WeightsError> {
    if entry.name == super::default_entry().name
        && let Some(path) = non_empty_env("STYLIZE_WEIGHTS")
    {
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

/// [`download_with`] with the default [`DownloadOptions`].
pub fn download(
    url: &str,
    dest: &Path,
    expected_size: Option<u64>,
    expected_sha256: Option<&str>,
    on_event: &mut dyn FnMut(FetchEvent),
) -> Result<PathBuf, WeightsError> {
    download_with(url, dest, expected_size, expected_sha256, &DownloadOptions::default(), on_event)
}

/// Downloads `url` to `dest` (its folder is created if needed).
///
/// - One process at a time: `<dest>.lock` is held with an OS file lock for the whole download.
///   A process that finds it held waits ([`FetchEvent::Waiting`]) and then uses the file the
///   other one put in place ([`FetchEvent::Reused`]), or continues its partial file if that
///   one failed. A lock whose process died is free; a holder whose partial file has not
///   changed for `lock_stall` is stepped around.
/// - The bytes go to `<dest>.part`. A dropped connection, a timeout or an HTTP 5xx/408/429 is
///   retried after 1, 2, 4, 8 s (`options`), asking for the rest with a `Range` request; the
///   bytes already there are hashed again, so the final SHA-256 covers the whole file. A
///   server that answers the range with the whole file (200) starts the file over. A partial
///   file left by an earlier run is continued the same way.
/// - When every byte is in, the size and the SHA-256 (when given) are checked: a mismatch
///   removes the partial file; otherwise it is synced and renamed to `dest`, so `dest` only
///   ever holds a complete, verified file. `expected_sha256` may be a prefix of the digest (a
///   file name's hash, e.g. `dcbb9e9d`, which torch.hub checks the same way).
/// - When the download cannot start at all (no network, unknown host, refused connection,
///   proxy failure), the error ([`WeightsError::Unreachable`]) says where the file can be put
///   by hand instead. A transfer that fails after its retries keeps the partial file for the
///   next run and says so.
pub fn download_with(
    url: &str,
    dest: &Path,
    expected_size: Option<u64>,
    expected_sha256: Option<&str>,
    options: &DownloadOptions,
    on_event: &mut dyn FnMut(FetchEvent),
) -> Result<PathBuf, WeightsError> {
    let fail = |detail: String| WeightsError::Download { url: url.to_string(), detail };
    let folder = parent_folder(dest);
    fs::create_dir_all(&folder).map_err(|e| fail(format!("cannot create folder {}: {e}", folder.display())))?;
    let lock_path = sibling(dest, "lock");
    let shared_part = sibling(dest, "part");
    let wait = lock::Wait { poll: options.lock_poll, stall: options.lock_stall };
    let acquired = lock::acquire(&lock_path, &shared_part, wait, &mut |holder| {
        on_event(FetchEvent::Waiting { lock: lock_path.clone(), holder })
    })
    .map_err(fail)?;
    let (_lock, part_path) = match acquired {
        Acquired::Locked { lock, waited } => {
            if waited && is_finished(dest, expected_size) {
                on_event(FetchEvent::Reused { path: dest.to_path_buf() });
                return Ok(dest.to_path_buf());
            }
            (Some(lock), shared_part)
        }
        Acquired::Unsupported => (None, private_part(dest)),
        Acquired::Stalled { holder } => {
            on_event(FetchEvent::LockStalled { lock: lock_path.clone(), holder });
            (None, private_part(dest))
        }
    };
    let private = part_path != sibling(dest, "part");
    let job = Job { url, dest, part_path: &part_path, expected_size, expected_sha256, options };
    let result = job.run(on_event);
    if result.is_err() && private {
        let _ = fs::remove_file(&part_path);
    }
    result?;
    on_event(FetchEvent::Done { path: dest.to_path_buf() });
    Ok(dest.to_path_buf())
}

/// `<dest>.<suffix>` in `dest`'s folder.
fn sibling(dest: &Path, suffix: &str) -> PathBuf {
    let mut name = dest.file_name().map(|n| n.to_os_string()).unwrap_or_else(|| "weights".into());
    name.push(".");
    name.push(suffix);
    parent_folder(dest).join(name)
}

/// A partial file of this process alone (when the shared one cannot be locked).
fn private_part(dest: &Path) -> PathBuf {
    sibling(dest, &format!("part-{}", std::process::id()))
}

fn is_finished(dest: &Path, expected_size: Option<u64>) -> bool {
    fs::metadata(dest).is_ok_and(|m| m.is_file() && expected_size.is_none_or(|size| m.len() == size))
}

fn parent_folder(dest: &Path) -> PathBuf {
    match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn http_agent(options: &DownloadOptions) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(options.connect_timeout))
        .timeout_recv_response(Some(options.read_timeout))
        .timeout_per_read(Some(options.read_timeout))
        .http_status_as_error(false)
        .build()
        .into()
}

/// One download into a partial file, under the lock.
struct Job<'a> {
    url: &'a str,
    dest: &'a Path,
    part_path: &'a Path,
    expected_size: Option<u64>,
    expected_sha256: Option<&'a str>,
    options: &'a DownloadOptions,
}

/// How one try ended, short of success.
enum TryError {
    /// Worth another try (the partial file is kept).
    Transient(String),
    /// The download cannot start: no connection could be made.
    Unreachable(String),
    /// Retrying cannot help; the partial file is removed.
    Fatal(String),
}

impl Job<'_> {
    fn fail(&self, detail: String) -> WeightsError {
        WeightsError::Download { url: self.url.to_string(), detail }
    }

    fn run(&self, on_event: &mut dyn FnMut(FetchEvent)) -> Result<(), WeightsError> {
        let mut part = Partial::open(self.part_path, self.expected_size).map_err(|e| self.fail(e))?;
        if let Err(e) = self.receive(&mut part, on_event) {
            if part.len == 0 {
                part.remove();
            }
            return Err(e);
        }
        on_event(FetchEvent::Verifying);
        let checked = self.check(&mut part);
        if let Err(detail) = checked {
            part.remove();
            return Err(self.fail(detail));
        }
        part.finish(self.dest).map_err(|e| self.fail(e))
    }

    /// Requests until every byte is in the partial file, retrying transient failures with
    /// backoff. A fatal failure has removed the partial file when this returns.
    fn receive(&self, part: &mut Partial, on_event: &mut dyn FnMut(FetchEvent)) -> Result<(), WeightsError> {
        let agent = http_agent(self.options);
        let mut started = false;
        let mut responded = false;
        let mut failures = 0u32;
        let mut first_reason: Option<String> = None;
        loop {
            if self.expected_size.is_some_and(|size| part.len == size) {
                return Ok(());
            }
            let before = part.len;
            match self.try_once(&agent, part, &mut started, &mut responded, on_event) {
                Ok(()) => return Ok(()),
                Err(TryError::Fatal(detail)) => {
                    part.remove();
                    return Err(self.fail(detail));
                }
                Err(TryError::Unreachable(detail)) if !responded => {
                    return Err(WeightsError::Unreachable {
                        url: self.url.to_string(),
                        dest: self.dest.to_path_buf(),
                        detail: self.kept(part, detail),
                    });
                }
                Err(TryError::Unreachable(reason) | TryError::Transient(reason)) => {
                    failures = if part.len > before { 1 } else { failures + 1 };
                    let first = first_reason.get_or_insert_with(|| reason.clone());
                    self.back_off_or_give_up(part, failures, first, reason, on_event)?;
                }
            }
        }
    }

    /// After `failures` tries in a row without progress: gives up at `DownloadOptions::attempts`
    /// (naming `first`, the first failure's reason, when it differs), otherwise waits the backoff.
    fn back_off_or_give_up(
        &self,
        part: &Partial,
        failures: u32,
        first: &str,
        reason: String,
        on_event: &mut dyn FnMut(FetchEvent),
    ) -> Result<(), WeightsError> {
        if failures >= self.options.attempts {
            let tries = self.options.attempts;
            let first = if first == reason { String::new() } else { format!("; the first failure: {first}") };
            let detail = format!("{reason} ({tries} tries without progress{first})");
            return Err(self.fail(self.kept(part, detail)));
        }
        let delay = self.options.first_backoff.saturating_mul(1 << (failures - 1).min(16));
        on_event(FetchEvent::Retrying { attempt: failures + 1, attempts: self.options.attempts, delay, reason });
        std::thread::sleep(delay);
        Ok(())
    }

    /// The detail of a failure, saying where the bytes received so far wait.
    fn kept(&self, part: &Partial, detail: String) -> String {
        if part.len == 0 {
            detail
        } else {
            format!(
                "{detail}; the {} bytes received are kept in {} and the next run continues from there",
                part.len,
                part.path.display()
            )
        }
    }

    /// One request: asks for the bytes after those in the partial file and appends them.
    fn try_once(
        &self,
        agent: &ureq::Agent,
        part: &mut Partial,
        started: &mut bool,
        responded: &mut bool,
        on_event: &mut dyn FnMut(FetchEvent),
    ) -> Result<(), TryError> {
        let mut request = agent.get(self.url).header("Accept-Encoding", "identity");
        if part.len > 0 {
            request = request.header("Range", format!("bytes={}-", part.len));
        }
        let mut response = request.call().map_err(classify)?;
        *responded = true;
        let total = self.announced_total(&response, part, on_event)?;
        if let (Some(expected), Some(announced)) = (self.expected_size, total)
            && expected != announced
        {
            return Err(TryError::Fatal(format!("server announces {announced} bytes, expected {expected}")));
        }
        let total = self.expected_size.or(total);
        if !*started {
            on_event(FetchEvent::Started { url: self.url.to_string(), total });
            *started = true;
        }
        let mut body = response.body_mut().as_reader();
        part.append_from(&mut body, total, on_event)?;
        match total {
            Some(total) if part.len < total => {
                Err(TryError::Transient(format!("connection closed after {} of {total} bytes", part.len)))
            }
            _ => Ok(()),
        }
    }

    /// The body's total size from a response's status and headers (None: not announced). A
    /// server that ignores or refuses the range, or sends another, restarts the partial file.
    fn announced_total(
        &self,
        response: &ureq::http::Response<ureq::Body>,
        part: &mut Partial,
        on_event: &mut dyn FnMut(FetchEvent),
    ) -> Result<Option<u64>, TryError> {
        let status = response.status().as_u16();
        let content_length = response.body().content_length();
        match status {
            200 => {
                if part.len > 0 {
                    on_event(FetchEvent::Restarted { reason: "the server ignored the Range request".into() });
                    part.restart().map_err(TryError::Fatal)?;
                }
                Ok(content_length)
            }
            206 => {
                let range = response.headers().get("content-range").and_then(|v| v.to_str().ok());
                match range.and_then(parse_content_range) {
                    Some((first, total)) if first == part.len => {
                        on_event(FetchEvent::Resumed { from: part.len, total: self.expected_size.or(total) });
                        Ok(total.or(content_length.map(|n| n + part.len)))
                    }
                    _ => {
                        on_event(FetchEvent::Restarted {
                            reason: format!("the server sent another range ({})", range.unwrap_or("none")),
                        });
                        part.restart().map_err(TryError::Fatal)?;
                        Err(TryError::Transient("unexpected Content-Range".into()))
                    }
                }
            }
            416 => {
                on_event(FetchEvent::Restarted { reason: "the server refused the Range request (HTTP 416)".into() });
                part.restart().map_err(TryError::Fatal)?;
                Err(TryError::Transient("HTTP status 416".into()))
            }
            408 | 429 | 500..=599 => Err(TryError::Transient(format!("HTTP status {status}"))),
            other => Err(TryError::Fatal(format!("HTTP status {other}"))),
        }
    }

    fn check(&self, part: &mut Partial) -> Result<(), String> {
        if let Some(expected) = self.expected_size
            && part.len != expected
        {
            return Err(format!("size mismatch: got {} bytes, expected {expected}", part.len));
        }
        let digest = to_hex(&part.hasher.clone().finalize());
        if let Some(expected) = self.expected_sha256.map(str::trim) {
            let fits =
                !expected.is_empty() && digest.get(..expected.len()).is_some_and(|d| d.eq_ignore_ascii_case(expected));
            if !fits {
                let what = if expected.len() < digest.len() {
                    format!("one starting with {expected} (the file name's hash, checked as torch.hub checks it)")
                } else {
                    expected.to_string()
                };
                return Err(format!("SHA-256 mismatch: got {digest}, expected {what}; the download was removed"));
            }
        }
        Ok(())
    }
}

/// Sorts a failed request: connection-level failures mean the download cannot start.
fn classify(e: ureq::Error) -> TryError {
    use std::io::ErrorKind;
    match &e {
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed | ureq::Error::ConnectProxyFailed(_) => {
            TryError::Unreachable(e.to_string())
        }
        ureq::Error::Timeout(ureq::Timeout::Resolve | ureq::Timeout::Connect) => TryError::Unreachable(e.to_string()),
        ureq::Error::Io(io)
            if matches!(
                io.kind(),
                ErrorKind::ConnectionRefused
                    | ErrorKind::NetworkUnreachable
                    | ErrorKind::HostUnreachable
                    | ErrorKind::AddrNotAvailable
                    | ErrorKind::NetworkDown
            ) || io.to_string().contains("lookup address") =>
        {
            TryError::Unreachable(e.to_string())
        }
        ureq::Error::BadUri(_) | ureq::Error::Http(_) | ureq::Error::InvalidProxyUrl => TryError::Fatal(e.to_string()),
        _ => TryError::Transient(e.to_string()),
    }
}

/// `bytes FIRST-LAST/TOTAL` (TOTAL may be `*`): the first byte and the total.
fn parse_content_range(value: &str) -> Option<(u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (first, _last) = range.split_once('-')?;
    let total = if total.trim() == "*" { None } else { Some(total.trim().parse().ok()?) };
    Some((first.trim().parse().ok()?, total))
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The partial file beside the destination and the running hash of the bytes in it.
struct Partial {
    path: PathBuf,
    file: File,
    len: u64,
    hasher: Sha256,
}

impl Partial {
    /// Opens (or creates) the partial file; bytes already there are hashed so the download
    /// can continue after them. More bytes than expected mean a stale file: it starts over.
    fn open(path: &Path, expected_size: Option<u64>) -> Result<Self, String> {
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        let mut part = Partial { path: path.to_path_buf(), file, len: 0, hasher: Sha256::new() };
        let len = part.file.metadata().map_err(|e| format!("cannot read {}: {e}", path.display()))?.len();
        if expected_size.is_some_and(|size| len > size) {
            part.restart()?;
            return Ok(part);
        }
        let mut reader = std::io::BufReader::with_capacity(1 << 20, &part.file);
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
            };
            part.hasher.update(&buf[..n]);
            part.len += n as u64;
        }
        drop(reader);
        part.file.seek(SeekFrom::End(0)).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Ok(part)
    }

    fn restart(&mut self) -> Result<(), String> {
        self.file.set_len(0).map_err(|e| format!("cannot truncate {}: {e}", self.path.display()))?;
        self.file.seek(SeekFrom::Start(0)).map_err(|e| format!("cannot truncate {}: {e}", self.path.display()))?;
        self.len = 0;
        self.hasher = Sha256::new();
        Ok(())
    }

    /// Appends the body, hashing and reporting progress. A broken connection is transient;
    /// more bytes than `total` are fatal.
    fn append_from(
        &mut self,
        body: &mut dyn Read,
        total: Option<u64>,
        on_event: &mut dyn FnMut(FetchEvent),
    ) -> Result<(), TryError> {
        let mut buf = vec![0u8; CHUNK];
        let mut next_report = self.len;
        let outcome = loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(TryError::Transient(format!("connection broken after {} bytes: {e}", self.len))),
            };
            if total.is_some_and(|t| self.len + n as u64 > t) {
                break Err(TryError::Fatal(format!("server sent more than the expected {} bytes", total.unwrap_or(0))));
            }
            if let Err(e) = self.file.write_all(&buf[..n]) {
                break Err(TryError::Fatal(format!("cannot write {}: {e}", self.path.display())));
            }
            self.hasher.update(&buf[..n]);
            self.len += n as u64;
            if self.len >= next_report {
                on_event(FetchEvent::Progress { done: self.len, total });
                next_report = self.len + PROGRESS_EVERY;
            }
        };
        on_event(FetchEvent::Progress { done: self.len, total });
        outcome
    }

    fn remove(&self) {
        let _ = fs::remove_file(&self.path);
    }

    /// Syncs and renames into place.
    fn finish(self, dest: &Path) -> Result<(), String> {
        self.file.sync_all().map_err(|e| format!("cannot sync {}: {e}", self.path.display()))?;
        drop(self.file);
        fs::rename(&self.path, dest).map_err(|e| format!("cannot move into place at {}: {e}", dest.display()))?;
        if let Ok(dir) = File::open(parent_folder(dest)) {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

/// Whether `dest` holds a finished download of `entry` (a file of the manifest's size, any size
/// where the manifest gives none: downloads only ever rename a verified file into place).
pub fn is_downloaded(entry: &ManifestEntry, dest: &Path) -> bool {
    is_finished(dest, entry.size)
}

/// Returns a path to the weights of `entry` at `dest`: an existing file of the manifest's
/// byte size (any, where the manifest gives none) is used as it is (its SHA-256 was checked when it was downloaded, and downloads
/// only ever rename a verified file into place, so it is not re-hashed at every start);
/// otherwise the file is downloaded and verified (see [`download_with`]).
pub fn ensure_weights(
    entry: &ManifestEntry,
    dest: &Path,
    on_event: &mut dyn FnMut(FetchEvent),
) -> Result<PathBuf, WeightsError> {
    ensure_weights_with(entry, dest, &DownloadOptions::default(), on_event)
}

/// [`ensure_weights`] with chosen [`DownloadOptions`].
pub fn ensure_weights_with(
    entry: &ManifestEntry,
    dest: &Path,
    options: &DownloadOptions,
    on_event: &mut dyn FnMut(FetchEvent),
) -> Result<PathBuf, WeightsError> {
    if is_finished(dest, entry.size) {
        return Ok(dest.to_path_buf());
    }
    download_with(&entry.url, dest, entry.size, entry.expected_sha256().as_deref(), options, on_event)
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
