//! Every WGSL module the crate compiles parses and validates with naga, and every file in kernels/
//! is part of one; no device needed. Most modules are one file; a cooperative-matrix kernel's is
//! composed of a shape prelude, the shared tile walk and its own file, once per shape
//! (`ops::CoopShader`).

use std::path::Path;

fn kernel_files() -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("kernels/ exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wgsl"))
        .collect();
    files.sort();
    files
}

/// Every module the crate compiles, composed as the registry receives it.
fn modules() -> Vec<stylize::gpu::ShaderSource> {
    stylize::ops::SHADERS.iter().chain(&stylize::optim::SHADERS).copied().collect()
}

/// The capabilities a module's `enable` directives ask for: only the cooperative-matrix kernels
/// (mixed precision on matrix units) need any: f16, cooperative matrices and subgroups (each
/// subgroup finds its quads from `subgroup_id`).
fn capabilities(source: &str) -> naga::valid::Capabilities {
    if source.contains("enable wgpu_cooperative_matrix;") {
        naga::valid::Capabilities::COOPERATIVE_MATRIX
            | naga::valid::Capabilities::SHADER_FLOAT16
            | naga::valid::Capabilities::SUBGROUP
    } else {
        naga::valid::Capabilities::empty()
    }
}

fn validate(name: &str, source: &str) -> (naga::Module, naga::valid::ModuleInfo) {
    let module =
        naga::front::wgsl::parse_str(source).unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
    let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), capabilities(source))
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
    (module, info)
}

#[test]
fn naga_validates_every_kernel() {
    let modules = modules();
    assert!(modules.len() >= 12, "expected the kernel library, found {}", modules.len());
    for shader in modules {
        let (module, _) = validate(shader.name, shader.source);
        assert!(
            module.entry_points.iter().all(|ep| ep.stage == naga::ShaderStage::Compute),
            "{}: only compute entry points belong in kernels/",
            shader.name
        );
    }
}

#[test]
fn naga_every_kernel_file_is_compiled_into_the_crate() {
    let compiled: Vec<&str> = modules().iter().map(|s| s.source).collect();
    for file in kernel_files() {
        let source = std::fs::read_to_string(&file).unwrap();
        assert!(
            compiled.iter().any(|module| module.contains(source.as_str())),
            "{} is in no module of ops::SHADERS or optim::SHADERS",
            file.display()
        );
    }
}

/// The cooperative-matrix modules: one per kernel and shape, each with its shape's matrix types
/// and the shared tile walk, every entry point in one 32-invocation workgroup; refused without
/// the capabilities (so the validation above checks them for real).
#[test]
fn naga_cooperative_matrix_kernels_are_composed_per_shape() {
    let tile = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels/coop_tile.wgsl")).unwrap();
    let coop: Vec<_> = modules().into_iter().filter(|s| s.source.contains("enable wgpu_cooperative_matrix;")).collect();
    for (kernel, entries) in
        [("conv_coop", &["conv3x3_coop"][..]), ("gram_coop", &["gram_forward_coop", "gram_backward_coop"])]
    {
        for shape in stylize::gpu::KERNEL_MATRIX_SHAPES {
            let side = shape.side();
            let name = format!("{kernel}_{side}x{side}");
            let shader = coop.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no module {name}"));
            let matrix = format!("alias MatA = coop_mat{side}x{side}<f16, A>;");
            assert!(shader.source.contains(&matrix) && shader.source.contains(tile.as_str()), "{name}");
            let (module, _) = validate(&name, shader.source);
            for entry in entries {
                let ep = module
                    .entry_points
                    .iter()
                    .find(|ep| ep.name == *entry)
                    .unwrap_or_else(|| panic!("{name}::{entry}"));
                assert_eq!(ep.workgroup_size, [stylize::gpu::COOP_WORKGROUP, 1, 1], "{name}::{entry}");
            }
            let refused =
                naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::empty())
                    .validate(&module);
            assert!(refused.is_err(), "{name} validated without f16, cooperative matrices and subgroups");
        }
    }
    assert_eq!(coop.len(), 4, "two kernels in two shapes");
}

/// naga writes SPIR-V for the cooperative-matrix modules (what wgpu hands a Vulkan driver with
/// `VK_KHR_cooperative_matrix`), so the Vulkan path fails at no translation step a device
/// would be the first to see.
#[test]
fn naga_cooperative_matrix_kernels_translate_to_spirv() {
    let mut translated = 0;
    for shader in modules() {
        if !shader.source.contains("enable wgpu_cooperative_matrix;") {
            continue;
        }
        let (module, info) = validate(shader.name, shader.source);
        let options = naga::back::spv::Options { lang_version: (1, 6), ..Default::default() };
        let words = naga::back::spv::write_vec(&module, &info, &options, None)
            .unwrap_or_else(|e| panic!("{}: SPIR-V: {e}", shader.name));
        assert!(words.len() > 100 && words[0] == 0x0723_0203, "{}: not a SPIR-V module", shader.name);
        translated += 1;
    }
    assert_eq!(translated, 4);
}
