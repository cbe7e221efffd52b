//! Helpers shared by the test suites and benchmarks (behind the `testing` cargo feature, which
//! `cargo test` and `cargo bench` turn on through the crate's dev-dependency on itself; a plain
//! build compiles none of this): the relative-error measure the project compares by, GPU
//! acquisition that skips or fails visibly, a tiny network, and weight-file writers.
//! The seeded generator lives in [`crate::rng`], since production code needs it too.

use crate::gpu::{Context, ContextOptions};
use crate::net::vgg::{LayerDef, LayerKind};

/// ||out - reference|| / ||reference||; infinite when anything is NaN or the lengths differ.
pub fn rel_err(out: &[f32], reference: &[f64]) -> f64 {
    if out.len() != reference.len() || out.iter().any(|v| !v.is_finite()) {
        return f64::INFINITY;
    }
    let num: f64 = out.iter().zip(reference).map(|(&o, &r)| (o as f64 - r).powi(2)).sum();
    let den: f64 = reference.iter().map(|r| r * r).sum();
    let err = (num / den).sqrt();
    if err.is_nan() { f64::INFINITY } else { err }
}

/// The same measure between two f64 vectors.
pub fn rel_err_f64(out: &[f64], reference: &[f64]) -> f64 {
    if out.len() != reference.len() || out.iter().any(|v| !v.is_finite()) {
        return f64::INFINITY;
    }
    let num: f64 = out.iter().zip(reference).map(|(o, r)| (o - r).powi(2)).sum();
    let den: f64 = reference.iter().map(|r| r * r).sum();
    let err = (num / den).sqrt();
    if err.is_nan() { f64::INFINITY } else { err }
}

pub fn to_f32(values: &[f64]) -> Vec<f32> {
    values.iter().map(|&v| v as f32).collect()
}

pub fn to_f64(values: &[f32]) -> Vec<f64> {
    values.iter().map(|&v| v as f64).collect()
}

/// A GPU context for a test, or `None` (after printing a visible skip line) when no adapter
/// exists. With `STYLIZE_REQUIRE_GPU=1` a missing adapter fails the test instead.
pub fn gpu_or_skip(test: &str) -> Option<Context> {
    match Context::new(&ContextOptions::default()) {
        Ok(ctx) => Some(ctx),
        Err(err) => {
            if std::env::var("STYLIZE_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("{test}: STYLIZE_REQUIRE_GPU=1 but no GPU is usable: {err}");
            }
            eprintln!("SKIPPED {test}: no GPU adapter ({err}); set STYLIZE_REQUIRE_GPU=1 to fail instead");
            None
        }
    }
}

/// A small network for composed tests: three convolutions, two pools (floors on odd sizes).
pub fn tiny_table() -> Vec<LayerDef> {
    use LayerKind::*;
    let l = |index, name, kind| LayerDef { index, name, kind };
    vec![
        l(0, "conv1_1", Conv),
        l(1, "relu1_1", Relu),
        l(2, "conv1_2", Conv),
        l(3, "relu1_2", Relu),
        l(4, "pool1", MaxPool),
        l(5, "conv2_1", Conv),
        l(6, "relu2_1", Relu),
        l(7, "pool2", MaxPool),
        l(8, "conv3_1", Conv),
        l(9, "relu3_1", Relu),
    ]
}

/// Writes an `.npz` (uncompressed, like `numpy.savez`) of little-endian f32 arrays, for tests that
/// need weight files with a chosen defect.
pub fn write_npz(path: &std::path::Path, arrays: &[(&str, &[usize], &[f32])]) -> std::io::Result<()> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path)?);
    let options = zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, shape, data) in arrays {
        zip.start_file(format!("{name}.npy"), options)?;
        zip.write_all(&npy_f32(shape, data))?;
    }
    zip.finish()?;
    Ok(())
}

/// A version-1 `.npy` file holding `data` as `<f4` with `shape`.
pub fn npy_f32(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    npy("<f4", shape, &bytes)
}

/// A version-1 `.npy` file with dtype `descr` (e.g. `<f4`, `<f8`, `<i8`), `shape` and raw `data`.
pub fn npy(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_text}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// VGG-19 weights (torchvision key names) as `.npz`, for the given output widths.
pub fn write_vgg19_npz(path: &std::path::Path, widths: &[usize], seed: u64) -> std::io::Result<()> {
    write_convs_npz(path, &crate::weights::VGG19_CONV_INDICES, widths, seed)
}

/// Random convolutions of the given output widths at `features.{i}` for the given indices
/// (torchvision key names), as `.npz`.
pub fn write_convs_npz(path: &std::path::Path, indices: &[usize], widths: &[usize], seed: u64) -> std::io::Result<()> {
    let layers = crate::net::random_weights(widths, seed);
    let keys: Vec<(String, String)> =
        indices.iter().map(|i| (format!("features.{i}.weight"), format!("features.{i}.bias"))).collect();
    let shapes: Vec<([usize; 4], [usize; 1])> =
        layers.iter().map(|l| ([l.out_channels, l.in_channels, 3, 3], [l.out_channels])).collect();
    let mut arrays: Vec<(&str, &[usize], &[f32])> = Vec::new();
    for ((layer, (wk, bk)), (ws, bs)) in layers.iter().zip(&keys).zip(&shapes) {
        arrays.push((wk, ws, &layer.weight));
        arrays.push((bk, bs, &layer.bias));
    }
    write_npz(path, &arrays)
}
