//! Downloads over a bad network, against HTTP servers on 127.0.0.1 written here: a connection
//! dropped halfway (resumed with `Range`), a server that ignores `Range` (start over), a wrong
//! hash (refused, nothing left), two downloads of one file at once (one fetch), a lock left
//! behind or held by a stuck process, and a host that cannot be reached.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use stylize::weights::{DownloadOptions, FetchEvent, ManifestEntry, WeightsError, download_with, ensure_weights_with};

/// What the server does with one connection.
enum Reply {
    /// Status line and headers (without the blank line), then the body, then close.
    Full { head: String, body: Vec<u8> },
    /// As `Full`, but closes the connection after `cut` bytes of the body.
    Cut { head: String, body: Vec<u8>, cut: usize },
    /// As `Full`, with a pause after `first` bytes of the body.
    Slow { head: String, body: Vec<u8>, first: usize, pause: Duration },
}

/// Serves `connections` connections, each answered by `reply(index, request)`; every request
/// is sent back on the returned channel. Each accept waits at most 20 s, so a test that makes
/// fewer requests than expected ends instead of hanging; the thread returns how many it served.
fn serve(
    connections: usize,
    reply: impl Fn(usize, &str) -> Reply + Send + 'static,
) -> (String, mpsc::Receiver<String>, thread::JoinHandle<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (sender, requests) = mpsc::channel();
    let handle = thread::spawn(move || {
        for index in 0..connections {
            let Some(mut stream) = accept_within(&listener, Duration::from_secs(20)) else {
                return index;
            };
            let request = read_request(&mut stream);
            let _ = sender.send(request.clone());
            write_reply(&mut stream, reply(index, &request));
        }
        connections
    });
    (base, requests, handle)
}

fn accept_within(listener: &TcpListener, limit: Duration) -> Option<TcpStream> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                return Some(stream);
            }
            Err(_) => thread::sleep(Duration::from_millis(5)),
        }
    }
    None
}

fn read_request(stream: &mut TcpStream) -> String {
    let mut request = Vec::new();
    let mut byte = [0u8; 1];
    while !request.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => request.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&request).into_owned()
}

fn write_reply(stream: &mut TcpStream, reply: Reply) {
    let (head, body, cut, pause) = match reply {
        Reply::Full { head, body } => (head, body, None, None),
        Reply::Cut { head, body, cut } => (head, body, Some(cut), None),
        Reply::Slow { head, body, first, pause } => (head, body, None, Some((first, pause))),
    };
    let _ = stream.write_all(format!("{head}\r\nConnection: close\r\n\r\n").as_bytes());
    match (cut, pause) {
        (Some(cut), _) => {
            let _ = stream.write_all(&body[..cut]);
        }
        (None, Some((first, pause))) => {
            let _ = stream.write_all(&body[..first]);
            let _ = stream.flush();
            thread::sleep(pause);
            let _ = stream.write_all(&body[first..]);
        }
        (None, None) => {
            let _ = stream.write_all(&body);
        }
    }
    let _ = stream.flush();
}

fn ok_head(len: usize) -> String {
    format!("HTTP/1.1 200 OK\r\nContent-Length: {len}")
}

/// The `Range: bytes=N-` start of a request, if any.
fn range_start(request: &str) -> Option<usize> {
    let line = request.lines().find(|l| l.to_ascii_lowercase().starts_with("range:"))?;
    line.split_once("bytes=")?.1.trim().trim_end_matches('-').parse().ok()
}

/// Answers a range request with 206 and the rest of `body`.
fn partial_reply(body: &[u8], from: usize) -> Reply {
    let head = format!(
        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {from}-{}/{}",
        body.len() - from,
        body.len() - 1,
        body.len()
    );
    Reply::Full { head, body: body[from..].to_vec() }
}

fn body_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn folder_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|entries| entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// Short waits so that retries and lock polls cost milliseconds.
fn fast() -> DownloadOptions {
    DownloadOptions {
        attempts: 3,
        first_backoff: Duration::from_millis(10),
        lock_poll: Duration::from_millis(20),
        lock_stall: Duration::from_secs(30),
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(10),
    }
}

#[test]
fn a_connection_dropped_halfway_is_resumed_with_range_and_the_hash_checks() {
    let body = body_bytes(1, 3 << 20);
    let half = body.len() / 2;
    let served = body.clone();
    let (base, requests, server) = serve(2, move |index, request| match (index, range_start(request)) {
        (0, None) => Reply::Cut { head: ok_head(served.len()), body: served.clone(), cut: half },
        (1, Some(from)) => partial_reply(&served, from),
        _ => Reply::Full { head: "HTTP/1.1 400 Bad Request\r\nContent-Length: 0".into(), body: Vec::new() },
    });
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("w.pth");
    let url = format!("{base}/w.pth");
    let mut events = Vec::new();
    let got =
        download_with(&url, &dest, Some(body.len() as u64), Some(&sha256_hex(&body)), &fast(), &mut |e| events.push(e))
            .unwrap();
    assert_eq!(server.join().unwrap(), 2);
    assert_eq!(got, dest);
    assert_eq!(fs::read(&dest).unwrap(), body);
    assert_eq!(folder_entries(dir.path()), vec!["w.pth".to_string()]);
    let requests: Vec<String> = requests.try_iter().collect();
    assert_eq!(range_start(&requests[1]), Some(half), "{}", requests[1]);
    assert!(events.iter().any(|e| matches!(e, FetchEvent::Retrying { attempt: 2, .. })), "{events:?}");
    assert!(events.contains(&FetchEvent::Resumed { from: half as u64, total: Some(body.len() as u64) }), "{events:?}");
    assert_eq!(events.iter().filter(|e| matches!(e, FetchEvent::Started { .. })).count(), 1);
    // Progress counts the whole file, the resumed part on top of the first half.
    let last_progress = events.iter().rev().find_map(|e| match e {
        FetchEvent::Progress { done, total } => Some((*done, *total)),
        _ => None,
    });
    assert_eq!(last_progress, Some((body.len() as u64, Some(body.len() as u64))));
    assert_eq!(events.last(), Some(&FetchEvent::Done { path: dest }));
}

#[test]
fn a_partial_file_from_an_earlier_run_is_continued() {
    let body = body_bytes(2, 200_000);
    let from = 123_457;
    let served = body.clone();
    let (base, requests, server) = serve(1, move |_, request| match range_start(request) {
        Some(from) => partial_reply(&served, from),
        None => Reply::Full { head: ok_head(served.len()), body: served.clone() },
    });
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("w.pth");
    fs::write(dir.path().join("w.pth.part"), &body[..from]).unwrap();
    let entry = ManifestEntry {
        name: "test".into(),
        file_name: "w.pth".into(),
        url: format!("{base}/w.pth"),
        size: Some(body.len() as u64),
        sha256: Some(sha256_hex(&body)),
        format: "pth".into(),
    };
    ensure_weights_with(&entry, &dest, &fast(), &mut |_| {}).unwrap();
    assert_eq!(server.join().unwrap(), 1);
    assert_eq!(range_start(&requests.recv().unwrap()), Some(from));
    assert_eq!(fs::read(&dest).unwrap(), body);
    assert_eq!(folder_entries(dir.path()), vec!["w.pth".to_string()]);
}

#[test]
fn a_server_that_ignores_range_makes_the_download_start_over() {
    let body = body_bytes(3, 1 << 20);
    let cut = 300_001;
    let served = body.clone();
    // Both answers are the whole file from byte 0 (200), whatever the request asks for.
    let (base, requests, server) = serve(2, move |index, _| match index {
        0 => Reply::Cut { head: ok_head(served.len()), body: served.clone(), cut },
        _ => Reply::Full { head: ok_head(served.len()), body: served.clone() },
    });
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("w.pth");
    let mut events = Vec::new();
    download_with(
        &format!("{base}/w.pth"),
        &dest,
        Some(body.len() as u64),
        Some(&sha256_hex(&body)),
        &fast(),
        &mut |e| events.push(e),
    )
    .unwrap();
    assert_eq!(server.join().unwrap(), 2);
    let requests: Vec<String> = requests.try_iter().collect();
    assert_eq!(range_start(&requests[1]), Some(cut));
    assert!(events.iter().any(|e| matches!(e, FetchEvent::Restarted { .. })), "{events:?}");
    assert_eq!(fs::read(&dest).unwrap(), body);
    assert_eq!(folder_entries(dir.path()), vec!["w.pth".to_string()]);
}

#[test]
fn a_wrong_hash_after_a_resume_is_refused_and_leaves_nothing() {
    let body = body_bytes(4, 500_000);
    let mut other = body.clone();
    other[400_000] ^= 1;
    let served = body.clone();
    let (base, _requests, server) = serve(2, move |index, request| match (index, range_start(request)) {
        (0, _) => Reply::Cut { head: ok_head(served.len()), body: served.clone(), cut: 250_000 },
        (_, Some(from)) => partial_reply(&served, from),
        (_, None) => Reply::Full { head: ok_head(served.len()), body: served.clone() },
    });
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("w.pth");
    let url = format!("{base}/w.pth");
    let err = download_with(&url, &dest, Some(body.len() as u64), Some(&sha256_hex(&other)), &fast(), &mut |_| {})
        .unwrap_err();
    assert_eq!(server.join().unwrap(), 2);
    let text = err.to_string();
    assert!(text.starts_with(&format!("download {url}: SHA-256 mismatch")), "{text}");
    assert!(!text.contains('\n'), "{text}");
    assert!(folder_entries(dir.path()).is_empty(), "{:?}", folder_entries(dir.path()));
}

#[test]
fn two_downloads_of_one_file_at_once_fetch_it_once() {
    let body = body_bytes(5, 2 << 20);
    let served = body.clone();
    // One connection only: a second fetch would find the port closed and fail.
    let (base, requests, server) = serve(1, move |_, _| Reply::Slow {
        head: ok_head(served.len()),
        body: served.clone(),
        first: 1 << 20,
        pause: Duration::from_millis(400),
    });
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("cache/w.pth");
    let url = format!("{base}/w.pth");
    let (size, sha) = (body.len() as u64, sha256_hex(&body));
    let first = {
        let (url, dest, sha) = (url.clone(), dest.clone(), sha.clone());
        thread::spawn(move || {
            let mut events = Vec::new();
            let got = download_with(&url, &dest, Some(size), Some(&sha), &fast(), &mut |e| events.push(e));
            (got, events)
        })
    };
    // The second starts once the first is talking to the server, so it finds the lock held.
    requests.recv_timeout(Duration::from_secs(20)).unwrap();
    let mut events = Vec::new();
    let second = download_with(&url, &dest, Some(size), Some(&sha), &fast(), &mut |e| events.push(e));
    let (first_result, first_events) = first.join().unwrap();
    assert_eq!(server.join().unwrap(), 1);
    assert_eq!(first_result.unwrap(), dest);
    assert_eq!(second.unwrap(), dest);
    assert!(first_events.contains(&FetchEvent::Done { path: dest.clone() }));
    let lock = dest.with_file_name("w.pth.lock");
    assert!(
        matches!(events.first(), Some(FetchEvent::Waiting { lock: l, holder: Some(_) }) if *l == lock),
        "{events:?}"
    );
    assert_eq!(events.last(), Some(&FetchEvent::Reused { path: dest.clone() }));
    assert!(!events.iter().any(|e| matches!(e, FetchEvent::Started { .. })), "{events:?}");
    assert_eq!(fs::read(&dest).unwrap(), body);
    assert_eq!(folder_entries(dest.parent().unwrap()), vec!["w.pth".to_string()]);
}

#[test]
fn a_lock_file_left_by_a_dead_process_is_taken_over() {
    let body = body_bytes(6, 10_000);
    let served = body.clone();
    let (base, _requests, server) =
        serve(1, move |_, _| Reply::Full { head: ok_head(served.len()), body: served.clone() });
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("w.pth");
    // What a crash leaves: the file, but no process holding the OS lock on it.
    fs::write(dir.path().join("w.pth.lock"), "999999999\n").unwrap();
    let mut events = Vec::new();
    download_with(&format!("{base}/w.pth"), &dest, None, Some(&sha256_hex(&body)), &fast(), &mut |e| events.push(e))
        .unwrap();
    assert_eq!(server.join().unwrap(), 1);
    assert!(!events.iter().any(|e| matches!(e, FetchEvent::Waiting { .. })), "{events:?}");
    assert_eq!(fs::read(&dest).unwrap(), body);
    assert_eq!(folder_entries(dir.path()), vec!["w.pth".to_string()]);
}

#[test]
fn a_holder_that_makes_no_progress_is_stepped_around() {
    let body = body_bytes(7, 10_000);
    let served = body.clone();
    let (base, _requests, server) =
        serve(1, move |_, _| Reply::Full { head: ok_head(served.len()), body: served.clone() });
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("w.pth");
    // A live but stuck holder: the lock is held, its partial file never grows.
    let lock = fs::File::create(dir.path().join("w.pth.lock")).unwrap();
    lock.lock().unwrap();
    fs::write(dir.path().join("w.pth.part"), b"stuck").unwrap();
    let options = DownloadOptions { lock_stall: Duration::from_millis(300), ..fast() };
    let mut events = Vec::new();
    let started = Instant::now();
    download_with(&format!("{base}/w.pth"), &dest, None, Some(&sha256_hex(&body)), &options, &mut |e| events.push(e))
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(server.join().unwrap(), 1);
    assert!(events.iter().any(|e| matches!(e, FetchEvent::Waiting { .. })), "{events:?}");
    assert!(events.iter().any(|e| matches!(e, FetchEvent::LockStalled { .. })), "{events:?}");
    assert_eq!(fs::read(&dest).unwrap(), body);
    // The holder's own files are left to it.
    assert_eq!(fs::read(dir.path().join("w.pth.part")).unwrap(), b"stuck");
    assert_eq!(folder_entries(dir.path()), vec!["w.pth", "w.pth.lock", "w.pth.part"]);
}

#[test]
fn http_errors_that_may_pass_are_retried_and_others_are_not() {
    let body = body_bytes(8, 5_000);
    let served = body.clone();
    let (base, _requests, server) = serve(2, move |index, _| match index {
        0 => Reply::Full { head: "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0".into(), body: Vec::new() },
        _ => Reply::Full { head: ok_head(served.len()), body: served.clone() },
    });
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("w.pth");
    download_with(&format!("{base}/w.pth"), &dest, None, None, &fast(), &mut |_| {}).unwrap();
    assert_eq!(server.join().unwrap(), 2);
    assert_eq!(fs::read(&dest).unwrap(), body);

    let (base, _requests, server) =
        serve(1, |_, _| Reply::Full { head: "HTTP/1.1 404 Not Found\r\nContent-Length: 0".into(), body: Vec::new() });
    let dest = dir.path().join("gone.pth");
    let err = download_with(&format!("{base}/gone.pth"), &dest, None, None, &fast(), &mut |_| {}).unwrap_err();
    assert_eq!(server.join().unwrap(), 1, "a 404 is not retried");
    assert!(err.to_string().ends_with("HTTP status 404"), "{err}");
    assert_eq!(folder_entries(dir.path()), vec!["w.pth".to_string()]);
}

#[test]
fn an_unresolvable_host_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("w.pth");
    let url = "http://nonexistent.invalid/vgg19.pth";
    let started = Instant::now();
    let err = download_with(url, &dest, None, None, &fast(), &mut |_| {}).unwrap_err();
    assert!(matches!(err, WeightsError::Unreachable { .. }), "{err:?}");
    // No retries: the answer comes as fast as the resolver's.
    assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
    let text = err.to_string();
    assert!(text.starts_with(&format!("cannot download {url} (")), "{text}");
    for needed in [dest.display().to_string(), "--weights PATH".into(), "STYLIZE_WEIGHTS".into()] {
        assert!(text.contains(&needed), "{needed} missing in: {text}");
    }
    assert!(!text.contains('\n'), "{text}");
    assert!(folder_entries(dir.path()).is_empty());
}

/// A manifest entry that knows only its file name's hash (as torchvision's and neural-style's
/// files do) is checked the way torch.hub checks it: the SHA-256 must start with that prefix.
/// A body whose digest does not is refused, naming the prefix, and nothing is left; no size
/// in the manifest means no size check.
#[test]
fn an_entry_with_only_the_file_names_hash_checks_the_digests_prefix() {
    let body = body_bytes(7, 100_000);
    let digest = sha256_hex(&body);
    for (prefix, fits) in [
        (digest[..8].to_string(), true),
        (format!("{:08x}", u32::from_str_radix(&digest[..8], 16).unwrap() ^ 1), false),
    ] {
        let served = body.clone();
        let (base, _requests, server) =
            serve(1, move |_, _| Reply::Full { head: ok_head(served.len()), body: served.clone() });
        let dir = tempfile::tempdir().unwrap();
        let file_name = format!("vgg16-{prefix}.pth");
        let dest = dir.path().join(&file_name);
        let entry = ManifestEntry {
            name: "test".into(),
            file_name: file_name.clone(),
            url: format!("{base}/{file_name}"),
            size: None,
            sha256: None,
            format: "pth".into(),
        };
        assert!(entry.checks_prefix_only());
        let result = ensure_weights_with(&entry, &dest, &fast(), &mut |_| {});
        assert_eq!(server.join().unwrap(), 1);
        if fits {
            result.unwrap();
            assert_eq!(fs::read(&dest).unwrap(), body);
        } else {
            let text = result.unwrap_err().to_string();
            assert!(text.contains(&format!("starting with {prefix}")) && text.contains(&digest), "{text}");
            assert!(!text.contains('\n'), "{text}");
            assert!(
                folder_entries(dir.path()).iter().all(|n| !n.ends_with(".pth")),
                "{:?}",
                folder_entries(dir.path())
            );
        }
    }
}
