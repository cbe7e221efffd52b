//! `--serve` and `--loss-plot` through the CLI: the live page, image and CSV answer during a run,
//! a client that never reads does not stall it, a port in use fails before any work, and (when
//! Chromium is installed; required with STYLIZE_REQUIRE_BROWSER=1) a headless browser sees the
//! page update and its image load.

mod common;
use common::{http_get, random_png, tiny_weights};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use stylize::test_support::gpu_or_skip;

const BIN: &str = env!("CARGO_BIN_EXE_stylize");

struct Inputs {
    dir: tempfile::TempDir,
    content: PathBuf,
    style: PathBuf,
}

impl Inputs {
    /// Random images: noise compresses badly, so the PNGs are large enough to fill socket buffers.
    fn random(width: u32, height: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let content = dir.path().join("content.png");
        let style = dir.path().join("style.png");
        random_png(&content, width, height, 1);
        random_png(&style, 21, 17, 2);
        Self { dir, content, style }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn command(&self, extra: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env("XDG_RUNTIME_DIR", std::env::temp_dir())
            .env_remove("STYLIZE_WEIGHTS")
            .arg("--content")
            .arg(&self.content)
            .arg("--style")
            .arg(&self.style)
            .arg("--weights")
            .arg(tiny_weights())
            .arg("--output")
            .arg(self.path("out.png"))
            .args(extra);
        cmd
    }
}

/// A run in the background with its stderr lines collected; killed if the test fails.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn start(mut cmd: Command) -> Self {
        let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Self { child, lines, seen: Vec::new() }
    }

    /// The address from the "live preview at http://ADDR/" line.
    fn preview_addr(&mut self) -> SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if let Some(rest) = line.split("live preview at http://").nth(1) {
                        return rest.trim_end_matches('/').parse().unwrap();
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        panic!("no preview URL; stderr so far:\n{}", self.seen.join("\n"));
    }

    /// SIGINT (the run saves and exits 130), then waits at most `limit`; returns the exit code and stderr.
    fn interrupt(mut self, limit: Duration) -> (Option<i32>, String) {
        let status = Command::new("kill").arg("-INT").arg(self.child.id().to_string()).status().unwrap();
        assert!(status.success());
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.seen.extend(self.lines.try_iter());
                return (status.code(), self.seen.join("\n"));
            }
            assert!(Instant::now() < deadline, "the run did not end within {limit:?} of SIGINT");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn get(addr: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    http_get(addr, path)
}

fn get_text(addr: SocketAddr, path: &str) -> String {
    let (status, body) = get(addr, path);
    assert_eq!(status, 200, "GET {path}");
    String::from_utf8(body).unwrap()
}

/// The `"step":N` of /state.json.
fn step_of(addr: SocketAddr) -> usize {
    let json = get_text(addr, "/state.json");
    let rest = json.split(r#""step":"#).nth(1).expect("step field");
    rest.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
}

/// Polls `f` every 100 ms until it is true, at most `limit`.
fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn serve_answers_during_the_run_and_a_stalled_client_does_not_block_it() {
    if gpu_or_skip("serve_answers_during_the_run").is_none() {
        return;
    }
    let inputs = Inputs::random(64, 48);
    let mut run = Running::start(inputs.command(&["--iterations", "100000", "--serve", "127.0.0.1:0"]));
    let addr = run.preview_addr();

    // Two clients that never read: one sends nothing, one pipelines many requests for the image
    // (megabytes of answers it never takes off the socket).
    let _silent = TcpStream::connect(addr).unwrap();
    let mut stalled = TcpStream::connect(addr).unwrap();
    stalled.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    wait_for("a first image", Duration::from_secs(60), || get(addr, "/image.png").0 == 200);
    for _ in 0..2000 {
        if stalled.write_all(b"GET /image.png HTTP/1.1\r\nHost: localhost\r\n\r\n").is_err() {
            break; // its send buffer is full too: the server has stopped reading from it
        }
    }

    let page = get_text(addr, "/");
    assert!(page.contains("stylize: live preview") && page.contains("/state.json"), "page:\n{page}");

    let (status, png) = get(addr, "/image.png");
    assert_eq!(status, 200);
    let image = image::load_from_memory_with_format(&png, image::ImageFormat::Png).expect("a valid PNG");
    assert_eq!((image.width(), image.height()), (64, 48));

    let first = get_text(addr, "/losses.csv");
    assert_eq!(first.lines().next(), Some("step,content,style,total"), "csv:\n{first}");
    let step_before = step_of(addr);
    std::thread::sleep(Duration::from_millis(1500));
    let second = get_text(addr, "/losses.csv");
    assert!(second.starts_with(&first), "the CSV only grows");
    assert!(second.lines().count() > first.lines().count(), "no new loss rows in 1.5 s");
    for line in second.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields.len(), 4, "row {line:?}");
        assert!(fields[1..].iter().all(|v| v.parse::<f64>().is_ok_and(f64::is_finite)), "row {line:?}");
    }
    // The run went on while the stalled clients held their connections.
    let step_after = step_of(addr);
    assert!(step_after > step_before, "steps {step_before} -> {step_after}: the run stalled");
    let (_, newer) = get(addr, "/image.png");
    assert!(image::load_from_memory(&newer).is_ok());
    assert_eq!(get(addr, "/nothing-here").0, 404);

    // It ends promptly (after the grace period for watchers) and saves as on any Ctrl-C.
    let (code, stderr) = run.interrupt(Duration::from_secs(30));
    assert_eq!(code, Some(130), "stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "stderr:\n{stderr}");
    assert!(inputs.path("out.png").exists());
    drop(stalled);
}

#[test]
fn serve_ends_with_a_short_run() {
    if gpu_or_skip("serve_ends_with_a_short_run").is_none() {
        return;
    }
    let inputs = Inputs::random(24, 20);
    let started = Instant::now();
    let output = inputs.command(&["--iterations", "3", "--serve", "127.0.0.1:0"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "stderr:\n{stderr}");
    assert!(stderr.lines().next().unwrap().starts_with("stylize: live preview at http://127.0.0.1:"), "{stderr}");
    // Nobody watched: no grace period.
    assert!(started.elapsed() < Duration::from_secs(60), "took {:?}", started.elapsed());
}

/// Exit 1 and one stderr line with every needle; no output file.
fn assert_one_line_failure(output: &std::process::Output, needles: &[&str], out: &Path) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(output.status.code(), Some(1), "stderr:\n{stderr}");
    assert_eq!(lines.len(), 1, "one line expected:\n{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} missing from:\n{stderr}");
    }
    assert!(!out.exists(), "an output file was written");
}

#[test]
fn serve_port_in_use_fails_before_any_work() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let inputs = Inputs::random(24, 20);
    // No GPU is needed: the port is checked before the weights, the images and the adapter.
    let output = inputs.command(&["--iterations", "3", "--serve", &addr]).output().unwrap();
    assert_one_line_failure(&output, &["--serve", &addr, "cannot listen", "in use"], &inputs.path("out.png"));
}

#[test]
fn serve_refuses_non_loopback_without_serve_public() {
    let inputs = Inputs::random(24, 20);
    let output = inputs.command(&["--serve", "0.0.0.0:0"]).output().unwrap();
    assert_one_line_failure(&output, &["0.0.0.0", "not a loopback address", "--serve-public"], &inputs.path("out.png"));
    let output = inputs.command(&["--serve-public"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "--serve-public alone is a usage error");
    let output = inputs.command(&["--serve", "nonsense"]).output().unwrap();
    assert_one_line_failure(&output, &["--serve nonsense", "not a HOST:PORT"], &inputs.path("out.png"));
}

#[test]
fn loss_plot_draws_the_curves() {
    let inputs = Inputs::random(24, 20);
    let output = inputs.command(&["--loss-plot", inputs.path("plot.jpg").to_str().unwrap()]).output().unwrap();
    assert_one_line_failure(&output, &["plot.jpg", ".png"], &inputs.path("out.png"));
    if gpu_or_skip("loss_plot_draws_the_curves").is_none() {
        return;
    }
    let plot = inputs.path("plot.png");
    let output = inputs
        .command(&["--iterations", "30", "--tv-weight", "0.1", "--loss-plot", plot.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let image = image::open(&plot).expect("a PNG").to_rgb8();
    assert_eq!(image.dimensions(), (stylize::plot::PLOT_WIDTH, stylize::plot::PLOT_HEIGHT));
    use stylize::plot::{CONTENT_COLOR, STYLE_COLOR, TOTAL_COLOR, TV_COLOR};
    for (name, c) in [("content", CONTENT_COLOR), ("style", STYLE_COLOR), ("tv", TV_COLOR), ("total", TOTAL_COLOR)] {
        let count = image.pixels().filter(|p| p.0 == [c.0, c.1, c.2]).count();
        // The legend's sample line is 21 x 2 pixels; a curve across the plot is hundreds.
        assert!(count > 200, "{name}: {count} pixels of its colour");
    }
}

/// Chromium, or None (a failure with STYLIZE_REQUIRE_BROWSER=1).
fn chromium_or_skip(test: &str) -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser"].iter().find_map(|name| {
        std::env::var_os("PATH")?.to_str()?.split(':').map(|dir| Path::new(dir).join(name)).find(|p| p.is_file())
    });
    if found.is_none() {
        if std::env::var("STYLIZE_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
            panic!("{test}: STYLIZE_REQUIRE_BROWSER=1 but no chromium in PATH");
        }
        eprintln!("SKIPPED {test}: no chromium in PATH; set STYLIZE_REQUIRE_BROWSER=1 to fail instead");
    }
    found
}

fn chromium(browser: &Path, profile: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(browser);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args)
    .stdin(Stdio::null());
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // Bounded: a hung browser fails the test instead of hanging it.
    let id = child.id();
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        if rx.recv_timeout(Duration::from_secs(120)).is_err() {
            let _ = Command::new("kill").arg("-KILL").arg(id.to_string()).status();
        }
    });
    let mut stdout = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut stdout).unwrap();
    let output = child.wait_with_output().unwrap();
    let _ = tx.send(());
    std::process::Output { stdout, ..output }
}

/// The value of `attribute="..."` on the element with `id="id"` in a dumped DOM.
fn attribute(dom: &str, id: &str, attribute: &str) -> Option<String> {
    let tag_start = dom.find(&format!(r#"id="{id}""#))?;
    let tag = &dom[dom[..tag_start].rfind('<')?..];
    let tag = &tag[..tag.find('>')?];
    let rest = tag.split(&format!(r#"{attribute}=""#)).nth(1)?;
    Some(rest[..rest.find('"')?].to_string())
}

#[test]
fn preview_page_updates_in_headless_chromium() {
    let Some(browser) = chromium_or_skip("preview_page_updates_in_headless_chromium") else {
        return;
    };
    if gpu_or_skip("preview_page_updates_in_headless_chromium").is_none() {
        return;
    }
    // The sample photos beside the checkout (or in $STYLIZE_SAMPLE_IMAGES) when there, for a
    // nicer screenshot; else noise.
    let samples = std::env::var_os("STYLIZE_SAMPLE_IMAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/images"));
    let mut inputs = Inputs::random(64, 48);
    if samples.join("astronaut.png").is_file() && samples.join("coffee.png").is_file() {
        inputs.content = samples.join("astronaut.png");
        inputs.style = samples.join("coffee.png");
    }
    let mut run = Running::start(inputs.command(&["--iterations", "5000", "--size", "96", "--serve", "127.0.0.1:0"]));
    let addr = run.preview_addr();
    wait_for("steps and an image", Duration::from_secs(60), || get(addr, "/image.png").0 == 200 && step_of(addr) > 0);
    let url = format!("http://{addr}/");

    let profile = tempfile::tempdir().unwrap();
    let dumped = chromium(&browser, profile.path(), &["--virtual-time-budget=4000", "--dump-dom", &url]);
    let dom = String::from_utf8_lossy(&dumped.stdout);
    assert!(
        dom.contains("stylize: live preview"),
        "no page in the dump; chromium said:\n{}",
        String::from_utf8_lossy(&dumped.stderr)
    );
    let step_text = dom.split(r#"<span id="step">"#).nth(1).and_then(|r| r.split('<').next()).unwrap_or("");
    let shown_step: usize = step_text.parse().unwrap_or_else(|_| panic!("step {step_text:?} in:\n{dom}"));
    assert!(shown_step > 0, "the page's script got no update:\n{dom}");
    let (width, height) = {
        let s = get_text(addr, "/state.json");
        let field = |name: &str| -> u32 {
            s.split(&format!(r#""{name}":"#)).nth(1).unwrap().split(',').next().unwrap().parse().unwrap()
        };
        (field("width"), field("height"))
    };
    assert_eq!(attribute(&dom, "result", "data-natural-width").as_deref(), Some(width.to_string().as_str()), "{dom}");
    assert_eq!(attribute(&dom, "result", "data-natural-height").as_deref(), Some(height.to_string().as_str()), "{dom}");

    // A screenshot (STYLIZE_SCREENSHOT=PATH keeps it, e.g. for the README).
    let shot = std::env::var_os("STYLIZE_SCREENSHOT").map(PathBuf::from).unwrap_or_else(|| inputs.path("page.png"));
    let profile = tempfile::tempdir().unwrap();
    let screenshot_arg = format!("--screenshot={}", shot.display());
    chromium(
        &browser,
        profile.path(),
        &["--virtual-time-budget=4000", "--window-size=1000,820", &screenshot_arg, &url],
    );
    let picture = image::open(&shot).expect("chromium wrote a PNG screenshot").to_rgb8();
    assert_eq!(picture.dimensions(), (1000, 820));
    let distinct: std::collections::HashSet<[u8; 3]> = picture.pixels().map(|p| p.0).collect();
    assert!(distinct.len() > 100, "a blank screenshot ({} colours)", distinct.len());

    let (code, stderr) = run.interrupt(Duration::from_secs(30));
    assert_eq!(code, Some(130), "stderr:\n{stderr}");
}

#[test]
fn a_watching_client_gets_the_final_image_and_the_whole_loss_log() {
    if gpu_or_skip("a_watching_client_gets_the_final_image").is_none() {
        return;
    }
    let inputs = Inputs::random(24, 20);
    let log = inputs.path("losses.csv");
    let mut run = Running::start(inputs.command(&[
        "--iterations",
        "40",
        "--scales",
        "2",
        "--loss-log",
        log.to_str().unwrap(),
        "--serve",
        "127.0.0.1:0",
    ]));
    let addr = run.preview_addr();
    // Polls as the page does; once the run is done the server waits for its final image.
    wait_for("the end of the run", Duration::from_secs(120), || {
        get_text(addr, "/state.json").contains(r#""done":true"#)
    });
    let served = get_text(addr, "/losses.csv");
    let (status, png) = get(addr, "/image.png");
    assert_eq!(status, 200);
    let started = Instant::now();
    while run.child.try_wait().unwrap().is_none() {
        assert!(started.elapsed() < Duration::from_secs(10), "the server outlived the run");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(run.child.try_wait().unwrap().unwrap().success());
    // With --loss-log every step is read back, and the page's CSV is the log, byte for byte.
    assert_eq!(served, std::fs::read_to_string(&log).unwrap());
    assert_eq!(served.lines().count(), 1 + 2 * 40);
    let last = image::load_from_memory(&png).unwrap().to_rgb8();
    let written = image::open(inputs.path("out.png")).unwrap().to_rgb8();
    assert_eq!(last, written, "the last image served is the one written");
}
