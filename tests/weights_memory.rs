//! The weights readers read only what each requested tensor needs, and every length a file
//! declares is capped by what the file can hold:
//! - an `.npz` whose members (one requested, one not) are padded with a gigabyte of zeros costs
//!   no more memory than the same file without the padding (peak RSS of a child process);
//! - zip members, `.npy` headers and shapes, pickle frames and `data.pkl` that claim more than
//!   the file holds are refused with one line naming the file, before anything is allocated.

use std::fs::{self, File};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use stylize::net::random_weights;
use stylize::test_support::{npy, npy_f32};
use stylize::weights::{VGG19_CONV_INDICES, load_vgg19, read_tensors, unpickle_bytes};

const TINY_WIDTHS: [usize; 13] = [4, 4, 8, 8, 16, 16, 16, 16, 32, 32, 32, 32, 32];
const GIB: u64 = 1 << 30;
const CHILD_ENV: &str = "STYLIZE_MEMORY_TEST_FILE";

/// One stored zip member: its name, its bytes, and how many zero bytes follow them inside it
/// (written as a hole, so the file is sparse where the file system allows).
struct Member {
    name: String,
    bytes: Vec<u8>,
    zeros: u64,
}

fn crc_of(member: &Member) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&member.bytes);
    let zeros = vec![0u8; 1 << 20];
    let mut left = member.zeros;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        hasher.update(&zeros[..n]);
        left -= n as u64;
    }
    hasher.finalize()
}

/// Writes a zip of stored members by hand (the `zip` crate would write every zero).
fn write_stored_zip(path: &Path, members: &[Member]) {
    let mut file = File::create(path).unwrap();
    let mut central = Vec::new();
    for m in members {
        let offset = file.stream_position().unwrap();
        let size = m.bytes.len() as u64 + m.zeros;
        let size = u32::try_from(size).expect("members under 4 GiB (no zip64 here)");
        let crc = crc_of(m);
        let name = m.name.as_bytes();
        let mut local = Vec::new();
        local.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        for v in [20u16, 0, 0, 0, 0x21] {
            local.extend_from_slice(&v.to_le_bytes());
        }
        for v in [crc, size, size] {
            local.extend_from_slice(&v.to_le_bytes());
        }
        local.extend_from_slice(&(name.len() as u16).to_le_bytes());
        local.extend_from_slice(&0u16.to_le_bytes());
        local.extend_from_slice(name);
        file.write_all(&local).unwrap();
        file.write_all(&m.bytes).unwrap();
        file.seek(SeekFrom::Current(m.zeros as i64)).unwrap();

        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        for v in [20u16, 20, 0, 0, 0, 0x21] {
            central.extend_from_slice(&v.to_le_bytes());
        }
        for v in [crc, size, size] {
            central.extend_from_slice(&v.to_le_bytes());
        }
        for v in [name.len() as u16, 0, 0, 0, 0] {
            central.extend_from_slice(&v.to_le_bytes());
        }
        central.extend_from_slice(&0u32.to_le_bytes());
        central.extend_from_slice(&(offset as u32).to_le_bytes());
        central.extend_from_slice(name);
    }
    let central_at = file.stream_position().unwrap();
    file.write_all(&central).unwrap();
    let mut end = Vec::new();
    end.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    for v in [0u16, 0, members.len() as u16, members.len() as u16] {
        end.extend_from_slice(&v.to_le_bytes());
    }
    end.extend_from_slice(&(central.len() as u32).to_le_bytes());
    end.extend_from_slice(&(central_at as u32).to_le_bytes());
    end.extend_from_slice(&0u16.to_le_bytes());
    file.write_all(&end).unwrap();
}

/// A tiny VGG-19 npz plus an unrequested `classifier.0.weight`; with `padding`, that member and
/// the requested `features.0.weight` each carry `padding` zero bytes after their array.
fn tiny_npz(path: &Path, padding: u64) {
    let mut members = Vec::new();
    for (layer, index) in random_weights(&TINY_WIDTHS, 5).into_iter().zip(VGG19_CONV_INDICES) {
        let shape = [layer.out_channels, layer.in_channels, 3, 3];
        let zeros = if index == 0 { padding } else { 0 };
        members.push(Member {
            name: format!("features.{index}.weight.npy"),
            bytes: npy_f32(&shape, &layer.weight),
            zeros,
        });
        members.push(Member {
            name: format!("features.{index}.bias.npy"),
            bytes: npy_f32(&[layer.out_channels], &layer.bias),
            zeros: 0,
        });
    }
    members.push(Member { name: "classifier.0.weight.npy".into(), bytes: npy_f32(&[2, 2], &[1.0; 4]), zeros: padding });
    write_stored_zip(path, &members);
}

/// Peak resident set (VmHWM) of this process, in bytes.
fn peak_rss() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// Runs [`child_loads_the_file_and_reports_its_peak_memory`] in a new process on `path`.
fn child_peak_rss(path: &Path) -> u64 {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_loads_the_file_and_reports_its_peak_memory", "--ignored", "--nocapture"])
        .env(CHILD_ENV, path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "child failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let line = stdout.lines().find_map(|l| l.strip_prefix("peak_rss=")).unwrap_or_else(|| panic!("{stdout}"));
    line.trim().parse().unwrap()
}

/// Not a test of its own: the child process of the memory test (`--ignored` and the
/// environment variable select it).
#[test]
#[ignore = "run by padded_npz_members_cost_no_memory_beyond_a_normal_run in a child process"]
fn child_loads_the_file_and_reports_its_peak_memory() {
    let path = PathBuf::from(std::env::var_os(CHILD_ENV).expect("run by the memory test"));
    let vgg = load_vgg19(&path).unwrap();
    assert_eq!(vgg.convs.len(), 13);
    assert_eq!(vgg.convs[0].weight, random_weights(&TINY_WIDTHS, 5)[0].weight);
    println!("peak_rss={}", peak_rss());
}

#[test]
fn padded_npz_members_cost_no_memory_beyond_a_normal_run() {
    if !Path::new("/proc/self/status").exists() {
        eprintln!("SKIPPED padded_npz_members_cost_no_memory_beyond_a_normal_run: no /proc (peak RSS unreadable)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (plain, padded) = (dir.path().join("plain.npz"), dir.path().join("padded.npz"));
    tiny_npz(&plain, 0);
    tiny_npz(&padded, GIB);
    assert!(fs::metadata(&padded).unwrap().len() > 2 * GIB);
    let normal = child_peak_rss(&plain);
    let with_padding = child_peak_rss(&padded);
    eprintln!("peak RSS: {normal} bytes plain, {with_padding} bytes padded with 2 x 1 GiB");
    assert!(
        with_padding <= normal + (16 << 20),
        "padding cost memory: {with_padding} bytes peak vs {normal} for the same file without it"
    );
}

// ---------------------------------------------------------------- declared lengths, capped

fn assert_one_line(err: impl std::fmt::Display, path: &Path, needles: &[&str]) {
    let text = err.to_string();
    assert!(!text.contains('\n'), "{text}");
    assert!(text.contains(&path.display().to_string()), "names no file: {text}");
    for n in needles {
        assert!(text.contains(n), "{n:?} missing in: {text}");
    }
}

/// Sets the uncompressed size of `member` in the central directory of a zip file's bytes.
fn patch_declared_size(bytes: &mut [u8], member: &str, size: u32) {
    let at = (0..bytes.len() - 46)
        .find(|&i| bytes[i..].starts_with(b"PK\x01\x02") && bytes[i + 46..].starts_with(member.as_bytes()))
        .unwrap_or_else(|| panic!("{member} not in the central directory"));
    bytes[at + 24..at + 28].copy_from_slice(&size.to_le_bytes());
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

#[test]
fn zip_members_claiming_more_than_the_file_holds_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // npz: a stored member that says it is 2 GiB long in a file of a few KB.
    let path = dir.path().join("liar.npz");
    tiny_npz(&path, 0);
    let mut bytes = fs::read(&path).unwrap();
    patch_declared_size(&mut bytes, "features.0.weight.npy", 0x8000_0000);
    fs::write(&path, &bytes).unwrap();
    let err = load_vgg19(&path).unwrap_err();
    assert_one_line(err, &path, &["features.0.weight.npy", "claims 2147483648 bytes"]);

    // torch zip: data.pkl, and a storage, each claiming 2 GiB.
    let original = fs::read(fixture("vgg19_tiny_zip.pth")).unwrap();
    let names: Vec<String> =
        zip::ZipArchive::new(std::io::Cursor::new(&original)).unwrap().file_names().map(str::to_string).collect();
    let pickle = names.iter().find(|n| n.ends_with("data.pkl")).unwrap();
    // Storage 0 (features.0.weight, the first tensor torch.save wrote): one the loader reads.
    // (`file_names` comes in no set order, and storages past conv5_1 are rightly never read.)
    let storage = names.iter().find(|n| n.ends_with("/data/0")).unwrap();
    for member in [pickle, storage] {
        let mut bytes = original.clone();
        patch_declared_size(&mut bytes, member, 0x8000_0000);
        let path = dir.path().join("liar.pth");
        fs::write(&path, &bytes).unwrap();
        let err = load_vgg19(&path).unwrap_err();
        assert_one_line(err, &path, &[member.as_str(), "claims 2147483648 bytes"]);
    }
}

#[test]
fn npy_headers_and_shapes_beyond_their_member_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, npy_bytes: Vec<u8>| {
        let path = dir.path().join(name);
        write_stored_zip(&path, &[Member { name: "x.npy".into(), bytes: npy_bytes, zeros: 0 }]);
        path
    };
    // A shape of 2^28 floats (1 GiB) over 16 bytes of data.
    let path = write("shape.npz", npy("<f4", &[1 << 28], &[0u8; 16]));
    let err = read_tensors(&path, &["x".to_string()]).unwrap_err();
    assert_one_line(err, &path, &["x needs 1073741824 bytes", "holds"]);

    // A version-2 header that announces 60 KB in a member of 30 bytes.
    let mut header = b"\x93NUMPY\x02\x00".to_vec();
    header.extend_from_slice(&60_000u32.to_le_bytes());
    header.extend_from_slice(b"{'descr': '<f4'");
    let path = write("header.npz", header);
    let err = read_tensors(&path, &["x".to_string()]).unwrap_err();
    assert_one_line(err, &path, &["header needs 60000 bytes"]);
}

#[test]
fn pickle_frames_longer_than_the_input_are_refused() {
    let mut pickle = vec![0x80, 4, 0x95];
    pickle.extend_from_slice(&(1u64 << 40).to_le_bytes());
    pickle.extend_from_slice(b"}.");
    let err = unpickle_bytes(&pickle).unwrap_err();
    assert!(err.to_string().contains("pickle frame of 1099511627776 bytes"), "{err}");
    // An honest frame still reads.
    let mut pickle = vec![0x80, 4, 0x95];
    pickle.extend_from_slice(&2u64.to_le_bytes());
    pickle.extend_from_slice(b"}.");
    assert_eq!(unpickle_bytes(&pickle).unwrap(), 0);
}
