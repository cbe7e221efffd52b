//! Per-kernel and whole-step benchmarks of the WGSL engine at VGG-19's layer shapes.
//!
//! Run with `cargo bench --bench kernels`. Environment:
//! - `STYLIZE_BENCH_SCALE=N` divides every spatial size by N (default 1: the shapes of a 512 x 512
//!   input). CPU Vulkan drivers (lavapipe) want 8 or more; a real GPU wants 1.
//! - `STYLIZE_BENCH_TIMER=wall|gpu` forces wall-clock timing (submit + wait) or GPU timestamp
//!   queries. The default uses timestamps where the adapter offers `TIMESTAMP_QUERY`.
//! - `STYLIZE_BENCH_SECS=S` is each benchmark's measurement time (default 3 s).
//! - The usual `WGPU_BACKEND`, `WGPU_ADAPTER_NAME` choose the adapter.
//!
//! Throughput is printed by criterion as "elem/s": for convolutions, Grams and the full step an
//! "element" is one FLOP (the same count as `ConvShape::flops`, `GramShape::flops` and
//! `StyleTransfer::flops_per_step`), so "Gelem/s" reads as GFLOP/s. Pooling and Adam are
//! memory-bound and report bytes (the minimum traffic: every input read once, every output written once).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput, measurement::WallTime};
use stylize::gpu::{Context, ContextOptions, Kernel, Step};
use stylize::image_io::Image;
use stylize::net::random_weights;
use stylize::net::vgg::VGG19_WIDTHS;
use stylize::ops::conv::{self, ConvShape, GpuConvWeights};
use stylize::ops::gram::{self, GramShape};
use stylize::ops::{ActShape, pool, w2};
use stylize::optim::adam::{Adam, AdamConfig};
use stylize::rng::Rng;
use stylize::{Options, StyleTransfer};

/// Timestamp queries around one compute pass: a query set of two, a resolve buffer and a
/// mappable copy of it.
struct GpuTimer {
    query_set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: wgpu::Buffer,
    period_ns: f64,
}

impl GpuTimer {
    fn new(ctx: &Context) -> Self {
        let query_set = ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("bench timestamps"),
            ty: wgpu::QueryType::Timestamp,
            count: 2,
        });
        let resolve = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("bench timestamps resolve"),
            size: 16,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let readback = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("bench timestamps readback"),
            size: 16,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Self { query_set, resolve, readback, period_ns: ctx.queue.get_timestamp_period() as f64 }
    }

    /// Records `kernels` into one pass bracketed by timestamps, submits, waits, and returns the
    /// time between the two timestamps.
    fn time(&self, ctx: &Context, kernels: &[&Kernel]) -> Duration {
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("bench"),
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: &self.query_set,
                    beginning_of_pass_write_index: Some(0),
                    end_of_pass_write_index: Some(1),
                }),
            });
            for kernel in kernels {
                kernel.record(&mut pass);
            }
        }
        encoder.resolve_query_set(&self.query_set, 0..2, &self.resolve, 0);
        encoder.copy_buffer_to_buffer(&self.resolve, 0, &self.readback, 0, 16);
        ctx.queue.submit([encoder.finish()]);
        let slice = self.readback.slice(..);
        slice.map_async(wgpu::MapMode::Read, |r| r.expect("map timestamps"));
        ctx.wait().expect("GPU error while benchmarking");
        let ticks = {
            let view = slice.get_mapped_range().expect("timestamps mapped");
            let t: &[u64] = bytemuck::cast_slice(&view);
            t[1].saturating_sub(t[0])
        };
        self.readback.unmap();
        Duration::from_nanos((ticks as f64 * self.period_ns).round() as u64)
    }
}

/// The device and how this run times it.
struct Bench {
    ctx: Context,
    timer: Option<GpuTimer>,
    scale: usize,
}

impl Bench {
    fn new() -> Self {
        // STYLIZE_BENCH_PRECISION=f32|mixed|auto: the products' arithmetic (default f32).
        let precision = match std::env::var("STYLIZE_BENCH_PRECISION") {
            Ok(p) => stylize::gpu::Precision::parse(&p).expect("STYLIZE_BENCH_PRECISION: expected f32, mixed or auto"),
            Err(_) => stylize::gpu::Precision::F32,
        };
        let ctx = Context::new(&ContextOptions { precision, ..ContextOptions::default() })
            .expect("no GPU adapter for the benchmarks");
        eprintln!("precision: {}", ctx.precision.reason);
        let scale = env_usize("STYLIZE_BENCH_SCALE", 1).max(1);
        let use_gpu_timer = match std::env::var("STYLIZE_BENCH_TIMER").as_deref() {
            Ok("wall") => false,
            Ok("gpu") => {
                assert!(ctx.timestamp_queries, "STYLIZE_BENCH_TIMER=gpu but the adapter has no TIMESTAMP_QUERY");
                true
            }
            _ => ctx.timestamp_queries,
        };
        let timer = use_gpu_timer.then(|| GpuTimer::new(&ctx));
        eprintln!(
            "stylize benches: adapter \"{}\" ({}, {}), driver \"{}\", scale 1/{scale}, timing: {}",
            ctx.adapter.name,
            ctx.adapter.backend,
            ctx.adapter.device_type,
            ctx.adapter.driver,
            if timer.is_some() { "GPU timestamp queries" } else { "wall clock around submit + wait" }
        );
        Self { ctx, timer, scale }
    }

    /// Spatial side of a layer that is `side` at full scale (never below 2, so pooling has a window).
    fn side(&self, side: usize) -> usize {
        (side / self.scale).max(2)
    }

    /// Total time of `iters` runs of `kernels` in one pass each, waiting for the device every time.
    fn time_kernels(&self, iters: u64, kernels: &[&Kernel]) -> Duration {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            total += match &self.timer {
                Some(timer) => timer.time(&self.ctx, kernels),
                None => {
                    let start = Instant::now();
                    let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
                    {
                        let mut pass = encoder.begin_compute_pass(&Default::default());
                        for kernel in kernels {
                            kernel.record(&mut pass);
                        }
                    }
                    self.ctx.queue.submit([encoder.finish()]);
                    self.ctx.wait().expect("GPU error while benchmarking");
                    start.elapsed()
                }
            };
        }
        total
    }

    fn random_buffer(&self, label: &str, len: usize, rng: &mut Rng, lo: f64, hi: f64) -> wgpu::Buffer {
        let data: Vec<f32> = (0..len).map(|_| rng.range(lo, hi) as f32).collect();
        self.ctx.upload(label, &data).expect("upload")
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| panic!("{name} must be a positive integer, not {v:?}")),
        Err(_) => default,
    }
}

fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    let secs = env_usize("STYLIZE_BENCH_SECS", 3) as u64;
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(secs))
        .sampling_mode(SamplingMode::Flat);
}

/// Benchmarks the kernels `make` builds, once each iteration. `make` runs lazily (only when the
/// benchmark passes criterion's filter) and once.
fn bench_kernels<S>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    bench: &Bench,
    id: &str,
    throughput: Throughput,
    make: impl Fn() -> S,
    kernels: impl Fn(&S) -> Vec<&Kernel>,
) {
    group.throughput(throughput);
    let mut state: Option<S> = None;
    group.bench_function(id, |b| {
        let state = state.get_or_insert_with(&make);
        let kernels = kernels(state);
        b.iter_custom(|iters| bench.time_kernels(iters, &kernels));
    });
}

/// VGG-19's conv layers that the benchmarks cover: (name, in, out, side at a 512 x 512 input).
const CONV_LAYERS: [(&str, usize, usize, usize); 6] = [
    ("conv1_1", 3, 64, 512),
    ("conv1_2", 64, 64, 512),
    ("conv2_2", 128, 128, 256),
    ("conv3_2", 256, 256, 128),
    ("conv4_2", 512, 512, 64),
    ("conv5_1", 512, 512, 32),
];

/// The inputs of the Gram matrices (relu1_1..relu5_1): channels and side at a 512 x 512 input.
const GRAM_LAYERS: [(&str, usize, usize); 5] =
    [("relu1_1", 64, 512), ("relu2_1", 128, 256), ("relu3_1", 256, 128), ("relu4_1", 512, 64), ("relu5_1", 512, 32)];

/// The pooling layers: channels and input side at a 512 x 512 input.
const POOL_LAYERS: [(&str, usize, usize); 4] =
    [("pool1", 64, 512), ("pool2", 128, 256), ("pool3", 256, 128), ("pool4", 512, 64)];

struct ConvCase {
    forward: Step,
    backward: Step,
    _buffers: Vec<wgpu::Buffer>,
    _weights: GpuConvWeights,
}

fn conv_case(bench: &Bench, shape: ConvShape) -> ConvCase {
    let ctx = &bench.ctx;
    let mut rng = Rng::new(1);
    let std = (2.0 / (shape.in_channels * 9) as f64).sqrt();
    let w: Vec<f32> = (0..shape.weight_len()).map(|_| (rng.normal() * std) as f32).collect();
    let bias: Vec<f32> = (0..shape.out_channels).map(|_| rng.range(-0.05, 0.05) as f32).collect();
    let weights = GpuConvWeights::upload(ctx, "bench conv", &w, &bias, shape.out_channels, shape.in_channels).unwrap();
    let x = bench.random_buffer("x", shape.input_len(), &mut rng, 0.0, 1.0);
    let y = ctx.buffer("y", shape.output_len()).unwrap();
    let dy = bench.random_buffer("dy", shape.output_len(), &mut rng, -1.0, 1.0);
    let dx = ctx.buffer("dx", shape.input_len()).unwrap();
    let forward = conv::forward(ctx, shape, &x, &weights, &y, true).unwrap();
    let backward = conv::backward_input(ctx, shape, &dy, &weights, &dx, false, None).unwrap();
    ConvCase { forward, backward, _buffers: vec![x, y, dy, dx], _weights: weights }
}

fn bench_conv(c: &mut Criterion, bench: &Bench) {
    let mut group = c.benchmark_group("conv3x3");
    configure(&mut group);
    for (name, in_channels, out_channels, side) in CONV_LAYERS {
        let side = bench.side(side);
        let shape = ConvShape { in_channels, out_channels, height: side, width: side };
        let label = format!("{name}_{in_channels}to{out_channels}@{side}");
        let make = || conv_case(bench, shape);
        let throughput = Throughput::Elements(shape.flops());
        bench_kernels(&mut group, bench, &format!("forward/{label}"), throughput.clone(), make, |c| {
            c.forward.kernels().iter().collect()
        });
        bench_kernels(&mut group, bench, &format!("backward_input/{label}"), throughput, make, |c| {
            c.backward.kernels().iter().collect()
        });
    }
    group.finish();
}

struct GramCase {
    forward: Step,
    backward: Step,
    _buffers: Vec<wgpu::Buffer>,
}

fn gram_case(bench: &Bench, shape: GramShape) -> GramCase {
    let ctx = &bench.ctx;
    let mut rng = Rng::new(2);
    let f = bench.random_buffer("features", shape.features_len(), &mut rng, 0.0, 1.0);
    let g = ctx.buffer("gram", shape.gram_len()).unwrap();
    let dg = bench.random_buffer("grad gram", shape.gram_len(), &mut rng, -1.0, 1.0);
    let df = ctx.buffer("grad features", shape.features_len()).unwrap();
    let forward = gram::forward(ctx, shape, &f, &g).unwrap();
    let backward = gram::backward(ctx, shape, &f, &dg, &df, false).unwrap();
    GramCase { forward, backward, _buffers: vec![f, g, dg, df] }
}

fn bench_gram(c: &mut Criterion, bench: &Bench) {
    let mut group = c.benchmark_group("gram");
    configure(&mut group);
    for (name, channels, side) in GRAM_LAYERS {
        let side = bench.side(side);
        let shape = GramShape { channels, n: side * side };
        let label = format!("{name}_{channels}@{side}");
        let make = || gram_case(bench, shape);
        // The forward counts the full product (the kernel computes one triangle); the backward
        // (dG + dG^T) F is a C x C by C x N product too, the same count.
        let throughput = Throughput::Elements(shape.flops());
        bench_kernels(&mut group, bench, &format!("forward/{label}"), throughput.clone(), make, |c| {
            c.forward.kernels().iter().collect()
        });
        bench_kernels(&mut group, bench, &format!("backward/{label}"), throughput, make, |c| {
            c.backward.kernels().iter().collect()
        });
    }
    group.finish();
}

struct W2Case {
    step: Step,
    _buffers: (w2::W2Buffers, wgpu::Buffer, wgpu::Buffer, wgpu::Buffer),
}

fn w2_case(bench: &Bench, shape: w2::W2Shape) -> W2Case {
    let ctx = &bench.ctx;
    let mut rng = Rng::new(5);
    let f = bench.random_buffer("features", shape.channels * shape.n, &mut rng, 0.0, 1.0);
    let style: Vec<f64> = (0..shape.channels * shape.n).map(|_| rng.range(0.0, 1.0)).collect();
    let (mean, srm) = w2::reference::moments(&style, shape.channels);
    let buffers = w2::W2Buffers::new(ctx, shape, &w2::Target::from_moments(&mean, &srm)).unwrap();
    let losses = ctx.buffer("losses", 1).unwrap();
    let df = ctx.buffer("grad features", shape.channels * shape.n).unwrap();
    let mut step = Step::new();
    w2::forward(ctx, &mut step, &buffers, &f, &losses, 0, 1.0).unwrap();
    w2::backward(ctx, &mut step, &buffers, &f, &df, 1.0, false).unwrap();
    W2Case { step, _buffers: (buffers, f, losses, df) }
}

/// The Wasserstein-2 style loss's forward and backward at each style layer (its Newton-Schulz
/// iteration's C x C products dominate from relu3_1 on).
fn bench_w2(c: &mut Criterion, bench: &Bench) {
    let mut group = c.benchmark_group("w2");
    configure(&mut group);
    for (name, channels, side) in GRAM_LAYERS {
        let side = bench.side(side);
        let shape = w2::W2Shape { channels, n: side * side };
        let label = format!("{name}_{channels}@{side}");
        let c3 = (channels * channels * channels) as u64;
        let flops = 2 * (2 * channels * channels * shape.n) as u64 + 2 * c3 * (4 + 3 * w2::ITERATIONS as u64);
        let make = || w2_case(bench, shape);
        bench_kernels(
            &mut group,
            bench,
            &format!("forward_backward/{label}"),
            Throughput::Elements(flops),
            make,
            |c| c.step.kernels().iter().collect(),
        );
    }
    group.finish();
}

struct PoolCase {
    forward: Kernel,
    backward: Kernel,
    _buffers: Vec<wgpu::Buffer>,
}

fn pool_case(bench: &Bench, shape: ActShape) -> PoolCase {
    let ctx = &bench.ctx;
    let mut rng = Rng::new(3);
    let x = bench.random_buffer("x", shape.input_len(), &mut rng, 0.0, 1.0);
    let y = ctx.buffer("y", shape.output_len()).unwrap();
    let dy = bench.random_buffer("dy", shape.output_len(), &mut rng, -1.0, 1.0);
    let dx = ctx.buffer("dx", shape.input_len()).unwrap();
    let codes = ctx.buffer("codes", pool::codes_words(shape)).unwrap();
    // The backward reads the codes a forward wrote.
    let mut first = Step::new();
    first.push(pool::forward(ctx, shape, &x, &y, &codes).unwrap());
    first.run(ctx).unwrap();
    let forward = pool::forward(ctx, shape, &x, &y, &codes).unwrap();
    let backward = pool::backward(ctx, shape, &codes, &dy, &dx).unwrap();
    PoolCase { forward, backward, _buffers: vec![x, y, codes, dy, dx] }
}

fn bench_pool(c: &mut Criterion, bench: &Bench) {
    let mut group = c.benchmark_group("maxpool");
    configure(&mut group);
    for (name, channels, side) in POOL_LAYERS {
        let side = bench.side(side);
        let shape = ActShape { channels, height: side, width: side };
        let label = format!("{name}_{channels}@{side}");
        let make = || pool_case(bench, shape);
        let (input, output) = (4 * shape.input_len() as u64, 4 * shape.output_len() as u64);
        let codes = 4 * pool::codes_words(shape) as u64;
        // Forward: read the input, write the output and the arg-max codes. Backward: read the
        // codes and the output gradient, write the input gradient.
        bench_kernels(
            &mut group,
            bench,
            &format!("forward/{label}"),
            Throughput::BytesDecimal(input + output + codes),
            make,
            |c| vec![&c.forward],
        );
        let backward_bytes = Throughput::BytesDecimal(input + output + codes);
        bench_kernels(&mut group, bench, &format!("backward/{label}"), backward_bytes, make, |c| vec![&c.backward]);
    }
    group.finish();
}

fn bench_adam(c: &mut Criterion, bench: &Bench) {
    let mut group = c.benchmark_group("adam");
    configure(&mut group);
    let side = bench.side(512);
    let len = 3 * side * side;
    let make = || {
        let mut rng = Rng::new(4);
        let param = bench.random_buffer("param", len, &mut rng, -2.0, 2.0);
        let grad = bench.random_buffer("grad", len, &mut rng, -1.0, 1.0);
        let (adam, kernel) = Adam::new(&bench.ctx, len, &param, &grad, AdamConfig::new(0.003)).unwrap();
        (adam, kernel, param, grad)
    };
    // Reads grad, param and both moments; writes param and both moments.
    let bytes = Throughput::BytesDecimal(7 * 4 * len as u64);
    bench_kernels(&mut group, bench, &format!("step/3x{side}x{side}"), bytes, make, |s| vec![&s.1]);
    group.finish();
}

fn bench_step(c: &mut Criterion, bench: &Bench) {
    let mut group = c.benchmark_group("training_step");
    configure(&mut group);
    for full_side in [256usize, 512] {
        let side = bench.side(full_side) as u32;
        let mut transfer: Option<StyleTransfer> = None;
        // FLOPs do not depend on the weights' values: count them from a plan without a device.
        let flops = {
            let widths: Vec<(usize, usize)> =
                std::iter::once(3).chain(VGG19_WIDTHS).zip(VGG19_WIDTHS).collect::<Vec<_>>();
            let plan = stylize::net::Plan::new(
                &stylize::net::vgg::VGG19,
                &widths,
                side as usize,
                side as usize,
                &Options::default().loss_layers(),
            )
            .expect("plan");
            plan.flops_per_step()
        };
        group.throughput(Throughput::Elements(flops));
        group.bench_function(format!("vgg19_random/{side}x{side}"), |b| {
            let transfer = transfer.get_or_insert_with(|| {
                // Each StyleTransfer owns its context; open a second one beside the shared one.
                let ctx = Context::new(&ContextOptions {
                    precision: bench.ctx.precision.requested,
                    ..ContextOptions::default()
                })
                .expect("context");
                let weights = random_weights(&VGG19_WIDTHS, 0);
                let mut rng = Rng::new(5);
                let n = 3 * (side * side) as usize;
                let mut image = || Image::new(side, side, (0..n).map(|_| rng.uniform() as f32).collect());
                let (content, style) = (image(), image());
                let t = StyleTransfer::new(ctx, &weights, &content, &style, &content, &Options::default())
                    .expect("style transfer setup");
                eprintln!(
                    "training_step {side}x{side}: {:.3} GFLOP/step, {:.1} MiB of GPU buffers",
                    t.flops_per_step() as f64 / 1e9,
                    t.gpu_bytes() as f64 / (1 << 20) as f64
                );
                t
            });
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    transfer.step();
                    transfer.sync().expect("GPU error in the training step");
                }
                black_box(start.elapsed())
            });
        });
    }
    group.finish();
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    let bench = Bench::new();
    bench_conv(&mut criterion, &bench);
    bench_gram(&mut criterion, &bench);
    bench_w2(&mut criterion, &bench);
    bench_pool(&mut criterion, &bench);
    bench_adam(&mut criterion, &bench);
    bench_step(&mut criterion, &bench);
    criterion.final_summary();
}
