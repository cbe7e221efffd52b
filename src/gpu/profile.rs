//! Per-kernel GPU times of a step from timestamp queries (each kernel in its own compute pass,
//! timestamps at the pass boundaries), for `stylize bench --profile` and the benchmarks.

use super::{Context, GpuError, Kernel, Step};

/// GPU time of one kernel of a step.
#[derive(Clone, Debug)]
pub struct KernelTime {
    pub label: String,
    /// The shape it worked on, where the kernel noted one (`Kernel::with_work`).
    pub detail: String,
    /// FLOPs it did, where noted (0 otherwise).
    pub flops: u64,
    pub milliseconds: f64,
}

/// Runs `step` once with a timestamp pair around every kernel and returns each kernel's time, in
/// the step's order. Errors when the adapter has no timestamp queries.
pub fn profile_step(ctx: &Context, step: &Step) -> Result<Vec<KernelTime>, GpuError> {
    if !ctx.timestamp_queries {
        return Err(GpuError::Device(format!("{} offers no timestamp queries", ctx.adapter.name)));
    }
    let kernels = step.kernels();
    let count = (kernels.len() * 2) as u32;
    if count > wgpu::QUERY_SET_MAX_QUERIES {
        return Err(GpuError::Device(format!("{} kernels exceed one query set", kernels.len())));
    }
    let queries = ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
        label: Some("kernel timestamps"),
        ty: wgpu::QueryType::Timestamp,
        count,
    });
    let ticks = run_timed(ctx, kernels, &queries, count)?;
    let period_ns = ctx.queue.get_timestamp_period() as f64;
    Ok(kernels
        .iter()
        .enumerate()
        .map(|(i, k)| KernelTime {
            label: k.label().to_string(),
            detail: k.detail().to_string(),
            flops: k.flops(),
            milliseconds: ticks[2 * i + 1].saturating_sub(ticks[2 * i]) as f64 * period_ns / 1e6,
        })
        .collect())
}

/// Submits every kernel in its own compute pass between two timestamps of `queries` (`count` of
/// them) and returns the raw ticks.
fn run_timed(ctx: &Context, kernels: &[Kernel], queries: &wgpu::QuerySet, count: u32) -> Result<Vec<u64>, GpuError> {
    let bytes = count as u64 * 8;
    let resolved = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("resolved timestamps"),
        size: bytes,
        usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("timestamp readback"),
        size: bytes,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    for (i, kernel) in kernels.iter().enumerate() {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(kernel.label()),
            timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                query_set: queries,
                beginning_of_pass_write_index: Some(2 * i as u32),
                end_of_pass_write_index: Some(2 * i as u32 + 1),
            }),
        });
        kernel.record(&mut pass);
    }
    encoder.resolve_query_set(queries, 0..count, &resolved, 0);
    encoder.copy_buffer_to_buffer(&resolved, 0, &staging, 0, bytes);
    ctx.queue.submit([encoder.finish()]);
    read_ticks(ctx, &staging)
}

/// Maps `staging` once the submitted work is done and returns its u64 words.
fn read_ticks(ctx: &Context, staging: &wgpu::Buffer) -> Result<Vec<u64>, GpuError> {
    let (tx, rx) = std::sync::mpsc::channel();
    staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    ctx.wait()?;
    match rx.try_recv() {
        Ok(Ok(())) => {}
        _ => return Err(GpuError::Device("timestamp readback failed".into())),
    }
    let ticks: Vec<u64> = {
        let view = staging.slice(..).get_mapped_range().map_err(|e| GpuError::Device(e.to_string()))?;
        bytemuck::cast_slice::<u8, u64>(&view).to_vec()
    };
    staging.unmap();
    Ok(ticks)
}
