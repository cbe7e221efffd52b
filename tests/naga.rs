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

#[test]
fn naga_validates_every_kernel() {
    let files = kernel_files();
    assert!(files.len() >= 8, "expected the kernel library, found {files:?}");
    for file in files {
        let source = std::fs::read_to_string(&file).unwrap();
        let module = naga::front::wgsl::parse_str(&source)
            .unwrap_or_else(|e| panic!("{}: {}", file.display(), e.emit_to_string(&source)));
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::empty())
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
    let compiled: Vec<&str> = stylize::ops::SHADERS.iter().map(|s| s.source).collect();
    for file in kernel_files() {
        let source = std::fs::read_to_string(&file).unwrap();
        assert!(compiled.contains(&source.as_str()), "{} is not in ops::SHADERS", file.display());
    }
}
