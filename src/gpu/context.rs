//! The device context: adapter choice, the adapter's own limits, buffers, readback and error capture.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::Registry;
use super::precision::{
    COOP_WORKGROUP, KERNEL_MATRIX_SHAPES, MATRIX_FEATURES, MatrixShape, Precision, PrecisionChoice,
    adapter_matrix_shape, describe_matrix,
};

/// Everything that can go wrong on the GPU side, as values rather than panics.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("no GPU adapter found{0}")]
    NoAdapter(String),
    #[error("could not open the GPU device on {adapter}: {message}")]
    RequestDevice { adapter: String, message: String },
    #[error("shader {shader} failed validation: {message}")]
    Shader { shader: String, message: String },
    #[error("GPU error: {0}")]
    Device(String),
    #[error("GPU device lost: {0}")]
    DeviceLost(String),
    #[error("GPU did not finish within {0:?}")]
    Timeout(Duration),
    #[error("{what} needs {needed} bytes in one buffer, but this adapter allows at most {limit}")]
    TooLarge { what: String, needed: u64, limit: u64 },
}

/// How to choose and open a device. `Default` honours `WGPU_BACKEND`, `WGPU_ADAPTER_NAME` and
/// `WGPU_POWER_PREF` the way wgpu's own tools do.
#[derive(Clone, Debug)]
pub struct ContextOptions {
    /// Backends to consider; `None` means `WGPU_BACKEND` or all.
    pub backends: Option<wgpu::Backends>,
    /// Case-insensitive substring of the adapter name; `None` means `WGPU_ADAPTER_NAME` or any.
    pub adapter_name: Option<String>,
    /// Longest wait for one submission before it is reported as a hang.
    pub wait_timeout: Duration,
    /// Arithmetic of the products (`--precision`), resolved against the adapter. The default
    /// here is f32, the reference (tests and callers that open a bare context);
    /// `Options::precision` (the CLI's and the library's runs) defaults to auto.
    pub precision: Precision,
}

impl Default for ContextOptions {
    fn default() -> Self {
        Self { backends: None, adapter_name: None, wait_timeout: Duration::from_secs(600), precision: Precision::F32 }
    }
}

/// One line describing an adapter, for `stylize devices` and error messages.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
    pub max_compute_workgroup_storage_size: u32,
    pub max_compute_workgroups_per_dimension: u32,
    pub timestamp_queries: bool,
    /// Cooperative matrices (matrix units) the mixed kernels use (`precision::matrix_shape`):
    /// `matrix_shape` is some.
    pub matrix_units: bool,
    /// The shape the mixed kernels use on them, `None` without usable ones.
    pub matrix_shape: Option<MatrixShape>,
    /// The smallest and largest subgroup (invocations run in lockstep) the adapter reports.
    pub subgroup_sizes: (u32, u32),
    /// Every cooperative-matrix configuration the adapter lists (`precision::describe_matrix`).
    pub matrix_configs: Vec<String>,
}

/// Names of software renderers, for drivers that do not report `DeviceType::Cpu`.
const CPU_ADAPTER_NAMES: [&str; 5] = ["llvmpipe", "lavapipe", "swiftshader", "microsoft basic render", "warp"];

/// The kind of processor an adapter is, for ops that have a kernel for each: CPU implementations
/// run best without workgroup memory or barriers, GPUs with tiles staged in workgroup memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdapterClass {
    Cpu,
    Gpu,
}

impl AdapterSummary {
    /// Whether this adapter runs on the CPU (Mesa's lavapipe/llvmpipe, WARP, SwiftShader):
    /// wgpu says `DeviceType::Cpu`, or the name is a known software renderer's.
    pub fn is_cpu(&self) -> bool {
        let name = self.name.to_lowercase();
        self.reports_cpu() || CPU_ADAPTER_NAMES.iter().any(|n| name.contains(n))
    }

    /// The class kernels are chosen for: `Cpu` where wgpu says `DeviceType::Cpu` (a driver that
    /// hides it behind another type keeps the GPU kernels, unlike `is_cpu`'s notice).
    pub fn class(&self) -> AdapterClass {
        if self.reports_cpu() { AdapterClass::Cpu } else { AdapterClass::Gpu }
    }

    /// What `--precision auto` runs here, and why (`PrecisionChoice::resolve`).
    pub fn auto_precision(&self) -> PrecisionChoice {
        PrecisionChoice::resolve(Precision::Auto, self.matrix_shape, self.class())
    }

    /// What the cooperative-matrix kernels use on this adapter, in words: the shape, and the
    /// subgroups a 32-invocation workgroup is made of; or why they cannot run.
    pub fn matrix_use(&self) -> String {
        let (min, max) = self.subgroup_sizes;
        let subgroups = if min == max { format!("{min}") } else { format!("{min}..{max}") };
        match self.matrix_shape {
            Some(shape) => {
                let per_group = |size: u32| (COOP_WORKGROUP / size.clamp(1, COOP_WORKGROUP)).max(1);
                let count = if per_group(min) == per_group(max) {
                    format!("{}", per_group(min))
                } else {
                    format!("{}..{}", per_group(max), per_group(min))
                };
                format!(
                    "the mixed kernels use {} f16 cooperative matrices with f32 accumulators, in workgroups of {COOP_WORKGROUP} invocations ({count} subgroups of {subgroups})",
                    shape.name()
                )
            }
            None if self.matrix_configs.is_empty() => format!("none (subgroups of {subgroups})"),
            None => format!(
                "none the mixed kernels can use (they need {} f16->f32 with every subgroup of a {COOP_WORKGROUP}-invocation workgroup owning whole 2x2 blocks of matrices; subgroups here: {subgroups})",
                KERNEL_MATRIX_SHAPES.map(|s| s.name()).join(" or ")
            ),
        }
    }

    fn reports_cpu(&self) -> bool {
        self.device_type == format!("{:?}", wgpu::DeviceType::Cpu)
    }
}

fn summarize(adapter: &wgpu::Adapter) -> AdapterSummary {
    let info = adapter.get_info();
    let limits = adapter.limits();
    let matrix_shape = adapter_matrix_shape(adapter);
    AdapterSummary {
        name: info.name.clone(),
        backend: format!("{:?}", info.backend),
        device_type: format!("{:?}", info.device_type),
        driver: format!("{} {}", info.driver, info.driver_info).trim().to_string(),
        max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
        max_buffer_size: limits.max_buffer_size,
        max_compute_workgroup_storage_size: limits.max_compute_workgroup_storage_size,
        max_compute_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
        timestamp_queries: adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY),
        matrix_units: matrix_shape.is_some(),
        matrix_shape,
        subgroup_sizes: (info.subgroup_min_size, info.subgroup_max_size),
        matrix_configs: adapter.cooperative_matrix_properties().iter().map(describe_matrix).collect(),
    }
}

fn instance_for(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

fn chosen_backends(opts: &ContextOptions) -> wgpu::Backends {
    opts.backends.or_else(wgpu::Backends::from_env).unwrap_or(wgpu::Backends::all())
}

/// Every adapter the chosen backends offer.
pub fn list_adapters(opts: &ContextOptions) -> Vec<AdapterSummary> {
    let instance = instance_for(chosen_backends(opts));
    let adapters = pollster::block_on(instance.enumerate_adapters(chosen_backends(opts)));
    adapters.iter().map(summarize).collect()
}

fn pick_adapter(opts: &ContextOptions) -> Result<wgpu::Adapter, GpuError> {
    let backends = chosen_backends(opts);
    let instance = instance_for(backends);
    let wanted_name =
        opts.adapter_name.clone().or_else(|| std::env::var("WGPU_ADAPTER_NAME").ok()).map(|n| n.to_lowercase());
    if let Some(wanted) = wanted_name {
        let adapters = pollster::block_on(instance.enumerate_adapters(backends));
        let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
        return adapters.into_iter().find(|a| a.get_info().name.to_lowercase().contains(&wanted)).ok_or_else(|| {
            GpuError::NoAdapter(format!(
                " whose name contains \"{wanted}\" (available: {})",
                if names.is_empty() { "none".to_string() } else { names.join(", ") }
            ))
        });
    }
    pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::from_env().unwrap_or(wgpu::PowerPreference::HighPerformance),
        ..Default::default()
    }))
    .map_err(|e| GpuError::NoAdapter(format!(" for backends {backends:?} ({e})")))
}

/// The smaller of a device's storage-binding and buffer-size limits, in bytes.
fn binding_limit(limits: &wgpu::Limits) -> u64 {
    limits.max_storage_buffer_binding_size.min(limits.max_buffer_size)
}

/// The device, its queue, the adapter's limits and the pipeline registry. Errors that wgpu
/// reports asynchronously (validation, out of memory, device loss) are collected and turned
/// into `Err` at the next wait.
pub struct Context {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter: AdapterSummary,
    pub limits: wgpu::Limits,
    pub timestamp_queries: bool,
    registry: Registry,
    pending_error: Arc<Mutex<Option<GpuError>>>,
    wait_timeout: Duration,
    max_groups_per_dim: u32,
    /// A kernel formulation forced by name, for benchmarks and tests: `KERNEL_OVERRIDE_VAR` as
    /// the context opened. The ops that offer several formulations read it and reject names
    /// they do not know; `None` lets them choose by the adapter's class.
    pub kernel_override: Option<String>,
    /// The products' arithmetic (f32, or f16 operands with f32 accumulation) and why; tests
    /// may replace it before building kernels.
    pub precision: PrecisionChoice,
    /// Every buffer `shared_scratch` has made, the current (largest) last.
    shared_scratch: Mutex<Vec<wgpu::Buffer>>,
    /// The words `shared_words` hands out (made on first use).
    shared_words: Mutex<Option<wgpu::Buffer>>,
    /// Bytes of the largest band an array too large for one binding is split into: the binding
    /// limit, or less where tests ask for many bands on small images.
    band_limit: u64,
}

impl Context {
    /// Opens a device on the chosen adapter with the adapter's own limits, so that large
    /// activations fit (wgpu's defaults cap storage bindings at 128 MiB).
    pub fn new(opts: &ContextOptions) -> Result<Self, GpuError> {
        let adapter = pick_adapter(opts)?;
        let summary = summarize(&adapter);
        let limits = adapter.limits();
        let band_limit = binding_limit(&limits);
        let timestamp_queries = summary.timestamp_queries;
        let mut precision = PrecisionChoice::resolve(opts.precision, summary.matrix_shape, summary.class());
        let (device, queue) = open_device(&adapter, &limits, opts.precision, &mut precision)
            .map_err(|e| GpuError::RequestDevice { adapter: summary.name.clone(), message: e.to_string() })?;
        let pending_error = capture_errors(&device);
        Ok(Self {
            device,
            queue,
            max_groups_per_dim: limits.max_compute_workgroups_per_dimension,
            adapter: summary,
            limits,
            timestamp_queries,
            registry: Registry::default(),
            pending_error,
            wait_timeout: opts.wait_timeout,
            kernel_override: std::env::var(KERNEL_OVERRIDE_VAR).ok(),
            precision,
            shared_scratch: Mutex::new(Vec::new()),
            shared_words: Mutex::new(None),
            band_limit,
        })
    }

    /// The pipeline registry shared by every op.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Largest workgroup count one dispatch may have in one dimension.
    pub fn max_groups_per_dim(&self) -> u32 {
        self.max_groups_per_dim
    }

    /// Lowers the per-dimension workgroup cap (tests use it to exercise split dispatches on
    /// small problems). Kernels built afterwards fold their grids under the new cap.
    #[cfg(feature = "testing")]
    pub fn set_max_groups_per_dim(&mut self, cap: u32) {
        self.max_groups_per_dim = cap.clamp(1, self.limits.max_compute_workgroups_per_dimension);
    }

    /// Bytes one storage buffer may hold and bind: the smaller of the adapter's two limits.
    pub fn binding_limit(&self) -> u64 {
        binding_limit(&self.limits)
    }

    /// Bytes of the largest band of an array stored in bands (`ops::bands`): the binding limit,
    /// unless a test lowered it.
    pub fn band_limit(&self) -> u64 {
        self.band_limit
    }

    /// Lowers the binding limit (tests use it to put small images past it): buffers made
    /// afterwards must fit it, and bands and tiling plan for it.
    #[cfg(feature = "testing")]
    pub fn set_binding_limit(&mut self, bytes: u64) {
        let bytes = bytes.clamp(4, self.binding_limit());
        self.limits.max_storage_buffer_binding_size = bytes;
        self.limits.max_buffer_size = bytes;
        self.band_limit = self.band_limit.min(bytes);
    }

    /// Lowers the band size (tests use it to split small images into many bands). Arrays made
    /// afterwards are split under the new size.
    #[cfg(feature = "testing")]
    pub fn set_band_limit(&mut self, bytes: u64) {
        self.band_limit = bytes.clamp(4, self.binding_limit());
    }

    fn check_size(&self, what: &str, bytes: u64) -> Result<(), GpuError> {
        let limit = self.binding_limit();
        if bytes > limit {
            return Err(GpuError::TooLarge { what: what.to_string(), needed: bytes, limit });
        }
        Ok(())
    }

    /// A storage buffer of `len` f32 values (contents unspecified until written).
    pub fn buffer(&self, label: &str, len: usize) -> Result<wgpu::Buffer, GpuError> {
        let bytes = (len.max(1) * 4) as u64;
        self.check_size(label, bytes)?;
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }))
    }

    /// A scratch buffer of at least `len` floats shared by every kernel that asks: for partial
    /// results that the next dispatch consumes (split-K sums), which is safe because all work
    /// runs in order on one queue. Grown when a larger one is asked for, never shrunk; kernels
    /// recorded earlier keep the smaller one they were given.
    pub fn shared_scratch(&self, len: usize) -> Result<wgpu::Buffer, GpuError> {
        let mut made = self.shared_scratch.lock().expect("scratch list");
        if let Some(current) = made.last()
            && current.size() >= (len.max(1) * 4) as u64
        {
            return Ok(current.clone());
        }
        let buffer = self.buffer("shared scratch", len)?;
        made.push(buffer.clone());
        Ok(buffer)
    }

    /// A buffer of SHARED_WORDS words shared by every kernel that asks, for values one dispatch
    /// writes and the next ones read (the ranges of mixed-precision operands), safe for the
    /// reason `shared_scratch` is: all work runs in order on one queue.
    pub fn shared_words(&self) -> Result<wgpu::Buffer, GpuError> {
        let mut made = self.shared_words.lock().expect("shared words");
        if let Some(buffer) = made.as_ref() {
            return Ok(buffer.clone());
        }
        let buffer = self.buffer("shared words", SHARED_WORDS)?;
        *made = Some(buffer.clone());
        Ok(buffer)
    }

    /// Bytes of every buffer `shared_scratch` has made.
    pub fn shared_scratch_bytes(&self) -> u64 {
        self.shared_scratch.lock().expect("scratch list").iter().map(|b| b.size()).sum()
    }

    /// A storage buffer holding `data`.
    pub fn upload(&self, label: &str, data: &[f32]) -> Result<wgpu::Buffer, GpuError> {
        let buffer = self.buffer(label, data.len())?;
        if !data.is_empty() {
            self.queue.write_buffer(&buffer, 0, bytemuck::cast_slice(data));
        }
        Ok(buffer)
    }

    /// A storage buffer holding `u32` words (bit masks, pooling codes).
    #[cfg(feature = "testing")]
    pub fn upload_words(&self, label: &str, data: &[u32]) -> Result<wgpu::Buffer, GpuError> {
        let buffer = self.buffer(label, data.len())?;
        if !data.is_empty() {
            self.queue.write_buffer(&buffer, 0, bytemuck::cast_slice(data));
        }
        Ok(buffer)
    }

    /// Overwrites the start of `buffer` with `data`.
    pub fn write(&self, buffer: &wgpu::Buffer, data: &[f32]) {
        self.queue.write_buffer(buffer, 0, bytemuck::cast_slice(data));
    }

    /// Fills a buffer with NaN (tests poison outputs so an unwritten element cannot pass).
    #[cfg(feature = "testing")]
    pub fn poison(&self, buffer: &wgpu::Buffer) {
        let nan = vec![f32::NAN; (buffer.size() / 4) as usize];
        self.queue.write_buffer(buffer, 0, bytemuck::cast_slice(&nan));
    }

    /// Copies the first `len` values of `buffer` back to the CPU, waiting for all work before it.
    pub fn read(&self, buffer: &wgpu::Buffer, len: usize) -> Result<Vec<f32>, GpuError> {
        self.read_pod(buffer, len)
    }

    /// Copies the first `len` `u32` words of `buffer` back to the CPU (bit masks, pooling codes).
    #[cfg(feature = "testing")]
    pub fn read_words(&self, buffer: &wgpu::Buffer, len: usize) -> Result<Vec<u32>, GpuError> {
        self.read_pod(buffer, len)
    }

    fn read_pod<T: bytemuck::Pod>(&self, buffer: &wgpu::Buffer, len: usize) -> Result<Vec<T>, GpuError> {
        let bytes = (len * std::mem::size_of::<T>()) as u64;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes.max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, bytes);
        self.queue.submit([encoder.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        staging.slice(..bytes).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        match rx.try_recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(GpuError::Device(format!("readback failed: {e}"))),
            Err(_) => return Err(GpuError::Device("readback never completed".into())),
        }
        let values = {
            let view = staging
                .slice(..bytes)
                .get_mapped_range()
                .map_err(|e| GpuError::Device(format!("readback failed: {e}")))?;
            bytemuck::cast_slice::<u8, T>(&view).to_vec()
        };
        staging.unmap();
        Ok(values)
    }

    /// Blocks until all submitted work is done (bounded by the context's timeout) and turns any
    /// error wgpu reported meanwhile into `Err`.
    pub fn wait(&self) -> Result<(), GpuError> {
        let polled =
            self.device.poll(wgpu::PollType::Wait { submission_index: None, timeout: Some(self.wait_timeout) });
        self.take_error()?;
        match polled {
            Ok(_) => Ok(()),
            Err(wgpu::PollError::Timeout) => Err(GpuError::Timeout(self.wait_timeout)),
            Err(e) => Err(GpuError::Device(e.to_string())),
        }
    }

    /// The first asynchronous error since the last check, if any.
    pub fn take_error(&self) -> Result<(), GpuError> {
        match self.pending_error.lock().expect("error sink").take() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

/// Requests the device with the adapter's `limits`, timestamp queries where offered, and the
/// cooperative-matrix features where `precision` chose them. Under `requested` auto, a driver
/// that refuses those features gets the f32 device instead and `precision` says why.
fn open_device(
    adapter: &wgpu::Adapter,
    limits: &wgpu::Limits,
    requested: Precision,
    precision: &mut PrecisionChoice,
) -> Result<(wgpu::Device, wgpu::Queue), wgpu::RequestDeviceError> {
    let base = if adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY) {
        wgpu::Features::TIMESTAMP_QUERY
    } else {
        wgpu::Features::empty()
    };
    let request = |matrix: bool| {
        let features = if matrix { base | MATRIX_FEATURES } else { base };
        pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("stylize"),
            required_features: features,
            required_limits: limits.clone(),
            // SAFETY: wgpu asks callers of experimental features to accept that they may have
            // bugs; only the cooperative-matrix kernels use one, and only when mixed is chosen.
            experimental_features: if matrix {
                unsafe { wgpu::ExperimentalFeatures::enabled() }
            } else {
                wgpu::ExperimentalFeatures::disabled()
            },
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
    };
    let matrix = precision.arithmetic == super::Arithmetic::MixedMatrix;
    match request(matrix) {
        // `auto` must never cost a run: a driver that lists matrix units but refuses the
        // experimental features gets the f32 device instead, and the reason says so.
        Err(refused) if matrix && requested == super::Precision::Auto => {
            *precision = PrecisionChoice {
                requested,
                arithmetic: super::Arithmetic::F32,
                reason: format!("f32 (auto: the device refused cooperative matrices: {refused})"),
            };
            request(false)
        }
        other => other,
    }
}

/// Collects the errors wgpu reports asynchronously on `device` (validation, out of memory, device
/// loss; the first one wins) for `Context::take_error`.
fn capture_errors(device: &wgpu::Device) -> Arc<Mutex<Option<GpuError>>> {
    let pending_error: Arc<Mutex<Option<GpuError>>> = Arc::default();
    let sink = pending_error.clone();
    device.on_uncaptured_error(Arc::new(move |err: wgpu::Error| {
        let mapped = match err {
            wgpu::Error::OutOfMemory { .. } => GpuError::Device("out of GPU memory".into()),
            other => GpuError::Device(other.to_string()),
        };
        sink.lock().expect("error sink").get_or_insert(mapped);
    }));
    let sink = pending_error.clone();
    device.set_device_lost_callback(move |reason, message| {
        if reason != wgpu::DeviceLostReason::Destroyed {
            sink.lock().expect("error sink").get_or_insert(GpuError::DeviceLost(format!("{reason:?}: {message}")));
        }
    });
    pending_error
}

/// Words of `Context::shared_words`.
pub const SHARED_WORDS: usize = 4;

/// The environment variable `Context::kernel_override` is read from.
pub const KERNEL_OVERRIDE_VAR: &str = "STYLIZE_CONV";
