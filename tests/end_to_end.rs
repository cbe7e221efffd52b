//! End to end on the GPU: the full-width VGG-19 (random He weights) through the CLI at a small
//! size, the library entry point, and weights fetched from a URL served on 127.0.0.1.

mod common;
use common::stylize;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;

use stylize::test_support::gpu_or_skip;

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples").join(name)
}

#[test]
fn full_width_vgg19_loss_falls_and_the_output_has_the_content_size() {
    if gpu_or_skip("full_width_vgg19_loss_falls_and_the_output_has_the_content_size").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.png");
    let log = dir.path().join("loss.csv");
    let output = stylize()
        .args(["--content".as_ref(), example("rocket.jpg").as_os_str()])
        .args(["--style".as_ref(), example("coffee.png").as_os_str()])
        .args(["--weights", "random", "--size", "32", "--iterations", "4", "--learning-rate", "0.05"])
        .args(["--output".as_ref(), out.as_os_str(), "--loss-log".as_ref(), log.as_os_str()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    // rocket.jpg is 640 x 427: the longer side becomes 32, the other 427 * 32 / 640 = 21.35 -> 21.
    let result = image::open(&out).unwrap();
    assert_eq!((result.width(), result.height()), (32, 21));
    let totals: Vec<f64> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .skip(1)
        .map(|row| row.rsplit(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(totals.len(), 4);
    assert!(totals.iter().all(|t| t.is_finite() && *t > 0.0), "{totals:?}");
    assert!(totals[3] < totals[0], "the loss should fall: {totals:?}");
}

#[test]
fn library_entry_point_returns_content_style_and_target() {
    if gpu_or_skip("library_entry_point_returns_content_style_and_target").is_none() {
        return;
    }
    let options =
        stylize::Options { size: 24, iterations: 2, weights: Some("random:7".into()), ..stylize::Options::default() };
    let outcome = stylize::apply_style_transfer_with(
        example("astronaut.png"),
        example("rocket.jpg"),
        &options,
        &mut stylize::Silent,
    )
    .unwrap();
    assert_eq!((outcome.content.width, outcome.content.height), (24, 24));
    assert_eq!((outcome.style.width, outcome.style.height), (24, 24));
    assert_eq!((outcome.target.width, outcome.target.height), (24, 24));
    assert!(outcome.target.data.iter().all(|v| (0.0..=1.0).contains(v)));
    assert_ne!(outcome.target, outcome.content, "two Adam steps should change the image");
}

/// The library's `Job` is the CLI's pipeline: with the same options and outputs it writes the
/// same bytes (result, loss log, side by side), and bad output paths fail in `Job::new`.
#[test]
fn library_job_writes_what_the_cli_writes() {
    if gpu_or_skip("library_job_writes_what_the_cli_writes").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let files = |who: &str| ["out.png", "losses.csv", "sbs.png"].map(|f| dir.path().join(format!("{who}-{f}")));
    let [out, log, sbs] = files("lib");
    let options =
        stylize::Options { size: 24, iterations: 3, weights: Some("random:7".into()), ..stylize::Options::default() };
    let outputs = stylize::Outputs {
        output: Some(out.clone()),
        loss_log: Some(log.clone()),
        side_by_side: Some(sbs.clone()),
        save_every: Some(2),
        ..stylize::Outputs::default()
    };
    let (content, style) = (example("astronaut.png"), example("rocket.jpg"));
    let job = stylize::Job::new(&content, &[&style], options, outputs.clone(), &mut stylize::Silent).unwrap();
    let finished = job.run(&mut stylize::Silent).unwrap();
    assert_eq!((finished.steps, finished.stopped), (3, false));
    let [cli_out, cli_log, cli_sbs] = files("cli");
    let status = stylize()
        .args(["--content".as_ref(), content.as_os_str(), "--style".as_ref(), style.as_os_str()])
        .args(["--size", "24", "--iterations", "3", "--weights", "random:7", "--save-every", "2"])
        .arg("--output")
        .arg(&cli_out)
        .arg("--loss-log")
        .arg(&cli_log)
        .arg("--side-by-side")
        .arg(&cli_sbs)
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    for (lib, cli) in [(&out, &cli_out), (&log, &cli_log), (&sbs, &cli_sbs)] {
        assert_eq!(std::fs::read(lib).unwrap(), std::fs::read(cli).unwrap(), "{} differs", lib.display());
    }
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 4, "a header and 3 steps");
    let nowhere = stylize::Outputs { loss_log: Some(dir.path().join("no/such/log.csv")), ..outputs };
    let err = stylize::Job::new(&content, &[&style], stylize::Options::default(), nowhere, &mut stylize::Silent)
        .err()
        .expect("a missing folder is refused before any work");
    assert!(err.to_string().contains("does not exist"), "{err}");
}

/// Serves `body` to at most `requests` GET requests on 127.0.0.1, then stops.
fn serve(body: Vec<u8>, requests: usize) -> (String, std::thread::JoinHandle<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/vgg19_tiny_legacy.pth", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let mut served = 0;
        for stream in listener.incoming().take(requests) {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap() > 2 {
                line.clear();
            }
            write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).unwrap();
            stream.write_all(&body).unwrap();
            served += 1;
        }
        served
    });
    (url, handle)
}

#[test]
fn weights_given_as_a_url_are_downloaded_into_the_cache_and_used() {
    if gpu_or_skip("weights_given_as_a_url_are_downloaded_into_the_cache_and_used").is_none() {
        return;
    }
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vgg19_tiny_legacy.pth");
    let body = std::fs::read(&fixture).unwrap();
    let (url, server) = serve(body.clone(), 1);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.png");
    let output = stylize()
        .env("XDG_CACHE_HOME", dir.path().join("cache"))
        .args(["--content".as_ref(), example("astronaut.png").as_os_str()])
        .args(["--style".as_ref(), example("coffee.png").as_os_str()])
        .args(["--weights", &url, "--size", "20", "--iterations", "1"])
        .args(["--output".as_ref(), out.as_os_str()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(server.join().unwrap(), 1);
    let cached = dir.path().join("cache/stylize/vgg19_tiny_legacy.pth");
    assert_eq!(std::fs::read(cached).unwrap(), body);
    assert!(out.exists());
}
