//! One place that turns WGSL text into shader modules and compute pipelines, and caches both.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::GpuError;

/// A WGSL file compiled into the binary with `include_str!`: its name (for labels and the cache
/// key) and its text. Sizes never appear in the text: they arrive in a uniform at run time.
#[derive(Clone, Copy, Debug)]
pub struct ShaderSource {
    pub name: &'static str,
    pub source: &'static str,
}

/// Caches one shader module per file and one pipeline per (file, entry point).
#[derive(Default)]
pub struct Registry {
    modules: Mutex<HashMap<&'static str, Arc<wgpu::ShaderModule>>>,
    pipelines: Mutex<HashMap<(&'static str, String), Arc<wgpu::ComputePipeline>>>,
}

impl Registry {
    /// The pipeline for `entry` in `shader`, built on first use. Validation errors in the
    /// shader or pipeline become `GpuError::Shader` instead of a panic.
    pub fn pipeline(
        &self,
        device: &wgpu::Device,
        shader: ShaderSource,
        entry: &str,
    ) -> Result<Arc<wgpu::ComputePipeline>, GpuError> {
        let key = (shader.name, entry.to_string());
        if let Some(found) = self.pipelines.lock().expect("registry lock").get(&key) {
            return Ok(found.clone());
        }
        let module = self.module(device, shader)?;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&format!("{}::{}", shader.name, entry)),
            layout: None,
            module: &module,
            entry_point: Some(entry),
            compilation_options: Default::default(),
            cache: None,
        });
        if let Some(err) = pollster::block_on(scope.pop()) {
            return Err(GpuError::Shader { shader: format!("{}::{}", shader.name, entry), message: err.to_string() });
        }
        let pipeline = Arc::new(pipeline);
        self.pipelines.lock().expect("registry lock").insert(key, pipeline.clone());
        Ok(pipeline)
    }

    fn module(&self, device: &wgpu::Device, shader: ShaderSource) -> Result<Arc<wgpu::ShaderModule>, GpuError> {
        if let Some(found) = self.modules.lock().expect("registry lock").get(shader.name) {
            return Ok(found.clone());
        }
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let descriptor = wgpu::ShaderModuleDescriptor {
            label: Some(shader.name),
            source: wgpu::ShaderSource::Wgsl(shader.source.into()),
        };
        // SAFETY: our kernels are the crate's own WGSL; every buffer index they form is guarded
        // by an explicit size check (and tested against the f64 references with poisoned
        // outputs at odd sizes), so wgpu's injected clamps would only cost time in the inner loops.
        let module = if std::env::var_os("STYLIZE_CHECKED_SHADERS").is_some() {
            device.create_shader_module(descriptor)
        } else {
            unsafe { device.create_shader_module_trusted(descriptor, wgpu::ShaderRuntimeChecks::unchecked()) }
        };
        if let Some(err) = pollster::block_on(scope.pop()) {
            return Err(GpuError::Shader { shader: shader.name.to_string(), message: err.to_string() });
        }
        let module = Arc::new(module);
        self.modules.lock().expect("registry lock").insert(shader.name, module.clone());
        Ok(module)
    }
}
