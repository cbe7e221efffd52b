//! A kernel is one dispatch prepared once (pipeline, uniform, bind group, grid) and recorded into
//! every step's command encoder; a `Step` is an ordered list of them, submitted at once.

use std::sync::Arc;

use super::{Context, GpuError, ShaderSource};

/// Splits `total` logical workgroups into a grid whose every dimension stays within `cap`.
/// Shaders rebuild the logical index as `x + nx * (y + ny * z)` and skip indices `>= total`.
pub fn fold_groups(total: u32, cap: u32) -> Result<[u32; 3], GpuError> {
    let total = total.max(1);
    let x = total.min(cap);
    let rows = total.div_ceil(x);
    let y = rows.min(cap);
    let z = rows.div_ceil(y);
    if z > cap {
        return Err(GpuError::Device(format!("{total} workgroups do not fit a dispatch grid of {cap}^3")));
    }
    Ok([x, y, z])
}

/// One prepared dispatch. Every shader's parameter struct starts with `groups: u32`, the logical
/// workgroup count, which `Kernel::new` fills in so the shader can skip the padding of a folded grid.
pub struct Kernel {
    label: String,
    pipeline: Arc<wgpu::ComputePipeline>,
    bind_group: wgpu::BindGroup,
    params: wgpu::Buffer,
    grid: [u32; 3],
    total_groups: u32,
    /// What this dispatch works on (e.g. `64->128 @256x256`) and the FLOPs it does, for profiles.
    detail: String,
    flops: u64,
}

impl Kernel {
    /// Builds the dispatch of `entry` in `shader`: binding 0 is the uniform `params`, bindings
    /// 1.. are `buffers` in order.
    pub fn new(
        ctx: &Context,
        shader: ShaderSource,
        entry: &str,
        params: &[u8],
        buffers: &[&wgpu::Buffer],
        total_groups: u32,
    ) -> Result<Self, GpuError> {
        let numbered: Vec<(u32, &wgpu::Buffer)> = buffers.iter().enumerate().map(|(i, b)| (i as u32 + 1, *b)).collect();
        Self::with_bindings(ctx, shader, entry, params, &numbered, total_groups)
    }

    /// As `new`, with each buffer's binding number given: for entry points that use only some
    /// of their module's bindings (the layout is derived from what the entry point uses).
    pub fn with_bindings(
        ctx: &Context,
        shader: ShaderSource,
        entry: &str,
        params: &[u8],
        buffers: &[(u32, &wgpu::Buffer)],
        total_groups: u32,
    ) -> Result<Self, GpuError> {
        let pipeline = ctx.registry().pipeline(&ctx.device, shader, entry)?;
        let grid = fold_groups(total_groups, ctx.max_groups_per_dim())?;
        let params = with_group_count(params, total_groups);
        let params_buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(&format!("{}::{} params", shader.name, entry)),
            size: params.len() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        ctx.queue.write_buffer(&params_buffer, 0, &params);
        let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: params_buffer.as_entire_binding() }];
        entries.extend(
            buffers.iter().map(|&(binding, b)| wgpu::BindGroupEntry { binding, resource: b.as_entire_binding() }),
        );
        let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let bind_group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(&format!("{}::{}", shader.name, entry)),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        if let Some(err) = pollster::block_on(scope.pop()) {
            return Err(GpuError::Shader { shader: format!("{}::{}", shader.name, entry), message: err.to_string() });
        }
        Ok(Self {
            label: format!("{}::{}", shader.name, entry),
            pipeline,
            bind_group,
            params: params_buffer,
            grid,
            total_groups,
            detail: String::new(),
            flops: 0,
        })
    }

    /// Notes the shape this dispatch works on and its FLOPs, so profiles can report GFLOP/s.
    pub fn with_work(mut self, detail: String, flops: u64) -> Self {
        self.detail = detail;
        self.flops = flops;
        self
    }

    pub fn detail(&self) -> &str {
        &self.detail
    }

    pub fn flops(&self) -> u64 {
        self.flops
    }

    /// Replaces the uniform (e.g. Adam's bias corrections each step); takes effect at the next submit.
    pub fn set_params(&self, ctx: &Context, params: &[u8]) {
        ctx.queue.write_buffer(&self.params, 0, &with_group_count(params, self.total_groups));
    }

    /// The dispatch grid after folding.
    pub fn grid(&self) -> [u32; 3] {
        self.grid
    }

    /// `shader::entry`, for profiles and errors.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Records this dispatch into an open compute pass.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(self.grid[0], self.grid[1], self.grid[2]);
    }
}

fn with_group_count(params: &[u8], total_groups: u32) -> Vec<u8> {
    let mut bytes = params.to_vec();
    bytes[..4].copy_from_slice(&total_groups.to_le_bytes());
    bytes
}

/// An ordered schedule of kernels: recorded into one encoder and one compute pass, submitted once.
#[derive(Default)]
pub struct Step {
    kernels: Vec<Kernel>,
    scratch: Vec<wgpu::Buffer>,
    /// Buffer copies recorded before the compute pass (e.g. keeping the previous image).
    copies: Vec<(wgpu::Buffer, wgpu::Buffer)>,
}

impl Step {
    pub fn new() -> Self {
        Self::default()
    }

    /// A step of one kernel.
    pub fn single(kernel: Kernel) -> Self {
        let mut step = Self::new();
        step.push(kernel);
        step
    }

    /// Appends a kernel and returns its position (to update its uniform later).
    pub fn push(&mut self, kernel: Kernel) -> usize {
        self.kernels.push(kernel);
        self.kernels.len() - 1
    }

    /// Copies all of `src` into `dst` at the start of every submit, before the kernels run.
    pub fn copy_first(&mut self, src: &wgpu::Buffer, dst: &wgpu::Buffer) {
        self.copies.push((src.clone(), dst.clone()));
    }

    /// Appends every kernel of `other`, in order, and takes over its scratch buffers.
    pub fn extend(&mut self, other: Step) {
        self.kernels.extend(other.kernels);
        self.scratch.extend(other.scratch);
        self.copies.extend(other.copies);
    }

    /// Keeps a buffer that only this step's kernels use (partial sums and the like) alive with it.
    pub fn keep(&mut self, buffer: wgpu::Buffer) -> &wgpu::Buffer {
        self.scratch.push(buffer);
        self.scratch.last().expect("just pushed")
    }

    pub fn kernel(&self, index: usize) -> &Kernel {
        &self.kernels[index]
    }

    pub fn kernels(&self) -> &[Kernel] {
        &self.kernels
    }

    pub fn len(&self) -> usize {
        self.kernels.len()
    }

    /// Bytes of the scratch buffers this step keeps alive.
    pub fn scratch_bytes(&self) -> u64 {
        self.scratch.iter().map(|b| b.size()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.kernels.is_empty()
    }

    /// Records every kernel into one compute pass and submits once; returns without waiting.
    pub fn submit(&self, ctx: &Context) -> wgpu::SubmissionIndex {
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        for (src, dst) in &self.copies {
            encoder.copy_buffer_to_buffer(src, 0, dst, 0, src.size().min(dst.size()));
        }
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            for kernel in &self.kernels {
                kernel.record(&mut pass);
            }
        }
        ctx.queue.submit([encoder.finish()])
    }

    /// Submits and waits, surfacing any GPU error.
    pub fn run(&self, ctx: &Context) -> Result<(), GpuError> {
        self.submit(ctx);
        ctx.wait()
    }
}

#[cfg(test)]
mod tests {
    use super::fold_groups;

    #[test]
    fn folding_covers_every_group_within_the_cap() {
        for (total, cap) in [(1, 65535), (65535, 65535), (65536, 65535), (300, 7), (343, 7)] {
            let [x, y, z] = fold_groups(total, cap).unwrap();
            assert!(x <= cap && y <= cap && z <= cap, "{total} {cap}");
            assert!((x * y * z) as u64 >= total as u64);
            assert!((x * y * (z - 1)) < total, "no wasted plane for {total} {cap}");
        }
        assert!(fold_groups(7 * 7 * 7 + 1, 7).is_err());
    }
}
