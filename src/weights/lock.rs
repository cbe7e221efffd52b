//! The download lock: `<target>.lock` beside the target, held with an OS file lock (`flock` on
//! Unix, `LockFileEx` on Windows) so that two processes never download the same file at once.
//! A lock whose process died is released by the OS, so a lock file left behind by a crash is
//! simply taken over; a holder that is alive but makes no progress for a bound is stepped
//! around (see [`Acquired::Stalled`]).

use std::fs::{self, File, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// The lock, held until dropped; dropping removes the lock file, then releases the lock.
#[derive(Debug)]
pub(crate) struct DownloadLock {
    path: PathBuf,
    file: Option<File>,
}

impl Drop for DownloadLock {
    fn drop(&mut self) {
        // Removed while still locked: a waiter that then locks the unlinked file sees that the
        // path no longer names it and opens the path again (see `same_file`).
        let _ = fs::remove_file(&self.path);
        self.file.take();
    }
}

/// What waiting for the lock ended in.
#[derive(Debug)]
pub(crate) enum Acquired {
    /// This process holds the lock; `waited` says whether another process held it first.
    Locked { lock: DownloadLock, waited: bool },
    /// The file system cannot lock files; the caller goes on without.
    Unsupported,
    /// Another process (`holder`, the pid written in the lock file when readable) holds the
    /// lock but its partial file has not changed for the stall bound: the caller downloads on
    /// its own into a private partial file instead of waiting for ever.
    Stalled { holder: Option<u32> },
}

/// How long to wait and how often to look.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Wait {
    pub poll: Duration,
    pub stall: Duration,
}

/// Takes the lock at `path`. While another process holds it, `on_wait(holder)` is called once
/// and the holder's partial file `watched` is watched: its growth (size or modification time)
/// counts as progress.
pub(crate) fn acquire(
    path: &Path,
    watched: &Path,
    wait: Wait,
    on_wait: &mut dyn FnMut(Option<u32>),
) -> Result<Acquired, String> {
    let mut waited = false;
    let mut last_seen = watch_state(watched);
    let mut last_change = Instant::now();
    loop {
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| format!("cannot open the lock file {}: {e}", path.display()))?;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(_)) => return Ok(Acquired::Unsupported),
            }
            let holder = read_holder(path);
            if !waited {
                on_wait(holder);
                waited = true;
            }
            std::thread::sleep(wait.poll);
            let seen = watch_state(watched);
            if seen != last_seen {
                last_seen = seen;
                last_change = Instant::now();
            } else if last_change.elapsed() >= wait.stall {
                return Ok(Acquired::Stalled { holder });
            }
        }
        if !same_file(&file, path) {
            // The holder removed the file as it finished; lock the one now at the path.
            continue;
        }
        let mut file = file;
        let _ = file.set_len(0);
        let _ = writeln!(file, "{}", std::process::id());
        return Ok(Acquired::Locked { lock: DownloadLock { path: path.to_path_buf(), file: Some(file) }, waited });
    }
}

/// The pid a holder wrote into the lock file.
fn read_holder(path: &Path) -> Option<u32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Size and modification time of the watched file (`None` while it does not exist).
fn watch_state(path: &Path) -> Option<(u64, Option<SystemTime>)> {
    let meta = fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()))
}

#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_file: &File, path: &Path) -> bool {
    path.exists()
}
