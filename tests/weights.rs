//! Weight-file reading, checking and downloading, on fixtures written by real PyTorch.

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use sha2::{Digest, Sha256};
use stylize::test_support::npy;
use stylize::weights::{
    DownloadOptions, FetchEvent, ManifestEntry, Problem, VGG19_CONV_INDICES, WeightsError, default_weights_path,
    download, download_with, ensure_weights, load_vgg19, read_tensors, resolve_weights_arg,
};

const GOOD_FILES: [&str; 4] = ["vgg19_tiny_legacy.pth", "vgg19_tiny_2017.pth", "vgg19_tiny_zip.pth", "vgg19_tiny.npz"];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

// ---------------------------------------------------------------- the fixture summary (JSON)

/// Per-key figures from `vgg19_tiny.json`.
struct Summary {
    shape: Vec<usize>,
    sum: f64,
    first: Vec<f64>,
}

/// A JSON value, enough for the summary file.
enum Json {
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

fn parse_json(text: &str) -> Json {
    let bytes = text.as_bytes();
    let mut pos = 0;

    json_value(bytes, &mut pos)
}

fn skip_ws(b: &[u8], pos: &mut usize) {
    while *pos < b.len() && (b[*pos] as char).is_whitespace() {
        *pos += 1;
    }
}

fn json_value(b: &[u8], pos: &mut usize) -> Json {
    skip_ws(b, pos);
    match b[*pos] {
        b'{' => {
            *pos += 1;
            let mut items = Vec::new();
            loop {
                skip_ws(b, pos);
                if b[*pos] == b'}' {
                    *pos += 1;
                    return Json::Obj(items);
                }
                let Json::Str(k) = json_value(b, pos) else { panic!("key") };
                skip_ws(b, pos);
                assert_eq!(b[*pos], b':');
                *pos += 1;
                items.push((k, json_value(b, pos)));
                skip_ws(b, pos);
                if b[*pos] == b',' {
                    *pos += 1;
                }
            }
        }
        b'[' => {
            *pos += 1;
            let mut items = Vec::new();
            loop {
                skip_ws(b, pos);
                if b[*pos] == b']' {
                    *pos += 1;
                    return Json::Arr(items);
                }
                items.push(json_value(b, pos));
                skip_ws(b, pos);
                if b[*pos] == b',' {
                    *pos += 1;
                }
            }
        }
        b'"' => {
            let start = *pos + 1;
            let end = start + b[start..].iter().position(|&c| c == b'"').unwrap();
            *pos = end + 1;
            Json::Str(String::from_utf8(b[start..end].to_vec()).unwrap())
        }
        _ => {
            let start = *pos;
            while *pos < b.len() && !b",]} \n\r\t".contains(&b[*pos]) {
                *pos += 1;
            }
            let text = std::str::from_utf8(&b[start..*pos]).unwrap();
            Json::Num(text.parse().unwrap_or(f64::NAN))
        }
    }
}

fn summaries() -> Vec<(String, Summary)> {
    let text = fs::read_to_string(fixture("vgg19_tiny.json")).unwrap();
    let Json::Obj(items) = parse_json(&text) else { panic!("summary is not an object") };
    items
        .into_iter()
        .map(|(key, v)| {
            let Json::Obj(fields) = v else { panic!() };
            let get = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v).unwrap();
            let nums = |v: &Json| match v {
                Json::Arr(a) => a
                    .iter()
                    .map(|x| match x {
                        Json::Num(n) => *n,
                        _ => panic!(),
                    })
                    .collect::<Vec<f64>>(),
                _ => panic!(),
            };
            let sum = match get("sum") {
                Json::Num(n) => *n,
                _ => panic!(),
            };
            let summary = Summary {
                shape: nums(get("shape")).iter().map(|&n| n as usize).collect(),
                sum,
                first: nums(get("first")),
            };
            (key, summary)
        })
        .collect()
}

fn check_against_summary(key: &str, shape: &[usize], data: &[f32], s: &Summary, file: &str) {
    assert_eq!(shape, s.shape.as_slice(), "{file} {key} shape");
    assert_eq!(data.len(), shape.iter().product::<usize>(), "{file} {key} len");
    let sum: f64 = data.iter().map(|&v| f64::from(v)).sum();
    let tolerance = 1e-4 * s.sum.abs().max(1e-2);
    assert!((sum - s.sum).abs() <= tolerance, "{file} {key}: sum {sum} vs {}", s.sum);
    for (i, &want) in s.first.iter().enumerate() {
        assert_eq!(data[i], want as f32, "{file} {key} value {i}");
    }
}

// ---------------------------------------------------------------- good files

#[test]
fn every_good_file_loads_vgg19_matching_the_summary() {
    let summary: HashMap<String, Summary> = summaries().into_iter().collect();
    for file in GOOD_FILES {
        let vgg = load_vgg19(&fixture(file)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(vgg.convs.len(), 13, "{file}");
        let mut previous_out = 3;
        for (conv, index) in vgg.convs.iter().zip(VGG19_CONV_INDICES) {
            let prefix = format!("features.{index}");
            assert_eq!(conv.in_channels, previous_out, "{file} {index}");
            previous_out = conv.out_channels;
            let w = &summary[&format!("{prefix}.weight")];
            let b = &summary[&format!("{prefix}.bias")];
            let w_shape = [conv.out_channels, conv.in_channels, 3, 3];
            check_against_summary(&prefix, &w_shape, &conv.weight, w, file);
            check_against_summary(&prefix, &[conv.out_channels], &conv.bias, b, file);
        }
        assert_eq!(vgg.convs[0].out_channels, 4, "{file}: widths cut 16x");
        assert_eq!(vgg.convs[12].out_channels, 32, "{file}: widths cut 16x");
    }
}

#[test]
fn every_pth_holds_bit_identical_tensors_to_the_npz() {
    let keys: Vec<String> = summaries().into_iter().map(|(k, _)| k).collect();
    assert!(keys.iter().any(|k| k.starts_with("classifier.")));
    let reference = read_tensors(&fixture("vgg19_tiny.npz"), &keys).unwrap();
    let summary: HashMap<String, Summary> = summaries().into_iter().collect();
    for (key, t) in &reference {
        check_against_summary(key, &t.shape, &t.data, &summary[key], "npz");
    }
    for file in &GOOD_FILES[..3] {
        let tensors = read_tensors(&fixture(file), &keys).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(tensors.len(), keys.len());
        for key in &keys {
            let (a, b) = (&tensors[key], &reference[key]);
            assert_eq!(a.shape, b.shape, "{file} {key}");
            let bits = |d: &[f32]| d.iter().map(|v| v.to_bits()).collect::<Vec<u32>>();
            assert!(bits(&a.data) == bits(&b.data), "{file} {key} differs");
        }
    }
}

#[test]
fn read_tensors_reads_a_classifier_key() {
    for file in GOOD_FILES {
        let keys = vec!["classifier.6.weight".to_string()];
        let t = read_tensors(&fixture(file), &keys).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t["classifier.6.weight"].shape, vec![10, 64], "{file}");
    }
}

// ---------------------------------------------------------------- malicious and bad input

fn assert_one_line_naming(err: &WeightsError, path: &Path) -> String {
    let text = err.to_string();
    assert!(!text.contains('\n'), "multi-line error: {text}");
    assert!(text.starts_with(&format!("weights file {}: ", path.display())), "error does not name the file: {text}");
    text
}

#[test]
fn malicious_pickles_are_refused_naming_the_global() {
    for name in ["malicious_legacy.pth", "malicious_zip.pth"] {
        let path = fixture(name);
        let err = load_vgg19(&path).unwrap_err();
        let text = assert_one_line_naming(&err, &path);
        assert!(matches!(err.problem(), Some(Problem::Forbidden(g)) if g == "posix.system"), "{text}");
        assert!(
            text.ends_with("refused to load: the pickle calls posix.system, which a state dict never needs"),
            "{text}"
        );
        let err = read_tensors(&path, &["anything".to_string()]).unwrap_err();
        assert!(matches!(err.problem(), Some(Problem::Forbidden(_))));
    }
}

#[test]
fn hand_written_pickles_with_other_globals_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (module, name) in [("os", "system"), ("builtins", "eval"), ("subprocess", "Popen"), ("torch", "load")] {
        // A legacy container whose state dict pickle starts with a forbidden GLOBAL.
        let mut bytes = legacy_prelude();
        bytes.extend_from_slice(b"\x80\x02c");
        bytes.extend_from_slice(format!("{module}\n{name}\n").as_bytes());
        bytes.extend_from_slice(b"X\x02\x00\x00\x00ls\x85R.");
        let path = dir.path().join("evil.pth");
        fs::write(&path, &bytes).unwrap();
        let err = load_vgg19(&path).unwrap_err();
        let text = assert_one_line_naming(&err, &path);
        assert!(text.contains(&format!("calls {module}.{name},")), "{text}");
    }
}

#[test]
fn a_pickle_that_would_touch_a_marker_file_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("marker-that-must-not-exist");
    let command = format!("touch {}", marker.display());
    for (module, name) in [("posix", "system"), ("os", "system")] {
        // {'features.0.weight': system(command)}, as a legacy container.
        let mut bytes = legacy_prelude();
        bytes.extend_from_slice(b"\x80\x02}X\x11\x00\x00\x00features.0.weightc");
        bytes.extend_from_slice(format!("{module}\n{name}\n").as_bytes());
        bytes.push(b'X');
        bytes.extend_from_slice(&(command.len() as u32).to_le_bytes());
        bytes.extend_from_slice(command.as_bytes());
        bytes.extend_from_slice(b"\x85Rs.\x80\x02].");
        let path = dir.path().join("evil.pth");
        fs::write(&path, &bytes).unwrap();
        let err = load_vgg19(&path).unwrap_err();
        assert!(matches!(err.problem(), Some(Problem::Forbidden(_))), "{err}");
        assert!(!marker.exists(), "the pickle ran code");
    }
}

/// Magic number, protocol version and an empty sys_info, as the legacy container starts.
fn legacy_prelude() -> Vec<u8> {
    let mut b = vec![0x80, 0x02, 0x8a, 0x0a];
    b.extend_from_slice(&[0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]);
    b.extend_from_slice(b".\x80\x02M\xe9\x03.\x80\x02}.");
    b
}

#[test]
fn bad_inputs_give_one_line_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent.pth");
    let empty = dir.path().join("empty.pth");
    fs::write(&empty, b"").unwrap();
    let random = dir.path().join("random.pth");
    fs::write(&random, xorshift_bytes(7, 4096)).unwrap();
    let text_file = dir.path().join("notes.txt");
    fs::write(&text_file, "these are not weights\n").unwrap();
    let folder = dir.path().join("folder.pth");
    fs::create_dir(&folder).unwrap();
    let zip_of_other = dir.path().join("other.zip");
    write_zip(&zip_of_other, &[("hello.txt", b"hi".to_vec())]);
    for path in [&missing, &empty, &random, &text_file, &folder, &zip_of_other] {
        let err = load_vgg19(path).unwrap_err();
        assert_one_line_naming(&err, path);
    }
    for path in [&empty, &random, &text_file, &zip_of_other] {
        let err = load_vgg19(path).unwrap_err();
        assert!(err.to_string().ends_with("not a PyTorch or NumPy weights file"), "{err}");
    }
}

#[test]
fn truncated_copies_of_every_good_file_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let keys = vec!["classifier.6.bias".to_string()];
    for file in GOOD_FILES {
        let bytes = fs::read(fixture(file)).unwrap();
        let n = bytes.len();
        for cut in [0, 3, 10, 30, 100, 1000, 3000, 5000, 6000, n / 2, n - 1000, n - 100, n - 1] {
            let path = dir.path().join(format!("cut-{cut}-{file}"));
            fs::write(&path, &bytes[..cut]).unwrap();
            let Err(err) = load_vgg19(&path) else { panic!("{file} cut at {cut} of {n} loaded") };
            assert_one_line_naming(&err, &path);
            assert!(read_tensors(&path, &keys).is_err(), "{file} cut at {cut}");
        }
    }
    // A cut in the storage data of a legacy file says how much was missing.
    let bytes = fs::read(fixture("vgg19_tiny_legacy.pth")).unwrap();
    let path = dir.path().join("legacy-cut.pth");
    fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let text = load_vgg19(&path).unwrap_err().to_string();
    assert!(text.contains("truncated (storage "), "{text}");
}

#[test]
fn a_pth_without_a_key_names_the_missing_key() {
    let dir = tempfile::tempdir().unwrap();
    for file in ["vgg19_tiny_legacy.pth", "vgg19_tiny_2017.pth"] {
        let mut bytes = fs::read(fixture(file)).unwrap();
        let needle = b"features.28.weight";
        let at = bytes.windows(needle.len()).position(|w| w == needle).unwrap();
        bytes[at + needle.len() - 1] = b'X';
        let path = dir.path().join(file);
        fs::write(&path, &bytes).unwrap();
        let err = load_vgg19(&path).unwrap_err();
        let text = assert_one_line_naming(&err, &path);
        assert!(text.ends_with(": missing key features.28.weight"), "{text}");
    }
}

// ---------------------------------------------------------------- npz variants written here

fn write_zip(path: &Path, members: &[(&str, Vec<u8>)]) {
    let file = fs::File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let options = zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, bytes) in members {
        zip.start_file(*name, options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The fixture's tensors, as (key, shape, data).
fn fixture_tensors() -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let keys: Vec<String> = summaries().into_iter().map(|(k, _)| k).collect();
    let mut tensors = read_tensors(&fixture("vgg19_tiny.npz"), &keys).unwrap();
    keys.into_iter()
        .map(|k| {
            let t = tensors.remove(&k).unwrap();
            (k, t.shape, t.data)
        })
        .collect()
}

/// Writes an npz of the fixture's tensors after `edit` changed the list of
/// (member name, npy bytes).
fn npz_variant(dir: &Path, name: &str, edit: impl FnOnce(&mut Vec<(String, Vec<u8>)>)) -> PathBuf {
    let mut members: Vec<(String, Vec<u8>)> = fixture_tensors()
        .into_iter()
        .map(|(k, shape, data)| (format!("{k}.npy"), npy("<f4", &shape, &f32_bytes(&data))))
        .collect();
    edit(&mut members);
    let path = dir.join(name);
    let refs: Vec<(&str, Vec<u8>)> = members.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    write_zip(&path, &refs);
    path
}

fn replace_member(members: &mut [(String, Vec<u8>)], key: &str, bytes: Vec<u8>) {
    let slot = members.iter_mut().find(|(n, _)| n == &format!("{key}.npy")).unwrap();
    slot.1 = bytes;
}

#[test]
fn npz_written_here_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = npz_variant(dir.path(), "same.npz", |_| {});
    let a = load_vgg19(&path).unwrap();
    let b = load_vgg19(&fixture("vgg19_tiny.npz")).unwrap();
    assert_eq!(a, b);
}

#[test]
fn npz_without_a_key_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = npz_variant(dir.path(), "missing.npz", |m| m.retain(|(n, _)| n != "features.28.weight.npy"));
    let err = load_vgg19(&path).unwrap_err();
    let text = assert_one_line_naming(&err, &path);
    assert!(text.ends_with(": missing key features.28.weight"), "{text}");
}

#[test]
fn wrong_shapes_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let five = npz_variant(dir.path(), "five.npz", |m| {
        let data = f32_bytes(&vec![0.1; 4 * 3 * 5 * 5]);
        replace_member(m, "features.0.weight", npy("<f4", &[4, 3, 5, 5], &data));
    });
    let text = load_vgg19(&five).unwrap_err().to_string();
    assert!(text.contains("features.0.weight has shape [4, 3, 5, 5]"), "{text}");
    let chain = npz_variant(dir.path(), "chain.npz", |m| {
        let data = f32_bytes(&vec![0.1; 4 * 5 * 3 * 3]);
        replace_member(m, "features.2.weight", npy("<f4", &[4, 5, 3, 3], &data));
    });
    let text = load_vgg19(&chain).unwrap_err().to_string();
    assert!(text.contains("features.2.weight has shape [4, 5, 3, 3], expected [out, 4, 3, 3]"), "{text}");
    let bias = npz_variant(dir.path(), "bias.npz", |m| {
        replace_member(m, "features.0.bias", npy("<f4", &[5], &f32_bytes(&[0.0; 5])));
    });
    let text = load_vgg19(&bias).unwrap_err().to_string();
    assert!(text.contains("features.0.bias has shape [5]"), "{text}");
}

#[test]
fn non_finite_values_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let tensors = fixture_tensors();
    let (_, shape, data) = tensors.iter().find(|(k, _, _)| k == "features.5.weight").unwrap();
    for (value, what) in [(f32::NAN, "NaN"), (f32::INFINITY, "an infinity")] {
        let mut data = data.clone();
        data[17] = value;
        let path = npz_variant(dir.path(), &format!("bad-{what}.npz"), |m| {
            replace_member(m, "features.5.weight", npy("<f4", shape, &f32_bytes(&data)));
        });
        let err = load_vgg19(&path).unwrap_err();
        let text = assert_one_line_naming(&err, &path);
        assert!(text.ends_with(&format!(": features.5.weight holds {what}")), "{text}");
    }
}

#[test]
fn float64_is_converted_and_integers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let tensors = fixture_tensors();
    let f64_path = dir.path().join("f64.npz");
    let members: Vec<(String, Vec<u8>)> = tensors
        .iter()
        .map(|(k, shape, data)| {
            let bytes: Vec<u8> = data.iter().flat_map(|&v| f64::from(v).to_le_bytes()).collect();
            (format!("{k}.npy"), npy("<f8", shape, &bytes))
        })
        .collect();
    let refs: Vec<(&str, Vec<u8>)> = members.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    write_zip(&f64_path, &refs);
    assert_eq!(load_vgg19(&f64_path).unwrap(), load_vgg19(&fixture("vgg19_tiny.npz")).unwrap());
    for descr in ["<i8", "|u1", ">f4", "<c8"] {
        let path = npz_variant(dir.path(), "int.npz", |m| {
            let size: usize = descr[2..].parse().unwrap();
            replace_member(m, "features.0.bias", npy(descr, &[4], &vec![0u8; 4 * size]));
        });
        let err = load_vgg19(&path).unwrap_err();
        let text = assert_one_line_naming(&err, &path);
        assert!(text.contains("features.0.bias holds"), "{text}");
        assert!(matches!(err.problem(), Some(Problem::BadDtype { .. })), "{text}");
    }
}

// ---------------------------------------------------------------- never panic

fn xorshift(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

fn xorshift_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut s = seed;
    (0..n).map(|_| xorshift(&mut s) as u8).collect()
}

#[test]
fn random_mutations_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let keys: Vec<String> = summaries().into_iter().map(|(k, _)| k).collect();
    let mut outcomes = [0usize; 2];
    for file in GOOD_FILES.iter().chain(&["malicious_legacy.pth", "malicious_zip.pth"]) {
        let original = fs::read(fixture(file)).unwrap();
        let path = dir.path().join(file);
        for round in 0..200 {
            let bytes = mutate(&original, &mut state);
            fs::write(&path, &bytes).unwrap();
            let result = std::panic::catch_unwind(|| {
                let a = load_vgg19(&path).is_ok();
                let b = read_tensors(&path, &keys).is_ok();
                a && b
            });
            match result {
                Ok(ok) => outcomes[usize::from(ok)] += 1,
                Err(_) => {
                    let kept = dir.path().join("panicked.bin");
                    fs::write(&kept, &bytes).unwrap();
                    panic!("{file} mutation {round} panicked");
                }
            }
        }
    }
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
}

/// Flips a few bytes, mostly near the start (pickles, headers) and the end (zip directory),
/// sometimes truncating or writing large numbers.
fn mutate(original: &[u8], state: &mut u64) -> Vec<u8> {
    let mut bytes = original.to_vec();
    let n = bytes.len();
    let edits = 1 + xorshift(state) % 6;
    for _ in 0..edits {
        let r = xorshift(state);
        let at = match r % 4 {
            0 => (xorshift(state) as usize) % n.min(8192),
            1 => n - 1 - (xorshift(state) as usize) % n.min(4096),
            _ => (xorshift(state) as usize) % n,
        };
        match (r >> 8) % 5 {
            0 => bytes[at] = 0xff,
            1 => bytes[at] = 0x00,
            2 => bytes[at] ^= 1 << ((r >> 16) % 8),
            _ => bytes[at] = (r >> 24) as u8,
        }
    }
    if xorshift(state).is_multiple_of(10) {
        let keep = (xorshift(state) as usize) % n;
        bytes.truncate(keep);
    }
    bytes
}

// ---------------------------------------------------------------- downloads

/// Serves each canned response to one connection, in order, then stops.
fn serve(responses: Vec<Vec<u8>>) -> (String, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let handle = thread::spawn(move || {
        for response in responses {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n") {
                match stream.read(&mut byte) {
                    Ok(1) => request.push(byte[0]),
                    _ => break,
                }
            }
            let _ = stream.write_all(&response);
            let _ = stream.flush();
        }
    });
    (base, handle)
}

fn ok_response(body: &[u8], announced: usize) -> Vec<u8> {
    let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {announced}\r\nConnection: close\r\n\r\n").into_bytes();
    r.extend_from_slice(body);
    r
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn folder_entries(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|entries| entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

#[test]
fn download_writes_a_verified_file_and_reports_progress() {
    let body = xorshift_bytes(3, 3 << 20);
    let (base, server) = serve(vec![ok_response(&body, body.len())]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("cache/sub/w.pth");
    let mut events = Vec::new();
    let url = format!("{base}/w.pth");
    let got =
        download(&url, &dest, Some(body.len() as u64), Some(&sha256_hex(&body)), &mut |e| events.push(e)).unwrap();
    server.join().unwrap();
    assert_eq!(got, dest);
    assert_eq!(fs::read(&dest).unwrap(), body);
    assert_eq!(folder_entries(dest.parent().unwrap()), vec!["w.pth".to_string()]);
    assert_eq!(events.first(), Some(&FetchEvent::Started { url, total: Some(body.len() as u64) }));
    let progress = events.iter().filter(|e| matches!(e, FetchEvent::Progress { .. })).count();
    assert!(progress >= 2, "{events:?}");
    assert!(events.contains(&FetchEvent::Verifying));
    assert_eq!(events.last(), Some(&FetchEvent::Done { path: dest.clone() }));
}

#[test]
fn download_with_a_wrong_hash_leaves_nothing() {
    let body = b"not the weights you wanted".to_vec();
    let (base, server) = serve(vec![ok_response(&body, body.len())]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("w.pth");
    let url = format!("{base}/w.pth");
    let err = download(&url, &dest, None, Some(&sha256_hex(b"other")), &mut |_| {}).unwrap_err();
    server.join().unwrap();
    let text = err.to_string();
    assert!(text.starts_with(&format!("download {url}: SHA-256 mismatch")), "{text}");
    assert!(folder_entries(dir.path()).is_empty(), "{:?}", folder_entries(dir.path()));
}

#[test]
fn download_with_a_wrong_size_leaves_nothing() {
    let body = b"twelve bytes".to_vec();
    let (base, server) = serve(vec![ok_response(&body, body.len())]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("w.pth");
    let err = download(&format!("{base}/w.pth"), &dest, Some(13), None, &mut |_| {}).unwrap_err();
    server.join().unwrap();
    assert!(err.to_string().contains("13"), "{err}");
    assert!(folder_entries(dir.path()).is_empty());
}

#[test]
fn download_of_a_truncated_body_keeps_only_the_partial_file() {
    let body = xorshift_bytes(5, 50_000);
    let (base, server) = serve(vec![ok_response(&body, 100_000)]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("w.pth");
    let url = format!("{base}/w.pth");
    // The server is gone after one answer: the retries fail fast, then the error says where
    // the bytes received wait for the next run.
    let options = DownloadOptions { attempts: 2, first_backoff: Duration::from_millis(1), ..Default::default() };
    let err = download_with(&url, &dest, None, None, &options, &mut |_| {}).unwrap_err();
    server.join().unwrap();
    let text = err.to_string();
    assert!(text.starts_with(&format!("download {url}: ")), "{text}");
    assert!(text.contains("w.pth.part"), "{text}");
    assert!(!text.contains('\n'), "{text}");
    assert_eq!(folder_entries(dir.path()), vec!["w.pth.part".to_string()]);
    assert_eq!(fs::read(dir.path().join("w.pth.part")).unwrap(), body);
}

#[test]
fn download_of_an_http_error_names_the_status() {
    let response = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    let (base, server) = serve(vec![response.to_vec()]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("w.pth");
    // A 500 is retried (the server is gone by then); the error names both failures.
    let options = DownloadOptions { attempts: 2, first_backoff: Duration::from_millis(1), ..Default::default() };
    let err = download_with(&format!("{base}/w.pth"), &dest, None, None, &options, &mut |_| {}).unwrap_err();
    server.join().unwrap();
    assert!(err.to_string().contains("500"), "{err}");
    assert!(folder_entries(dir.path()).is_empty());
}

#[test]
fn download_of_a_closed_port_fails_cleanly() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/w.pth", listener.local_addr().unwrap());
    drop(listener);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("w.pth");
    let started = std::time::Instant::now();
    let err = download(&url, &dest, None, None, &mut |_| {}).unwrap_err();
    // A download that cannot start is not retried (no 1+2+4+8 s of backoff) and says what to do.
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert!(matches!(err, WeightsError::Unreachable { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.starts_with(&format!("cannot download {url} (")), "{text}");
    for needed in [dest.display().to_string(), "--weights PATH".into(), "STYLIZE_WEIGHTS".into()] {
        assert!(text.contains(&needed), "{needed} missing in: {text}");
    }
    assert!(!text.contains('\n'), "{text}");
    assert!(folder_entries(dir.path()).is_empty());
}

fn entry_for(url: &str, body: &[u8]) -> ManifestEntry {
    ManifestEntry {
        name: "test".into(),
        file_name: "w.pth".into(),
        url: url.into(),
        size: Some(body.len() as u64),
        sha256: Some(sha256_hex(body)),
        format: "pth".into(),
    }
}

#[test]
fn ensure_weights_downloads_once_then_reuses_the_file() {
    let body = xorshift_bytes(11, 10_000);
    let (base, server) = serve(vec![ok_response(&body, body.len())]);
    let entry = entry_for(&format!("{base}/w.pth"), &body);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("w.pth");
    ensure_weights(&entry, &dest, &mut |_| {}).unwrap();
    server.join().unwrap();
    assert_eq!(fs::read(&dest).unwrap(), body);

    // The server is gone: a second call must not ask for anything.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let entry = entry_for(&format!("http://{}/w.pth", listener.local_addr().unwrap()), &body);
    let mut events = Vec::new();
    let got = ensure_weights(&entry, &dest, &mut |e| events.push(e)).unwrap();
    assert_eq!(got, dest);
    assert!(events.is_empty());
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err(), "ensure_weights made a request");
}

static ENV_LOCK: Mutex<()> = Mutex::new(());

#[test]
fn default_paths_honour_the_environment_and_urls_land_in_the_cache() {
    let _guard = ENV_LOCK.lock().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let entry = stylize::weights::default_entry();
    let set = |k: &str, v: Option<&Path>| unsafe {
        // Only this test changes the environment, under ENV_LOCK.
        match v {
            Some(v) => std::env::set_var(k, v),
            None => std::env::remove_var(k),
        }
    };
    let explicit = dir.path().join("mine.pth");
    set("STYLIZE_WEIGHTS", Some(&explicit));
    assert_eq!(default_weights_path(&entry).unwrap(), explicit);
    set("STYLIZE_WEIGHTS", None);
    set("XDG_CACHE_HOME", Some(dir.path()));
    assert_eq!(default_weights_path(&entry).unwrap(), dir.path().join("stylize/vgg19-dcbb9e9d.pth"));
    set("XDG_CACHE_HOME", None);
    let home = dir.path().join("home");
    set("HOME", Some(&home));
    assert_eq!(default_weights_path(&entry).unwrap(), home.join(".cache/stylize/vgg19-dcbb9e9d.pth"));

    // --weights URL: downloaded into the cache under the URL's file name, then reused.
    set("XDG_CACHE_HOME", Some(dir.path()));
    let body = b"some weights".to_vec();
    let (base, server) = serve(vec![ok_response(&body, body.len())]);
    let url = format!("{base}/models/other.npz?x=1");
    let got = resolve_weights_arg(&url, &mut |_| {}).unwrap();
    server.join().unwrap();
    assert_eq!(got, dir.path().join("stylize/other.npz"));
    assert_eq!(fs::read(&got).unwrap(), body);
    assert_eq!(resolve_weights_arg(&url, &mut |_| {}).unwrap(), got);
    assert_eq!(resolve_weights_arg("/some/file.pth", &mut |_| {}).unwrap(), PathBuf::from("/some/file.pth"));
}
