//! Shared by the GPU test suites.
#![allow(dead_code, unused_imports)]

use stylize::gpu::{Context, GpuError, Step};
/// The network's face (`set_image`, `training_step`, ...), a trait both executors implement.
pub use stylize::net::Execute;
pub use stylize::rng::Rng;
pub use stylize::test_support::{gpu_or_skip, rel_err, to_f32, to_f64};

/// The context twice: with the adapter's own dispatch limit, and with the per-dimension workgroup
/// cap lowered to 11 so every kernel's grid is folded (split) across dimensions.
pub fn contexts(test: &str) -> Vec<(String, Context)> {
    let Some(ctx) = gpu_or_skip(test) else {
        return vec![];
    };
    let mut split = gpu_or_skip(test).expect("second context on the same adapter");
    split.set_max_groups_per_dim(11);
    vec![("full grid".into(), ctx), ("split grid (cap 11)".into(), split)]
}

/// A buffer filled with NaN, so that an element the kernel forgets cannot pass.
pub fn poisoned(ctx: &Context, len: usize) -> wgpu::Buffer {
    let buffer = ctx.buffer("poisoned output", len).unwrap();
    ctx.poison(&buffer);
    buffer
}

pub fn upload(ctx: &Context, values: &[f64]) -> wgpu::Buffer {
    ctx.upload("test input", &to_f32(values)).unwrap()
}

pub fn run(ctx: &Context, step: &Step) {
    step.run(ctx).unwrap();
}

pub fn read(ctx: &Context, buffer: &wgpu::Buffer, len: usize) -> Vec<f32> {
    ctx.read(buffer, len).unwrap()
}

pub fn single(kernel: Result<stylize::gpu::Kernel, GpuError>) -> Step {
    let mut step = Step::new();
    step.push(kernel.unwrap());
    step
}

pub const F32_TOL: f64 = 1e-5;

pub fn assert_close(what: &str, out: &[f32], reference: &[f64], tol: f64) {
    let err = rel_err(out, reference);
    assert!(err <= tol, "{what}: relative error {err:e} > {tol:e}");
}

/// The reduced-channel VGG-19 the CLI tests run (tests/fixtures, written by PyTorch).
pub fn tiny_weights() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vgg19_tiny_legacy.pth")
}

/// A `width` x `height` PNG of uniform random 8-bit pixels at `path`.
pub fn random_png(path: &std::path::Path, width: u32, height: u32, seed: u64) {
    let mut rng = Rng::new(seed);
    let img = image::RgbImage::from_fn(width, height, |_, _| {
        image::Rgb([0, 0, 0].map(|_: u8| (rng.uniform() * 255.0) as u8))
    });
    img.save(path).unwrap();
}

/// The `stylize` binary, with the loader's runtime folder set and no `STYLIZE_WEIGHTS` from the
/// caller's environment.
pub fn stylize() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("stylize").unwrap();
    cmd.env("XDG_RUNTIME_DIR", std::env::temp_dir()).env_remove("STYLIZE_WEIGHTS");
    cmd
}

/// stderr's non-blank lines.
pub fn stderr_lines(output: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr).lines().map(str::to_string).filter(|l| !l.trim().is_empty()).collect()
}

/// Exit code `code`, no panic, every `needle` on stderr, no `out_file`; and, with `one_line`,
/// exactly one stderr line.
pub fn assert_failure(
    what: &str,
    output: &std::process::Output,
    code: i32,
    needles: &[&str],
    out_file: &std::path::Path,
    one_line: bool,
) {
    let lines = stderr_lines(output);
    let stderr = lines.join("\n");
    assert_eq!(output.status.code(), Some(code), "{what}: exit status, stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{what}: panicked:\n{stderr}");
    assert!(!out_file.exists(), "{what}: an output file was written");
    if one_line {
        assert_eq!(lines.len(), 1, "{what}: expected one line, got:\n{stderr}");
    }
    for needle in needles {
        assert!(stderr.contains(needle), "{what}: {needle:?} missing from:\n{stderr}");
    }
}

/// Mixed-precision contexts on the adapter's matrix units (the cooperative-matrix kernels), on
/// the full and on a folded grid. Empty after a visible `SKIPPED` where the adapter has no
/// cooperative matrices the kernels use; under `STYLIZE_REQUIRE_MATRIX_UNITS=1` (CI on Mesa 26's
/// lavapipe, the card) that fails instead.
pub fn matrix_contexts(test: &str) -> Vec<(String, Context)> {
    if gpu_or_skip(test).is_none() {
        return vec![];
    }
    let options = stylize::gpu::ContextOptions { precision: stylize::gpu::Precision::Mixed, ..Default::default() };
    let ctx = Context::new(&options).unwrap();
    if ctx.precision.arithmetic != stylize::gpu::Arithmetic::MixedMatrix {
        let why = format!("{test}: SKIPPED: {} has no cooperative matrices the kernels use", ctx.adapter.name);
        assert!(std::env::var_os("STYLIZE_REQUIRE_MATRIX_UNITS").is_none(), "{why}");
        eprintln!("{why}");
        return vec![];
    }
    let mut folded = Context::new(&options).unwrap();
    folded.set_max_groups_per_dim(11);
    let shape = ctx.adapter.matrix_shape.map_or("?", |s| s.name());
    vec![(format!("{shape} matrices, full grid"), ctx), (format!("{shape} matrices, split grid (cap 11)"), folded)]
}

/// The same context with mixed precision emulated in the f32 kernels: the matrix units' operands,
/// rounded bit for bit alike, summed in another order.
pub fn emulated_twin(ctx: &Context) -> Context {
    let options = stylize::gpu::ContextOptions { precision: stylize::gpu::Precision::Mixed, ..Default::default() };
    let mut twin = Context::new(&options).unwrap();
    twin.set_max_groups_per_dim(ctx.max_groups_per_dim());
    twin.precision = stylize::gpu::PrecisionChoice::emulated();
    twin
}

/// Entry points of a recorded step (`conv::conv3x3_split_sum`, ...).
pub fn entries(step: &Step) -> Vec<String> {
    step.kernels().iter().map(|k| k.label().to_string()).collect()
}

/// An observer that asks for and keeps every step's losses, as the run reports them.
#[derive(Default)]
pub struct LossRecord {
    pub losses: Vec<stylize::Losses>,
}

impl stylize::Observer for LossRecord {
    fn wants_losses(&mut self, _step: usize) -> bool {
        true
    }
    fn on_step(
        &mut self,
        _step: usize,
        losses: Option<&stylize::Losses>,
        _image: Option<&stylize::Image>,
    ) -> Result<(), stylize::TransferError> {
        self.losses.push(losses.expect("asked for every step").clone());
        Ok(())
    }
}

/// A plain HTTP/1.0 GET: (status, body).
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    let timeout = std::time::Duration::from_secs(5);
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout).unwrap();
    stream.set_read_timeout(Some(2 * timeout)).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").expect("headers end");
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status code");
    (status, response[split + 4..].to_vec())
}
