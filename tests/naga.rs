//! Every WGSL file in kernels/ parses and validates with naga; no device needed.

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

/// The capabilities a kernel file's `enable` directives ask for: only the cooperative-matrix
/// kernels (mixed precision on matrix units) need any, f16 and cooperative matrices.
fn capabilities(source: &str) -> naga::valid::Capabilities {
    if source.contains("enable wgpu_cooperative_matrix;") {
        naga::valid::Capabilities::COOPERATIVE_MATRIX | naga::valid::Capabilities::SHADER_FLOAT16
    } else {
        naga::valid::Capabilities::empty()
    }
}

#[test]
fn naga_validates_every_kernel() {
    let files = kernel_files();
    assert!(files.len() >= 8, "expected the kernel library, found {files:?}");
    for file in files {
        let source = std::fs::read_to_string(&file).unwrap();
        let module = naga::front::wgsl::parse_str(&source)
            .unwrap_or_else(|e| panic!("{}: {}", file.display(), e.emit_to_string(&source)));
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), capabilities(&source))
            .validate(&module)
            .unwrap_or_else(|e| panic!("{}: {}", file.display(), e.emit_to_string(&source)));
        assert!(
            module.entry_points.iter().all(|ep| ep.stage == naga::ShaderStage::Compute),
            "{}: only compute entry points belong in kernels/",
            file.display()
        );
    }
}

#[test]
fn naga_every_kernel_file_is_compiled_into_the_crate() {
    let compiled: Vec<&str> = stylize::ops::SHADERS.iter().chain(&stylize::optim::SHADERS).map(|s| s.source).collect();
    for file in kernel_files() {
        let source = std::fs::read_to_string(&file).unwrap();
        assert!(compiled.contains(&source.as_str()), "{} is not in ops::SHADERS or optim::SHADERS", file.display());
    }
}

/// The cooperative-matrix kernels exist, use the 16x16 f16 -> f32 matrices, and are refused
/// without the capabilities (so the validation above checks them for real).
#[test]
fn naga_cooperative_matrix_kernels_need_their_capabilities() {
    let coop: Vec<_> = kernel_files()
        .into_iter()
        .filter(|f| std::fs::read_to_string(f).unwrap().contains("enable wgpu_cooperative_matrix;"))
        .collect();
    assert!(coop.len() >= 2, "expected the conv and Gram cooperative-matrix kernels, found {coop:?}");
    for file in coop {
        let source = std::fs::read_to_string(&file).unwrap();
        assert!(source.contains("coop_mat16x16<f16, A>") && source.contains("coopMultiplyAdd"), "{}", file.display());
        let module = naga::front::wgsl::parse_str(&source).unwrap();
        let refused =
            naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::empty())
                .validate(&module);
        assert!(refused.is_err(), "{} validated without f16 and cooperative matrices", file.display());
    }
}

/// naga writes SPIR-V for the cooperative-matrix kernels (what wgpu hands a Vulkan driver with
/// `VK_KHR_cooperative_matrix`), so the Vulkan path fails at no translation step a device
/// would be the first to see.
#[test]
fn naga_cooperative_matrix_kernels_translate_to_spirv() {
    for file in kernel_files() {
        let source = std::fs::read_to_string(&file).unwrap();
        if !source.contains("enable wgpu_cooperative_matrix;") {
            continue;
        }
        let module = naga::front::wgsl::parse_str(&source).unwrap();
        let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), capabilities(&source))
            .validate(&module)
            .unwrap();
        let options = naga::back::spv::Options { lang_version: (1, 6), ..Default::default() };
        let words = naga::back::spv::write_vec(&module, &info, &options, None)
            .unwrap_or_else(|e| panic!("{}: SPIR-V: {e}", file.display()));
        assert!(words.len() > 100 && words[0] == 0x0723_0203, "{}: not a SPIR-V module", file.display());
    }
}
