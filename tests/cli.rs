//! The `stylize` command line: a real run on tiny weights, every bad input giving one line that
//! names the file and the problem (no panic, no output file), usage errors, help and devices.

mod common;
use common::{random_png, stderr_lines, stylize};
use std::path::{Path, PathBuf};
use std::process::Output;

use stylize::net::random_weights;
use stylize::rng::Rng;
use stylize::test_support::{gpu_or_skip, write_npz};
use stylize::weights::VGG19_CONV_INDICES;

const TINY_WIDTHS: [usize; 13] = [4, 4, 8, 8, 16, 16, 16, 16, 32, 32, 32, 32, 32];

struct Fixture {
    dir: tempfile::TempDir,
    content: PathBuf,
    style: PathBuf,
    weights: PathBuf,
}

impl Fixture {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let content = dir.path().join("content.png");
    let style = dir.path().join("style.png");
    random_png(&content, 24, 20, 1);
    random_png(&style, 17, 13, 2);
    let weights = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vgg19_tiny_legacy.pth");
    Fixture { dir, content, style, weights }
}

/// Tiny VGG-19 weights as .npz after `edit` changed the (key, shape, data) list.
fn weights_npz(dir: &Path, name: &str, edit: impl FnOnce(&mut Vec<(String, Vec<usize>, Vec<f32>)>)) -> PathBuf {
    let mut arrays = Vec::new();
    for (layer, index) in random_weights(&TINY_WIDTHS, 3).into_iter().zip(VGG19_CONV_INDICES) {
        arrays.push((
            format!("features.{index}.weight"),
            vec![layer.out_channels, layer.in_channels, 3, 3],
            layer.weight,
        ));
        arrays.push((format!("features.{index}.bias"), vec![layer.out_channels], layer.bias));
    }
    edit(&mut arrays);
    let path = dir.join(name);
    let refs: Vec<(&str, &[usize], &[f32])> = arrays.iter().map(|(k, s, d)| (k.as_str(), &s[..], &d[..])).collect();
    write_npz(&path, &refs).unwrap();
    path
}

fn base_args<'a>(f: &'a Fixture, output: &'a Path) -> Vec<std::ffi::OsString> {
    [
        "--content".as_ref(),
        f.content.as_os_str(),
        "--style".as_ref(),
        f.style.as_os_str(),
        "--weights".as_ref(),
        f.weights.as_os_str(),
        "--output".as_ref(),
        output.as_os_str(),
        "--iterations".as_ref(),
        "2".as_ref(),
    ]
    .iter()
    .map(|s| s.to_os_string())
    .collect()
}

/// Replaces the value after `flag` (or appends the pair).
fn with_arg(
    mut args: Vec<std::ffi::OsString>,
    flag: &str,
    value: impl AsRef<std::ffi::OsStr>,
) -> Vec<std::ffi::OsString> {
    match args.iter().position(|a| a == flag) {
        Some(i) => args[i + 1] = value.as_ref().to_os_string(),
        None => {
            args.push(flag.into());
            args.push(value.as_ref().to_os_string());
        }
    }
    args
}

/// Exit code `code`, no panic, every `needle` on stderr, no output file; exactly one stderr line
/// when the code is 1 (clap's usage errors, code 2, print several lines).
fn assert_clean_failure(what: &str, output: &Output, code: i32, needles: &[&str], out_file: &Path) {
    common::assert_failure(what, output, code, needles, out_file, code == 1);
}

#[test]
fn cli_runs_end_to_end_with_tiny_weights() {
    if gpu_or_skip("cli_runs_end_to_end_with_tiny_weights").is_none() {
        return;
    }
    let f = fixture();
    let out = f.path("result.jpg");
    let log = f.path("losses.csv");
    let sbs = f.path("sbs.png");
    let args = with_arg(
        with_arg(with_arg(base_args(&f, &out), "--iterations", "3"), "--loss-log", &log),
        "--side-by-side",
        &sbs,
    );
    let output = stylize().args(&args).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let result = image::open(&out).unwrap();
    assert_eq!((result.width(), result.height()), (24, 20));
    let composite = image::open(&sbs).unwrap();
    assert_eq!((composite.width(), composite.height()), (72, 20));
    let csv = std::fs::read_to_string(&log).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows[0], "step,content,style,total");
    assert_eq!(rows.len(), 4, "{csv}");
    for (i, row) in rows[1..].iter().enumerate() {
        let fields: Vec<f64> = row.split(',').map(|v| v.parse().unwrap()).collect();
        assert_eq!(fields[0] as usize, i);
        assert!((fields[3] - (fields[1] + 1e6 * fields[2])).abs() <= 1e-9 * fields[3].abs(), "{row}");
    }
    // The target starts as the content image: no content loss at step 0.
    assert!(rows[1].starts_with("0,0e0,"), "{}", rows[1]);
    // stderr is not a terminal here: no progress bar, no loss lines, only the final line (and,
    // on a CPU adapter, the line saying so).
    let lines: Vec<String> =
        stderr_lines(&output).into_iter().filter(|l| !l.starts_with("stylize: running on the CPU")).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("wrote") && lines[0].contains("3 steps"), "{}", lines[0]);
}

#[test]
fn cli_bad_files_give_one_line_naming_the_file() {
    let f = fixture();
    let out = f.path("out.png");
    let dir = f.dir.path();
    let empty = dir.join("empty.png");
    std::fs::write(&empty, b"").unwrap();
    let text = dir.join("text.png");
    std::fs::write(&text, "this is not a picture\n").unwrap();
    let truncated = dir.join("truncated.png");
    let bytes = std::fs::read(&f.content).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let huge = dir.join("huge.png");
    std::fs::write(&huge, png_header_claiming(100_000, 100_000)).unwrap();
    let missing = dir.join("missing.png");
    let folder = dir.join("a-folder.png");
    std::fs::create_dir(&folder).unwrap();
    // A decoder panic (zune-jpeg's, caught by the library) stays one line too: no panic message.
    let upstream = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_regressions/image/upstream-zune-jpeg-0.5.15-avx2-upsample.jpg");
    for (what, path, needle) in [
        ("JPEG on which zune-jpeg panics", &upstream, "malformed"),
        ("missing file", &missing, "not found"),
        ("zero-byte file", &empty, "empty"),
        ("text named .png", &text, "not"),
        ("truncated PNG", &truncated, ""),
        ("directory", &folder, "directory"),
        ("decompression bomb", &huge, "100000"),
    ] {
        for flag in ["--content", "--style"] {
            let args = with_arg(base_args(&f, &out), flag, path);
            let output = stylize().args(&args).output().unwrap();
            let name = path.file_name().unwrap().to_str().unwrap();
            assert_clean_failure(&format!("{what} as {flag}"), &output, 1, &[name, needle], &out);
        }
    }
}

/// A PNG signature and IHDR chunk (valid CRC) claiming the given size, and nothing else.
fn png_header_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let crc = crc32(&ihdr);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc.to_be_bytes());
    // A few bytes of image data, so that a decoder gets past the header.
    let mut idat = b"IDAT".to_vec();
    idat.extend_from_slice(&[0x78, 0x9c, 0x63, 0x60, 0x00, 0x00]);
    png.extend_from_slice(&((idat.len() - 4) as u32).to_be_bytes());
    png.extend_from_slice(&idat);
    png.extend_from_slice(&crc32(&idat).to_be_bytes());
    png
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

#[test]
fn cli_bad_weights_give_one_line_naming_the_file_and_key() {
    let f = fixture();
    let out = f.path("out.png");
    let dir = f.dir.path();
    let random = dir.join("random.pth");
    let mut rng = Rng::new(9);
    std::fs::write(&random, (0..4096).map(|_| rng.next_u64() as u8).collect::<Vec<u8>>()).unwrap();
    let truncated = dir.join("truncated.pth");
    let good = std::fs::read(&f.weights).unwrap();
    std::fs::write(&truncated, &good[..good.len() * 2 / 3]).unwrap();
    let missing_key = weights_npz(dir, "missing-key.npz", |a| a.retain(|(k, _, _)| k != "features.28.weight"));
    let nan = weights_npz(dir, "nan.npz", |a| a[4].2[3] = f32::NAN);
    let wrong_shape = weights_npz(dir, "wrong-shape.npz", |a| {
        a[0].1 = vec![4, 3, 1, 9];
    });
    let chain = weights_npz(dir, "chain.npz", |a| {
        a[2] = ("features.2.weight".into(), vec![4, 5, 3, 3], vec![0.1; 4 * 5 * 9]);
    });
    for (what, path, needles) in [
        ("missing weights", dir.join("nope.pth"), vec!["nope.pth"]),
        ("random bytes", random, vec!["random.pth"]),
        ("truncated weights", truncated, vec!["truncated.pth"]),
        ("missing key", missing_key, vec!["missing-key.npz", "features.28.weight"]),
        ("NaN", nan, vec!["nan.npz", "features.5.weight", "NaN"]),
        ("wrong shape", wrong_shape, vec!["wrong-shape.npz", "features.0.weight"]),
        ("broken chain", chain, vec!["chain.npz", "features.2.weight"]),
    ] {
        let output = stylize().args(with_arg(base_args(&f, &out), "--weights", &path)).output().unwrap();
        assert_clean_failure(what, &output, 1, &needles, &out);
    }
}

#[test]
fn cli_usage_errors_exit_2_before_any_work() {
    let f = fixture();
    let out = f.path("out.png");
    for (what, flag, value, needle) in [
        ("size 0", "--size", "0", "--size"),
        ("negative learning rate", "--learning-rate", "-0.1", "--learning-rate"),
        ("zero learning rate", "--learning-rate", "0", "--learning-rate"),
        ("non-numeric iterations", "--iterations", "lots", "--iterations"),
        ("negative iterations", "--iterations", "-3", "--iterations"),
        ("negative style weight", "--style-weight", "-1", "--style-weight"),
        ("unknown backend", "--backend", "glide", "--backend"),
    ] {
        let output = stylize().args(with_arg(base_args(&f, &out), flag, value)).output().unwrap();
        assert_clean_failure(what, &output, 2, &[needle], &out);
    }
    let output = stylize().args(["--style", "x.png"]).output().unwrap();
    assert_clean_failure("no --content", &output, 2, &["--content"], &out);
}

#[test]
fn cli_option_errors_exit_1_with_one_line() {
    let f = fixture();
    let out = f.path("out.png");
    let args = with_arg(base_args(&f, &out), "--style-layer-weights", "1,2");
    let output = stylize().args(&args).output().unwrap();
    assert_clean_failure("weights count", &output, 1, &["--style-layer-weights", "2 values", "5 style layers"], &out);
    let args = with_arg(base_args(&f, &out), "--content-layers", "relu9_9");
    let output = stylize().args(&args).output().unwrap();
    assert_clean_failure("unknown layer", &output, 1, &["relu9_9"], &out);
}

#[test]
fn cli_output_problems_are_found_before_any_work() {
    let f = fixture();
    let missing_folder = f.path("no/such/folder/out.png");
    let output = stylize().args(base_args(&f, &missing_folder)).output().unwrap();
    assert_clean_failure("missing folder", &output, 1, &["out.png", "does not exist"], &missing_folder);
    let bad_ext = f.path("out.xyz");
    let output = stylize().args(base_args(&f, &bad_ext)).output().unwrap();
    assert_clean_failure("unknown format", &output, 1, &["out.xyz", "xyz"], &bad_ext);
    let out = f.path("out.png");
    let args = with_arg(base_args(&f, &out), "--side-by-side", f.path("nowhere/sbs.png"));
    let output = stylize().args(&args).output().unwrap();
    assert_clean_failure("side-by-side folder", &output, 1, &["sbs.png"], &out);
    let args = with_arg(base_args(&f, &out), "--loss-log", f.path("nowhere/log.csv"));
    let output = stylize().args(&args).output().unwrap();
    assert_clean_failure("loss-log folder", &output, 1, &["log.csv"], &out);
}

#[test]
fn cli_without_a_gpu_adapter_fails_cleanly() {
    let f = fixture();
    let out = f.path("out.png");
    let output = stylize()
        .args(base_args(&f, &out))
        .env("WGPU_BACKEND", "vulkan")
        .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
        .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
        .output()
        .unwrap();
    assert_clean_failure("no adapter", &output, 1, &["no GPU adapter"], &out);
}

#[test]
fn cli_help_documents_every_flag() {
    let output = stylize().arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--content",
        "--style",
        "--output",
        "--weights",
        "--size",
        "--iterations",
        "--learning-rate",
        "--content-weight",
        "--style-weight",
        "--style-layer-weights",
        "--content-layers",
        "--style-layers",
        "--loss-log",
        "--print-every",
        "--save-every",
        "--side-by-side",
        "--seed",
        "--backend",
        "--adapter",
        "--normalize-gradients",
        "devices",
        "weights",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
    let output = stylize().args(["weights", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&output.stdout).contains("fetch"));
}

#[test]
fn cli_devices_lists_the_adapter() {
    if gpu_or_skip("cli_devices_lists_the_adapter").is_none() {
        return;
    }
    let output = stylize().arg("devices").output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("max storage binding"), "{text}");
}

#[test]
fn cli_normalize_gradients_changes_the_result() {
    if gpu_or_skip("cli_normalize_gradients_changes_the_result").is_none() {
        return;
    }
    let f = fixture();
    let plain = f.path("plain.png");
    let normalized = f.path("normalized.png");
    let args = with_arg(base_args(&f, &plain), "--learning-rate", "0.05");
    assert!(stylize().args(&args).output().unwrap().status.success());
    let mut args = with_arg(base_args(&f, &normalized), "--learning-rate", "0.05");
    args.push("--normalize-gradients".into());
    let output = stylize().args(&args).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let (a, b) = (image::open(&plain).unwrap().to_rgb8(), image::open(&normalized).unwrap().to_rgb8());
    assert_eq!(a.dimensions(), b.dimensions());
    assert_ne!(a.as_raw(), b.as_raw(), "normalizing the gradients must change the steps");
}

#[test]
fn cli_on_a_cpu_adapter_says_so_once_with_the_expected_time() {
    let Some(ctx) = gpu_or_skip("cli_on_a_cpu_adapter_says_so_once_with_the_expected_time") else {
        return;
    };
    let f = fixture();
    let out = f.path("result.png");
    let output = stylize().args(with_arg(base_args(&f, &out), "--iterations", "4")).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let lines = stderr_lines(&output);
    let notices: Vec<&String> = lines.iter().filter(|l| l.contains("running on the CPU")).collect();
    if ctx.adapter.is_cpu() {
        assert_eq!(notices.len(), 1, "{lines:?}");
        let notice = notices[0];
        assert!(notice.contains(&ctx.adapter.name), "{notice}");
        assert!(notice.contains("s per step") && notice.contains("for the whole run"), "{notice}");
    } else {
        assert!(notices.is_empty(), "{lines:?}");
    }
}

#[test]
fn cli_without_network_says_where_to_put_the_weights() {
    let f = fixture();
    let out = f.path("out.png");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/vgg19.pth", listener.local_addr().unwrap());
    drop(listener);
    let cache = f.path("cache");
    let output = stylize()
        .args(with_arg(base_args(&f, &out), "--weights", &url))
        .env("XDG_CACHE_HOME", &cache)
        .output()
        .unwrap();
    let expected_path = cache.join("stylize/vgg19.pth");
    assert_clean_failure(
        "closed port",
        &output,
        1,
        &[&url, &expected_path.display().to_string(), "--weights PATH", "STYLIZE_WEIGHTS"],
        &out,
    );
}

/// `--precision`: the summary line says which arithmetic ran and why; mixed on an adapter
/// without matrix units warns once that it is emulated; `stylize devices` and `bench` say it too.
#[test]
fn cli_precision_is_reported() {
    let help = String::from_utf8_lossy(&stylize().arg("--help").output().unwrap().stdout).to_string();
    assert!(help.contains("--precision"), "{help}");
    let f = fixture();
    let out = f.path("bad.png");
    let mut args = base_args(&f, &out);
    args.extend(["--precision".into(), "f16".into()]);
    assert_eq!(stylize().args(&args).output().unwrap().status.code(), Some(2), "f16 is no precision");
    if gpu_or_skip("cli_precision_is_reported").is_none() {
        return;
    }
    let adapter = stylize::test_support::gpu_or_skip("cli_precision_is_reported").unwrap().adapter.clone();
    let matrix_units = adapter.matrix_units;
    for (precision, expected) in [("f32", "precision f32"), ("mixed", "precision mixed"), ("auto", "precision ")] {
        let out = f.path(&format!("{precision}.png"));
        let mut args = base_args(&f, &out);
        args.extend(["--precision".into(), precision.into()]);
        let output = stylize().args(&args).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let lines = stderr_lines(&output);
        let last = lines.last().unwrap();
        assert!(last.contains("wrote") && last.contains(expected), "{precision}: {last}");
        let warned = lines.iter().any(|l| l.contains("warning") && l.contains("emulated"));
        assert_eq!(warned, precision == "mixed" && !matrix_units, "{precision}: {lines:?}");
        // Besides the summary and the warning, only the CPU adapter's notice (see
        // cli_on_a_cpu_adapter_says_so_once_with_the_expected_time).
        let others = lines.iter().filter(|l| !l.contains("running on the CPU")).count();
        assert_eq!(others, 1 + warned as usize, "{precision}: {lines:?}");
    }
    let devices = String::from_utf8_lossy(&stylize().arg("devices").output().unwrap().stdout).to_string();
    assert!(devices.contains("matrix units: ") && devices.contains("--precision auto runs"), "{devices}");
    if let Some(shape) = adapter.matrix_shape {
        // The shape the kernels take, and auto's rule: f32 on a CPU adapter's matrix units.
        assert!(devices.contains(&format!("the mixed kernels use {} f16", shape.name())), "{devices}");
        let auto = if adapter.class() == stylize::gpu::AdapterClass::Cpu {
            "runs f32 (auto: on a CPU adapter"
        } else {
            "runs mixed"
        };
        assert!(devices.contains(auto), "{devices}");
    }
    let bench = stylize()
        .args(["bench", "--size", "16", "--iterations", "1", "--warmup", "0", "--precision", "mixed", "--json"])
        .output()
        .unwrap();
    assert!(bench.status.success(), "{}", String::from_utf8_lossy(&bench.stderr));
    let stdout = String::from_utf8_lossy(&bench.stdout);
    assert!(stdout.contains("precision    mixed"), "{stdout}");
    let expected = if matrix_units { "\"precision\":\"mixed-matrix\"" } else { "\"precision\":\"mixed-emulated\"" };
    assert!(stdout.contains(expected), "{stdout}");
}

/// `--model`: VGG-16 and the Caffe VGG-19 run end to end on tiny weights of their layout; weights
/// of another model are one line naming the file, the first tensor that does not fit and the
/// `--model` that does; an unknown model is a usage error listing the known ones.
#[test]
fn cli_models_run_and_refuse_another_models_weights() {
    let f = fixture();
    let out = f.path("out.png");
    let mismatched = with_arg(base_args(&f, &out), "--model", "vgg16");
    let output = stylize().args(&mismatched).output().unwrap();
    assert_clean_failure(
        "vgg19 weights as vgg16",
        &output,
        1,
        &["vgg19_tiny_legacy.pth", "does not fit vgg16", "features.17.weight", "--model vgg19"],
        &out,
    );
    let output = stylize().args(with_arg(base_args(&f, &out), "--model", "vgg11")).output().unwrap();
    assert_clean_failure("unknown model", &output, 2, &["--model", "vgg19-caffe", "vgg16-caffe"], &out);

    if gpu_or_skip("cli_models_run_and_refuse_another_models_weights").is_none() {
        return;
    }
    let vgg16 = f.path("vgg16_tiny.npz");
    let widths = [4, 4, 8, 8, 16, 16, 16, 32, 32, 32, 32];
    stylize::test_support::write_convs_npz(&vgg16, stylize::weights::VGG16_CONV_INDICES.as_slice(), &widths, 4)
        .unwrap();
    for (model, weights) in [("vgg16", vgg16.clone()), ("vgg16-caffe", vgg16), ("vgg19-caffe", f.weights.clone())] {
        let out = f.path(&format!("{model}.png"));
        let args = with_arg(with_arg(base_args(&f, &out), "--model", model), "--weights", &weights);
        let output = stylize().args(&args).output().unwrap();
        assert!(output.status.success(), "{model}: {}", String::from_utf8_lossy(&output.stderr));
        let result = image::open(&out).unwrap();
        assert_eq!((result.width(), result.height()), (24, 20), "{model}");
    }
}

/// `stylize models` lists every model with its file and whether the cache holds it.
#[test]
fn cli_models_lists_each_model_and_its_cache_state() {
    let cache = tempfile::tempdir().unwrap();
    let list = || {
        let output = stylize().arg("models").env("XDG_CACHE_HOME", cache.path()).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    let text = list();
    for needle in ["vgg19 ", "vgg16 ", "vgg19-caffe", "vgg16-caffe", "vgg19-dcbb9e9d.pth", "vgg16-00b39a1b.pth"] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
    assert_eq!(text.matches("not cached").count(), 4, "{text}");
    assert!(text.contains("548 MiB, SHA-256 checked"), "{text}");
    assert!(text.contains("first 8 digits"), "{text}");
    // A finished download of a file of unknown size counts; a vgg19 file of the wrong size does not.
    std::fs::create_dir_all(cache.path().join("stylize")).unwrap();
    std::fs::write(cache.path().join("stylize/vgg16-397923af.pth"), b"weights").unwrap();
    std::fs::write(cache.path().join("stylize/vgg19-dcbb9e9d.pth"), b"cut short").unwrap();
    let text = list();
    assert_eq!(text.matches("not cached").count(), 3, "{text}");
    assert!(
        text.contains(&format!("cached at {}", cache.path().join("stylize/vgg16-397923af.pth").display())),
        "{text}"
    );
}

/// `--preset jcjohnson` runs (the tiny VGG-19 file read as the Caffe model, whose layout it has)
/// and says first what it set and which options the command line gave over it; an unknown preset
/// is a usage error naming the ones there are.
#[test]
fn cli_preset_says_what_it_set_and_what_was_given_over_it() {
    if gpu_or_skip("cli_preset_says_what_it_set_and_what_was_given_over_it").is_none() {
        return;
    }
    let f = fixture();
    let out = f.path("preset.png");
    let args = with_arg(with_arg(base_args(&f, &out), "--preset", "jcjohnson"), "--size", "24");
    let output = stylize().args(&args).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let lines = stderr_lines(&output);
    let first = &lines[0];
    assert!(first.starts_with("stylize: preset jcjohnson: --model vgg19-caffe"), "{first}");
    for set in ["--init random", "--optimizer lbfgs", "--style-weight 100", "--gram-norm chw", "--tv-weight 0.0005"] {
        assert!(first.contains(set), "{set} not in {first}");
    }
    assert!(first.ends_with("; given over it: --size --iterations"), "{first}");
    assert!(lines.last().unwrap().contains("after 2 steps"), "{lines:?}");
    assert_eq!(image::open(&out).unwrap().width(), 24);

    let bad = f.path("bad.png");
    let output = stylize().args(with_arg(base_args(&f, &bad), "--preset", "neural")).output().unwrap();
    assert_clean_failure("unknown preset", &output, 2, &["neural", "gatys", "jcjohnson"], &bad);
}

/// `--style-loss w2` runs (the W2 loss at every style layer) and reports its style loss, also
/// with a blend of styles (with masks: tests/masks.rs); `--tile 16` runs it over 4 tiles and
/// logs the untiled run's first-step losses, the style captured tile by tile (one style, resized
/// to the content) or blended from untiled runs at its sizes (`set_style_moments`).
#[test]
fn cli_w2_style_loss_runs_untiled_and_tiled() {
    if gpu_or_skip("cli_w2_style_loss_runs_untiled_and_tiled").is_none() {
        return;
    }
    let f = fixture();
    // The first step's logged losses of a W2 run with `extra`; the run says whether it tiled.
    let first_losses = |name: &str, extra: &[&str]| -> (Vec<f64>, String) {
        let (out, log) = (f.path(&format!("{name}.png")), f.path(&format!("{name}.csv")));
        let mut args = with_arg(with_arg(base_args(&f, &out), "--style-loss", "w2"), "--loss-log", &log);
        args.extend(extra.iter().map(Into::into));
        let output = stylize().args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        assert!(output.status.success(), "{name}: {stderr}");
        assert_eq!(image::open(&out).unwrap().width(), 24);
        let csv = std::fs::read_to_string(&log).unwrap();
        (csv.lines().nth(1).unwrap().split(',').map(|v| v.parse().unwrap()).collect(), stderr)
    };
    let (untiled, _) = first_losses("w2", &[]);
    assert!(untiled[2] > 0.0 && untiled[2].is_finite(), "the W2 style loss: {untiled:?}");
    let style = f.style.to_str().unwrap();
    let blend = ["--style", style, "--style-scale", "1.5"];
    let (untiled_blend, _) = first_losses("w2-blend", &blend);
    for (name, extra, reference) in [("tiled", vec![], &untiled), ("tiled-blend", blend.to_vec(), &untiled_blend)] {
        let (tiled, stderr) = first_losses(name, &[&["--tile", "16"], extra.as_slice()].concat());
        assert!(stderr.contains("in 4 tiles of 16 px"), "{name}: {stderr}");
        let error = tiled
            .iter()
            .zip(reference.iter())
            .skip(1)
            .map(|(a, b)| (a - b).abs() / b.abs().max(1e-30))
            .fold(0.0, f64::max);
        eprintln!(
            "{name}: first-step losses {tiled:?} against untiled {reference:?}: worst relative error {error:.1e}"
        );
        assert!(tiled.len() == reference.len() && error <= 1e-5, "{name}: {tiled:?} against {reference:?}");
    }
}

/// `--padding replicate` runs (its style loss differs from the zero-padded run's: the first
/// convolution's border reads the image's edges), and over tiles of 16 px its first step's style
/// loss is the untiled one's.
#[test]
fn cli_replicate_padding_runs_untiled_and_tiled() {
    if gpu_or_skip("cli_replicate_padding_runs_untiled_and_tiled").is_none() {
        return;
    }
    let f = fixture();
    let first_style_loss = |padding: &str, tile: &str| {
        let name = format!("{padding}-{tile}");
        let (out, log) = (f.path(&format!("{name}.png")), f.path(&format!("{name}.csv")));
        let args = with_arg(with_arg(base_args(&f, &out), "--padding", padding), "--loss-log", &log);
        let output = stylize().args(with_arg(args, "--tile", tile)).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(image::open(&out).unwrap().width(), 24);
        let csv = std::fs::read_to_string(&log).unwrap();
        csv.lines().nth(1).unwrap().split(',').nth(2).unwrap().parse::<f64>().unwrap()
    };
    let (replicate, zeros) = (first_style_loss("replicate", "off"), first_style_loss("zeros", "off"));
    assert!(
        replicate.is_finite() && replicate > 0.0 && (replicate - zeros).abs() > 1e-6 * zeros,
        "{replicate} {zeros}"
    );
    let tiled = first_style_loss("replicate", "16");
    assert!((tiled - replicate).abs() <= 1e-5 * replicate, "tiled {tiled}, untiled {replicate}");
}

/// The whole crowsonkb recipe over tiles of 16 px (W2 moments summed over tiles, each window
/// replicate-padded, the nine-point TV on the whole image): each step's losses follow the untiled
/// run's over two warm-started scales (5.5e-5 apart at most on lavapipe over 5 steps).
#[test]
fn cli_crowsonkb_preset_runs_over_tiles() {
    if gpu_or_skip("cli_crowsonkb_preset_runs_over_tiles").is_none() {
        return;
    }
    let f = fixture();
    let style = f.path("style_large.png");
    random_png(&style, 40, 30, 2);
    let rows = |tile: &str| {
        let (out, log) = (f.path(&format!("crowsonkb-{tile}.png")), f.path(&format!("crowsonkb-{tile}.csv")));
        let args = with_arg(with_arg(base_args(&f, &out), "--preset", "crowsonkb"), "--size", "32");
        let args = with_arg(with_arg(with_arg(args, "--style", &style), "--tile", tile), "--loss-log", &log);
        let extra = ["--scales", "2", "--initial-iterations", "3"].map(std::ffi::OsString::from);
        let output = stylize().args([&args[..], &extra].concat()).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let csv = std::fs::read_to_string(&log).unwrap();
        let parse = |l: &str| l.split(',').map(|v| v.parse::<f64>().unwrap()).collect::<Vec<f64>>();
        csv.lines().skip(1).map(parse).collect::<Vec<_>>()
    };
    let (untiled, tiled) = (rows("off"), rows("16"));
    assert_eq!(untiled.len(), 5);
    let mut worst = 0f64;
    for (a, b) in untiled.iter().zip(&tiled) {
        for (x, y) in a.iter().zip(b).skip(2) {
            worst = worst.max((x - y).abs() / y.abs().max(1e-12));
            assert!((x - y).abs() <= 1e-3 * y.abs().max(1e-12), "untiled {a:?}, tiled {b:?}");
        }
    }
    eprintln!("crowsonkb over tiles: losses within {worst:.1e} of untiled");
}

/// `--preset crowsonkb` runs over two warm-started scales (W2, Adam on RGB, the nine-point TV,
/// the iterate average), says what it set, and counts the first scale's --initial-iterations.
#[test]
fn cli_crowsonkb_preset_runs_over_warm_started_scales() {
    if gpu_or_skip("cli_crowsonkb_preset_runs_over_warm_started_scales").is_none() {
        return;
    }
    let f = fixture();
    let out = f.path("crowsonkb.png");
    // 32 px, not 24: the first of two scales (1/sqrt(2) of it, 23x19) must still pass
    // VGG-19's four pools, which need 16 px each way.
    let args = with_arg(with_arg(base_args(&f, &out), "--preset", "crowsonkb"), "--size", "32");
    let mut args = [&args[..], &["--scales", "2", "--initial-iterations", "3"].map(std::ffi::OsString::from)].concat();
    // Fitted to a scale and never enlarged, the fixture's 17x13 style is too small for the pools:
    // named in one line.
    let small = stylize().args(&args).output().unwrap();
    let error = String::from_utf8_lossy(&small.stderr);
    assert_eq!(small.status.code(), Some(1), "{error}");
    assert!(error.lines().last().unwrap().contains("style image 1: image of 17x13 pixels is too small"), "{error}");
    let style = f.path("style_large.png");
    random_png(&style, 40, 30, 2);
    args = with_arg(args, "--style", &style);
    let output = stylize().args(&args).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let lines = stderr_lines(&output);
    let first = &lines[0];
    for set in [
        "--style-loss w2",
        "--optimize-in rgb",
        "--adam-beta2 0.99",
        "--tv-loss nine-point",
        "--padding replicate",
        "--tv-weight 2",
        "--style-fit scale",
        "--resample bicubic",
        "--average-decay 0.99",
        "--warm-start",
        "--learning-rate 0.02",
    ] {
        assert!(first.contains(&format!("{set} ")) || first.contains(&format!("{set};")), "{set} not in {first}");
    }
    assert!(first.ends_with("; given over it: --size --iterations --initial-iterations --scales"), "{first}");
    // 3 steps on the first scale, --iterations 2 on the second.
    assert!(lines.last().unwrap().contains("after 5 steps"), "{lines:?}");
    // The 24x20 content is not enlarged to 32.
    assert_eq!(image::open(&out).unwrap().width(), 24);
}

/// `stylize bench --flow`: the TV-L1 flow of `stylize video` between two frames, in ms per flow
/// (median), with its dispatches and pyramid levels, the frame pair and its share of a frame's
/// steps at the video default.
#[test]
fn cli_bench_flow_reports_ms_per_flow() {
    if gpu_or_skip("cli_bench_flow_reports_ms_per_flow").is_none() {
        return;
    }
    let output = stylize().args(["bench", "--flow", "--size", "48"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let value = |label: &str| -> f64 {
        let line =
            stdout.lines().find(|l| l.starts_with(label)).unwrap_or_else(|| panic!("no {label} line:\n{stdout}"));
        let number = line[label.len()..].split_whitespace().next();
        number.and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("no number after {label}: {line}"))
    };
    let (flow, pair) = (value("ms/flow"), value("ms/pair"));
    assert!(flow > 0.0 && pair > flow, "a pair is two flows: {stdout}");
    // --size N is the longer side, the frames 4:3.
    assert!(stdout.contains("TV-L1 of 48x36 frames: 2 pyramid levels (48x36, 24x18)"), "{stdout}");
    assert!(stdout.contains("dispatches per flow"), "{stdout}");
    assert!(stdout.contains("flow pair = ") && stdout.contains("% of a frame's 1000 steps"), "{stdout}");
}
