//! `stylize devices`: the adapters wgpu sees, their limits and what `--precision auto` runs on each.

use anyhow::{Result, bail};
use clap::Args;
use stylize::Options;

use super::values::BackendArg;

#[derive(Args, Debug)]
pub struct DevicesArgs {
    #[arg(long, value_enum)]
    pub backend: Option<BackendArg>,
}

pub fn run(DevicesArgs { backend }: DevicesArgs) -> Result<()> {
    let options = Options { backend: backend.map(Into::into), ..Options::default() }.context_options();
    let adapters = stylize::gpu::list_adapters(&options);
    if adapters.is_empty() {
        bail!("no GPU adapter found (is a Vulkan, Metal or DX12 driver installed?)");
    }
    for a in adapters {
        println!(
            "{} ({}, {}, driver {})",
            a.name,
            a.backend,
            a.device_type,
            if a.driver.is_empty() { "?" } else { &a.driver }
        );
        println!(
            "    max storage binding {} MiB, max buffer {} MiB, workgroup storage {} KiB, {} workgroups per dimension, timestamps {}",
            a.max_storage_buffer_binding_size >> 20,
            a.max_buffer_size >> 20,
            a.max_compute_workgroup_storage_size >> 10,
            a.max_compute_workgroups_per_dimension,
            if a.timestamp_queries { "yes" } else { "no" }
        );
        let listed = if a.matrix_configs.is_empty() { "none".to_string() } else { a.matrix_configs.join(", ") };
        println!("    cooperative matrices listed: {listed}");
        println!("    matrix units: {}", a.matrix_use());
        println!("    --precision auto runs {}", a.auto_precision().reason);
    }
    Ok(())
}
