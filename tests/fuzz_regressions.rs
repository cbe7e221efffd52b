//! The fuzz targets' inputs as ordinary tests: every seed of `fuzz/seeds/<target>/`, every
//! input kept under `tests/fuzz_regressions/<target>/` (crashes the fuzzer found, once fixed),
//! and a few thousand deterministic mutations of the seeds go through the same entry points
//! as `fuzz/fuzz_targets/`. Nothing may panic, not even inside a decoder whose panic the
//! library catches (a panic hook counts them), and what loads must be consistent.

use std::cell::Cell;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Once;

use stylize::image_io::{MAX_SIDE_PIXELS, load_image, load_image_from_bytes};
use stylize::weights::{
    Tensor, load_vgg19, load_vgg19_from_bytes, read_tensors, read_tensors_from_bytes, unpickle_bytes,
};

thread_local! {
    /// Panics of this thread (one test), caught or not.
    static PANICS: Cell<usize> = const { Cell::new(0) };
}

/// Counts every panic, caught or not, on the thread it happens on. The library's own hook (which
/// keeps a caught decoder panic quiet) is installed first, by one load, so that this one wraps it
/// and counts those panics too.
fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let _ = load_image_from_bytes(b"not an image", Path::new("install the library's hook"));
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.with(|n| n.set(n.get() + 1));
            default(info);
        }));
    });
}

/// A regression input named `upstream-*` panics inside a third-party decoder (a bug not ours to
/// fix, e.g. zune-jpeg's): the library must catch that one panic, quietly.
fn is_upstream(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("upstream-"))
}

/// Runs `f` on an upstream input: exactly one panic, and it is a decoder panic the library caught.
fn expect_upstream_panic(path: &Path, f: impl FnOnce()) {
    let (panics, caught) = (PANICS.with(Cell::get), stylize::image_io::caught_decoder_panics());
    f();
    let seen = (PANICS.with(Cell::get) - panics, stylize::image_io::caught_decoder_panics() - caught);
    assert_eq!(seen, (1, 1), "{}: (panics, caught decoder panics)", path.display());
    PANICS.with(|n| n.set(panics));
}

fn assert_no_panics() {
    assert_eq!(PANICS.with(Cell::get), 0, "a panic happened (see the messages above)");
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The files of `fuzz/seeds/<target>/` and `tests/fuzz_regressions/<target>/`, sorted.
fn inputs(target: &str, with_seeds: bool) -> Vec<(PathBuf, Vec<u8>)> {
    let mut folders = vec![root().join("tests/fuzz_regressions").join(target)];
    if with_seeds {
        folders.push(root().join("fuzz/seeds").join(target));
    }
    let mut files: Vec<PathBuf> = folders
        .iter()
        .filter_map(|f| fs::read_dir(f).ok())
        .flatten()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files.into_iter().map(|p| (p.clone(), fs::read(&p).unwrap())).collect()
}

fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let found = inputs(target, true);
    assert!(!found.is_empty(), "no seeds for {target}");
    found
}

// ---------------------------------------------------------------- the targets' bodies

const EXTRA_KEYS: [&str; 6] = ["extra.t", "extra.f64", "extra.f16", "extra.bf16", "extra.i64", "extra.empty"];

fn check_tensor(tensor: &Tensor) {
    let numel = tensor.shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    assert_eq!(numel, Some(tensor.data.len()), "shape {:?} vs {} values", tensor.shape, tensor.data.len());
}

/// What `fuzz_targets/weights_common.rs` does; true when VGG-19 loaded.
fn run_weights(data: &[u8]) -> bool {
    let vgg = load_vgg19_from_bytes(data);
    if let Ok(vgg) = &vgg {
        for conv in &vgg.convs {
            assert_eq!(conv.weight.len(), conv.out_channels * conv.in_channels * 9);
            assert_eq!(conv.bias.len(), conv.out_channels);
            assert!(conv.weight.iter().chain(&conv.bias).all(|v| v.is_finite()));
        }
    }
    for key in EXTRA_KEYS {
        if let Ok(tensors) = read_tensors_from_bytes(data, &[key.to_string()]) {
            assert_eq!(tensors.len(), 1);
            tensors.values().for_each(check_tensor);
        }
    }
    vgg.is_ok()
}

fn run_pickle(data: &[u8]) -> bool {
    unpickle_bytes(data).is_ok()
}

fn run_image(data: &[u8]) -> bool {
    match load_image_from_bytes(data, Path::new("fuzz-input")) {
        Ok(img) => {
            assert!(img.width <= MAX_SIDE_PIXELS && img.height <= MAX_SIDE_PIXELS);
            assert_eq!(img.data.len(), 3 * img.width as usize * img.height as usize);
            true
        }
        Err(e) => {
            assert!(!e.to_string().contains('\n'), "{e}");
            false
        }
    }
}

// ---------------------------------------------------------------- deterministic mutations

fn xorshift(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

/// One to four libFuzzer-like edits: byte flips, interesting values, little-endian size
/// fields, truncation, insertion, chunk copies, deletions.
fn mutate(original: &[u8], state: &mut u64) -> Vec<u8> {
    const INTERESTING: [u64; 10] = [0, 1, 0x7f, 0x80, 0xff, 0x7fff, 0xffff, 0x7fff_ffff, 0xffff_ffff, u64::MAX];
    let mut b = original.to_vec();
    let edits = 1 + xorshift(state) % 4;
    for _ in 0..edits {
        if b.is_empty() {
            b.push(xorshift(state) as u8);
            continue;
        }
        let r = xorshift(state);
        let at = (r >> 8) as usize % b.len();
        match r % 8 {
            0 => b[at] ^= 1 << ((r >> 40) % 8),
            1 => b[at] = xorshift(state) as u8,
            2 => b[at] = INTERESTING[(r >> 40) as usize % INTERESTING.len()] as u8,
            3 => {
                let v = INTERESTING[(r >> 40) as usize % INTERESTING.len()].to_le_bytes();
                let width = [2usize, 4, 8][(r >> 50) as usize % 3].min(b.len() - at);
                b[at..at + width].copy_from_slice(&v[..width]);
            }
            4 => b.truncate(at),
            5 => b.insert(at, xorshift(state) as u8),
            6 => {
                let from = xorshift(state) as usize % b.len();
                let len = (1 + xorshift(state) as usize % 16).min(b.len() - from).min(b.len() - at);
                let chunk = b[from..from + len].to_vec();
                b[at..at + len].copy_from_slice(&chunk);
            }
            _ => {
                let len = (1 + (r >> 40) as usize % 16).min(b.len() - at);
                b.drain(at..at + len);
            }
        }
    }
    b
}

/// Runs every seed and regression input, then `rounds` mutations of the seeds, through `run`;
/// returns how many runs succeeded.
fn fuzz_like(target: &str, rounds: usize, run: fn(&[u8]) -> bool) -> usize {
    count_panics();
    let (upstream, seeds): (Vec<_>, Vec<_>) = seeds(target).into_iter().partition(|(p, _)| is_upstream(p));
    for (path, bytes) in &upstream {
        expect_upstream_panic(path, || {
            run(bytes);
        });
    }
    let mut ok = seeds.iter().filter(|(_, bytes)| run(bytes)).count();
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ target.len() as u64;
    for round in 0..rounds {
        let (_, original) = &seeds[round % seeds.len()];
        let bytes = mutate(original, &mut state);
        let outcome = std::panic::catch_unwind(|| run(&bytes));
        match outcome {
            Ok(loaded) => ok += usize::from(loaded),
            Err(_) => {
                let kept = std::env::temp_dir().join(format!("stylize-fuzz-{target}-{round}.bin"));
                fs::write(&kept, &bytes).unwrap();
                panic!("{target}: mutation {round} panicked; input kept at {}", kept.display());
            }
        }
    }
    assert_no_panics();
    ok
}

const ROUNDS: usize = 3000;

#[test]
fn pth_legacy_inputs_never_panic() {
    fuzz_like("pth_legacy", ROUNDS, run_weights);
}

#[test]
fn pth_zip_inputs_never_panic() {
    fuzz_like("pth_zip", ROUNDS, run_weights);
}

#[test]
fn npz_inputs_never_panic() {
    fuzz_like("npz", ROUNDS, run_weights);
}

#[test]
fn pickle_inputs_never_panic() {
    fuzz_like("pickle", ROUNDS, run_pickle);
}

#[test]
fn image_inputs_never_panic() {
    fuzz_like("image", ROUNDS, run_image);
}

// ---------------------------------------------------------------- the seeds are what they claim

#[test]
fn every_tiny_weights_seed_loads_the_same_vgg19() {
    count_panics();
    let mut loaded = Vec::new();
    for target in ["pth_legacy", "pth_zip", "npz"] {
        for (path, bytes) in inputs(target, true) {
            if path.file_name().unwrap().to_string_lossy().starts_with("tiny") {
                let vgg = load_vgg19_from_bytes(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert_eq!(vgg.convs.len(), 13);
                loaded.push(vgg);
            }
        }
    }
    assert_eq!(loaded.len(), 6);
    assert!(loaded.windows(2).all(|w| w[0] == w[1]));
    assert_no_panics();
}

#[test]
fn tiny_pth_seeds_hold_the_extra_tensors() {
    let expected: [(&str, Vec<usize>, Vec<f32>); 4] = [
        ("extra.t", vec![3, 2], vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]),
        ("extra.f16", vec![4], vec![0.5, -2.0, 65504.0, 5.960_464_5e-8]),
        ("extra.bf16", vec![2, 2], vec![1.0, -3.5, 0.0, 256.0]),
        ("extra.empty", vec![0, 4], vec![]),
    ];
    for target in ["pth_legacy", "pth_zip"] {
        for (path, bytes) in inputs(target, true) {
            if !path.file_name().unwrap().to_string_lossy().starts_with("tiny") {
                continue;
            }
            for (key, shape, data) in &expected {
                let t = read_tensors_from_bytes(&bytes, &[key.to_string()]).unwrap().remove(*key).unwrap();
                assert_eq!((&t.shape, &t.data), (shape, data), "{key} in {}", path.display());
            }
            let err = read_tensors_from_bytes(&bytes, &["extra.i64".to_string()]).unwrap_err();
            assert!(err.to_string().contains("int64"), "{err}");
        }
    }
}

#[test]
fn byte_entry_points_match_the_path_ones_on_the_fixtures() {
    let fixtures = root().join("tests/fixtures");
    let keys = vec!["features.0.weight".to_string(), "classifier.6.bias".to_string()];
    for name in ["vgg19_tiny.npz", "vgg19_tiny_legacy.pth", "vgg19_tiny_2017.pth", "vgg19_tiny_zip.pth"] {
        let path = fixtures.join(name);
        let bytes = fs::read(&path).unwrap();
        assert_eq!(load_vgg19_from_bytes(&bytes).unwrap(), load_vgg19(&path).unwrap(), "{name}");
        assert_eq!(read_tensors_from_bytes(&bytes, &keys).unwrap(), read_tensors(&path, &keys).unwrap(), "{name}");
    }
    for name in ["malicious_legacy.pth", "malicious_zip.pth"] {
        let path = fixtures.join(name);
        let from_bytes = load_vgg19_from_bytes(&fs::read(&path).unwrap()).unwrap_err();
        let from_path = load_vgg19(&path).unwrap_err();
        assert_eq!(from_path.to_string(), format!("weights file {}: {from_bytes}", path.display()));
    }
}

#[test]
fn every_image_seed_decodes_and_matches_load_image() {
    count_panics();
    for (path, bytes) in inputs("image", true) {
        if path.starts_with(root().join("tests")) {
            continue;
        }
        let img = load_image_from_bytes(&bytes, &path).unwrap_or_else(|e| panic!("{e}"));
        let expected = if path.ends_with("oriented.jpg") { (3, 5) } else { (5, 3) };
        assert_eq!((img.width, img.height), expected, "{}", path.display());
        assert_eq!(img, load_image(&path).unwrap(), "{}", path.display());
    }
    let empty = load_image_from_bytes(&[], Path::new("empty.png")).unwrap_err();
    assert!(empty.to_string().contains("empty.png"), "{empty}");
    assert_no_panics();
}
