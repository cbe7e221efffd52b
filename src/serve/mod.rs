//! `--serve`: a live preview of a run over HTTP. The run hands snapshots (the latest image, the
//! step, the losses read back) to a shared state; a dispatcher thread takes requests from
//! `tiny_http` and hands them to one thread per connection, so nothing of the optimization loop
//! ever waits on the network, and a client that stops reading holds only its own thread.
//!
//! - `/`: one self-contained page (`page.html`) polling `/state.json`;
//! - `/image.png`: the latest image (PNG, encoded on first request, in the request's thread);
//! - `/losses.csv`: the losses read so far, in `--loss-log`'s format;
//! - `/state.json?since=K`: step, totals, rate, ETA, the latest losses and the rows from K on;
//! - `/content.png`, `/style/N.png`: the inputs.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::image_io::{self, Image};
use crate::plot::{LossHistory, LossRow};

/// Where `--serve` listens without an address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8787";

/// How long `finish` waits for a watching page to fetch the final image.
pub const FINAL_GRACE: Duration = Duration::from_secs(3);

/// A page that asked for anything within this long counts as watching at the end.
const WATCHING: Duration = Duration::from_secs(5);

/// Connections answered at once; requests on more are refused with 503 (each holds a thread).
const MAX_ACTIVE: usize = 64;

const PAGE: &str = include_str!("page.html");

mod watch;
pub use watch::Watch;

/// Why the preview server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("--serve {addr}: {problem}")]
    Address { addr: String, problem: String },
    #[error("--serve {addr}: cannot listen on {resolved}: {source}")]
    Bind { addr: String, resolved: SocketAddr, source: std::io::Error },
}

/// `HOST:PORT` (or a bare `PORT`, on 127.0.0.1) as a socket address; refuses addresses other
/// machines could reach (anything not loopback, 0.0.0.0 included) unless `public`.
pub fn resolve(addr: &str, public: bool) -> Result<SocketAddr, ServeError> {
    let bad = |problem: String| ServeError::Address { addr: addr.to_string(), problem };
    let spelled = if addr.parse::<u16>().is_ok() { format!("127.0.0.1:{addr}") } else { addr.to_string() };
    let resolved = spelled
        .to_socket_addrs()
        .map_err(|e| bad(format!("not a HOST:PORT address ({e})")))?
        .next()
        .ok_or_else(|| bad("resolves to no address".to_string()))?;
    if !public && !resolved.ip().is_loopback() {
        return Err(bad(format!(
            "{} is not a loopback address, so other machines could open the page; give --serve-public to allow that",
            resolved.ip()
        )));
    }
    Ok(resolved)
}

/// An image with its PNG encoding, made once on first request.
struct Picture {
    image: Image,
    png: OnceLock<Result<Arc<Vec<u8>>, String>>,
}

impl Picture {
    fn new(image: Image) -> Arc<Self> {
        Arc::new(Self { image, png: OnceLock::new() })
    }

    fn png(&self) -> Result<Arc<Vec<u8>>, String> {
        self.png
            .get_or_init(|| {
                let mut bytes = std::io::Cursor::new(Vec::new());
                image_io::to_rgb8(&self.image)
                    .write_to(&mut bytes, image::ImageFormat::Png)
                    .map(|()| Arc::new(bytes.into_inner()))
                    .map_err(|e| e.to_string())
            })
            .clone()
    }
}

/// What the run told the server so far.
#[derive(Default)]
struct State {
    content: Option<Arc<Picture>>,
    styles: Vec<Arc<Picture>>,
    /// Steps of the whole run, every scale's.
    total_steps: usize,
    scales: usize,
    scale: usize,
    width: u32,
    height: u32,
    /// Steps done over all scales.
    done_steps: usize,
    /// When the first step was reported, and how many were done then (the rate excludes setup).
    first_step: Option<(Instant, usize)>,
    image: Option<Arc<Picture>>,
    image_version: u64,
    history: LossHistory,
    csv: String,
    done: bool,
    final_served: bool,
    last_request: Option<Instant>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    stop: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A request thread that panicked leaves consistent data: keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The running preview server; it stops when `finish`ed or dropped.
pub struct Preview {
    shared: Arc<Shared>,
    addr: SocketAddr,
    dispatcher: Option<JoinHandle<()>>,
}

/// What the page shows besides the iterate: the inputs and the run's size.
pub struct RunInfo {
    pub content: Image,
    pub styles: Vec<Image>,
    /// Steps of the whole run, every scale's.
    pub total_steps: usize,
    pub scales: usize,
    pub history: LossHistory,
}

impl Preview {
    /// Listens on `addr` (see `resolve`) and starts answering at once (a "starting" page until
    /// `set_run`). A port in use is an error here, before any work.
    pub fn bind(addr: &str, public: bool) -> Result<Self, ServeError> {
        let resolved = resolve(addr, public)?;
        let listener = TcpListener::bind(resolved).map_err(|source| ServeError::Bind {
            addr: addr.to_string(),
            resolved,
            source,
        })?;
        let bound = listener.local_addr().unwrap_or(resolved);
        let server = tiny_http::Server::from_listener(listener, None).map_err(|e| ServeError::Bind {
            addr: addr.to_string(),
            resolved,
            source: std::io::Error::other(e.to_string()),
        })?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State { scales: 1, ..State::default() }),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let inner = shared.clone();
        let dispatcher = std::thread::Builder::new()
            .name("stylize-serve".into())
            .spawn(move || dispatch(server, inner))
            .map_err(|source| ServeError::Bind { addr: addr.to_string(), resolved, source })?;
        Ok(Self { shared, addr: bound, dispatcher: Some(dispatcher) })
    }

    /// The address actually bound (port 0 picks a free one).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn set_run(&self, info: RunInfo) {
        let mut s = self.shared.lock();
        s.content = Some(Picture::new(info.content));
        s.styles = info.styles.into_iter().map(Picture::new).collect();
        s.total_steps = info.total_steps;
        s.scales = info.scales.max(1);
        s.csv = info.history.csv_header();
        s.history = info.history;
        // A clip's next frame is a run of its own: its steps and rate start again.
        s.done_steps = 0;
        s.first_step = None;
    }

    pub fn on_scale(&self, index: usize, width: u32, height: u32) {
        let mut s = self.shared.lock();
        s.scale = index;
        (s.width, s.height) = (width, height);
    }

    /// `run_steps` steps are done over all scales.
    pub fn record_step(&self, run_steps: usize) {
        let mut s = self.shared.lock();
        s.done_steps = run_steps;
        if s.first_step.is_none() {
            s.first_step = Some((Instant::now(), run_steps));
        }
    }

    pub fn record_losses(&self, row: LossRow) {
        let mut s = self.shared.lock();
        let line = s.history.csv_row(&row);
        s.csv.push_str(&line);
        s.history.rows.push(row);
    }

    /// The latest image (as it would be saved: colours already finished). Cheap: encoding
    /// happens in the first request's thread.
    pub fn publish_image(&self, image: Image) {
        let mut s = self.shared.lock();
        (s.width, s.height) = (image.width, image.height);
        s.image = Some(Picture::new(image));
        s.image_version += 1;
    }

    /// The run is over: `image` is the final result. If a page has been watching, waits until it
    /// has fetched that image (at most `grace`), then stops the server.
    pub fn finish(mut self, image: Image, grace: Duration) {
        let deadline = Instant::now() + grace;
        {
            let mut s = self.shared.lock();
            (s.width, s.height) = (image.width, image.height);
            s.image = Some(Picture::new(image));
            s.image_version += 1;
            s.done = true;
            let watching = s.last_request.is_some_and(|t| t.elapsed() < WATCHING);
            while watching && !s.final_served {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                s = self.shared.changed.wait_timeout(s, left).unwrap_or_else(|e| e.into_inner()).0;
            }
        }
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(dispatcher) = self.dispatcher.take() {
            let _ = dispatcher.join();
        }
    }
}

impl Drop for Preview {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One connection's worker: answers that connection's requests in order (tiny_http writes the
/// answers of one connection in order anyway), so a client that stops reading blocks only it.
struct Worker {
    requests: mpsc::Sender<tiny_http::Request>,
    alive: Arc<AtomicBool>,
}

/// A worker with no request for this long ends (the connection is likely closed).
const WORKER_IDLE: Duration = Duration::from_secs(10);

/// Takes requests until told to stop and hands each to its connection's worker thread. Past
/// `MAX_ACTIVE` connections with workers, requests go to one overflow thread that refuses them in
/// turn (a refusal waits for earlier answers on its connection, so it must not block this loop).
fn dispatch(server: tiny_http::Server, shared: Arc<Shared>) {
    let (overflow, refused) = mpsc::channel::<tiny_http::Request>();
    let _ = std::thread::Builder::new().name("stylize-serve-overflow".into()).spawn(move || {
        for request in refused {
            let _ = request.respond(tiny_http::Response::empty(503));
        }
    });
    let mut workers: HashMap<Option<SocketAddr>, Worker> = HashMap::new();
    while !shared.stop.load(Ordering::SeqCst) {
        let request = match server.recv_timeout(Duration::from_millis(100)) {
            Ok(Some(request)) => request,
            Ok(None) => continue,
            Err(_) => break,
        };
        shared.lock().last_request = Some(Instant::now());
        let peer = request.remote_addr().copied();
        let request = match workers.get(&peer).filter(|w| w.alive.load(Ordering::SeqCst)) {
            Some(worker) => match worker.requests.send(request) {
                Ok(()) => continue,
                Err(mpsc::SendError(request)) => request,
            },
            None => request,
        };
        workers.retain(|_, w| w.alive.load(Ordering::SeqCst));
        if workers.len() >= MAX_ACTIVE {
            let _ = overflow.send(request);
            continue;
        }
        let (requests, queue) = mpsc::channel();
        let alive = Arc::new(AtomicBool::new(true));
        let (inner, still) = (shared.clone(), alive.clone());
        let spawned = std::thread::Builder::new().name("stylize-serve-connection".into()).spawn(move || {
            while let Ok(request) = queue.recv_timeout(WORKER_IDLE) {
                answer(request, &inner);
            }
            still.store(false, Ordering::SeqCst);
            // One sent between the timeout and the flag is still answered.
            for request in queue.try_iter() {
                answer(request, &inner);
            }
        });
        if spawned.is_ok() && requests.send(request).is_ok() {
            workers.insert(peer, Worker { requests, alive });
        }
    }
}

fn header(name: &str, value: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("valid header")
}

fn respond(request: tiny_http::Request, status: u16, content_type: &str, body: Vec<u8>) {
    let response = tiny_http::Response::from_data(body)
        .with_status_code(status)
        .with_header(header("Content-Type", content_type))
        .with_header(header("Cache-Control", "no-store"));
    // A client gone away is not the run's problem.
    let _ = request.respond(response);
}

fn answer(request: tiny_http::Request, shared: &Shared) {
    if !matches!(request.method(), tiny_http::Method::Get | tiny_http::Method::Head) {
        return respond(request, 405, "text/plain; charset=utf-8", b"only GET\n".to_vec());
    }
    let url = request.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    match path {
        "/" | "/index.html" => respond(request, 200, "text/html; charset=utf-8", PAGE.as_bytes().to_vec()),
        "/state.json" => {
            let since =
                query.split('&').find_map(|kv| kv.strip_prefix("since=")).and_then(|v| v.parse().ok()).unwrap_or(0);
            let body = state_json(&shared.lock(), since);
            respond(request, 200, "application/json", body.into_bytes())
        }
        "/losses.csv" => {
            let csv = shared.lock().csv.clone();
            respond(request, 200, "text/csv; charset=utf-8", csv.into_bytes())
        }
        "/image.png" => {
            let (picture, version, done) = {
                let s = shared.lock();
                (s.image.clone(), s.image_version, s.done)
            };
            let Some(picture) = picture else {
                return respond(request, 503, "text/plain; charset=utf-8", b"no image yet\n".to_vec());
            };
            png_response(request, &picture);
            if done {
                let mut s = shared.lock();
                if s.image_version == version {
                    s.final_served = true;
                    shared.changed.notify_all();
                }
            }
        }
        "/content.png" => match shared.lock().content.clone() {
            Some(picture) => png_response(request, &picture),
            None => respond(request, 404, "text/plain; charset=utf-8", b"no content image yet\n".to_vec()),
        },
        _ => {
            let style = path
                .strip_prefix("/style/")
                .and_then(|p| p.strip_suffix(".png"))
                .and_then(|n| n.parse::<usize>().ok())
                .and_then(|n| shared.lock().styles.get(n).cloned());
            match style {
                Some(picture) => png_response(request, &picture),
                None => respond(request, 404, "text/plain; charset=utf-8", b"not found\n".to_vec()),
            }
        }
    }
}

fn png_response(request: tiny_http::Request, picture: &Picture) {
    match picture.png() {
        Ok(png) => respond(request, 200, "image/png", png.to_vec()),
        Err(e) => respond(request, 500, "text/plain; charset=utf-8", format!("cannot encode PNG: {e}\n").into_bytes()),
    }
}

/// A JSON number, or null for inf and NaN.
fn num(v: f64) -> String {
    if v.is_finite() { format!("{v:e}") } else { "null".to_string() }
}

fn state_json(s: &State, since: usize) -> String {
    let total = s.total_steps;
    let rate = s.first_step.and_then(|(t, first)| {
        let seconds = t.elapsed().as_secs_f64();
        (s.done_steps > first && seconds > 0.0).then(|| (s.done_steps - first) as f64 / seconds)
    });
    let eta = rate.map(|r| total.saturating_sub(s.done_steps) as f64 / r);
    let opt = |v: Option<f64>| v.map_or("null".to_string(), num);
    let h = &s.history;
    let rows: Vec<String> = h
        .rows
        .iter()
        .skip(since)
        .map(|r| {
            let l = &r.losses;
            format!(
                "[{},{},{},{},{}]",
                r.run_step,
                num(h.content_weight * l.content),
                num(h.style_weight * l.style),
                num(l.tv),
                num(l.total)
            )
        })
        .collect();
    let losses = h.rows.last().map_or("null".to_string(), |r| {
        let l = &r.losses;
        format!(
            r#"{{"content":{},"style":{},"tv":{},"total":{}}}"#,
            num(l.content),
            num(l.style),
            num(l.tv),
            num(l.total)
        )
    });
    format!(
        r#"{{"step":{},"total":{total},"scale":{},"scales":{},"width":{},"height":{},"image":{},"rate":{},"eta":{},"done":{},"tv":{},"has_inputs":{},"styles":{},"losses":{losses},"rows":[{}]}}"#,
        s.done_steps,
        s.scale,
        s.scales,
        s.width,
        s.height,
        if s.image.is_some() { s.image_version as i64 } else { -1 },
        opt(rate),
        opt(eta),
        s.done,
        h.tv,
        s.content.is_some(),
        s.styles.len(),
        rows.join(",")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_without_public() {
        assert_eq!(resolve("8787", false).unwrap(), "127.0.0.1:8787".parse().unwrap());
        assert!(resolve("[::1]:80", false).is_ok());
        for addr in ["0.0.0.0:8787", "192.0.2.1:80", "[::]:8787"] {
            let err = resolve(addr, false).unwrap_err().to_string();
            assert!(err.contains("--serve-public"), "{addr}: {err}");
            assert!(resolve(addr, true).is_ok(), "{addr} with --serve-public");
        }
        assert!(resolve("no port", false).unwrap_err().to_string().contains("not a HOST:PORT"));
    }

    #[test]
    fn state_json_is_valid_shape() {
        let s = State { total_steps: 10, scales: 1, done_steps: 3, ..State::default() };
        let json = state_json(&s, 0);
        assert!(json.starts_with(r#"{"step":3,"total":10,"#), "{json}");
        assert!(json.contains(r#""image":-1"#) && json.contains(r#""rows":[]"#), "{json}");
        assert_eq!(num(f64::NAN), "null");
    }
}
