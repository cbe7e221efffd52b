//! The manifest of known weight files, `weights/manifest.toml`, compiled in.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The manifest's text.
const MANIFEST_TOML: &str = include_str!("../../weights/manifest.toml");

/// One known weight file.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ManifestEntry {
    /// Short name, e.g. `vgg19`.
    pub name: String,
    /// File name in the cache, e.g. `vgg19-dcbb9e9d.pth`.
    pub file_name: String,
    /// Where to download it.
    pub url: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the file, lowercase hex.
    pub sha256: String,
    /// `pth` or `npz`.
    pub format: String,
    /// Layer name (e.g. `conv1_1`) -> torchvision key prefix (e.g. `features.0`).
    pub layers: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct ManifestFile {
    weights: Vec<ManifestEntry>,
}

/// All entries of the compiled-in manifest.
pub fn manifest() -> Vec<ManifestEntry> {
    // The manifest is part of the source tree and checked by a unit test.
    toml::from_str::<ManifestFile>(MANIFEST_TOML)
        .map(|m| m.weights)
        .expect("weights/manifest.toml is valid (checked by tests)")
}

/// The entry used when no weights are named: torchvision's VGG-19.
pub fn default_entry() -> ManifestEntry {
    manifest()
        .into_iter()
        .find(|e| e.name == "vgg19")
        .expect("weights/manifest.toml has a vgg19 entry (checked by tests)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_parses_with_vgg19_figures() {
        let entry = default_entry();
        assert_eq!(entry.file_name, "vgg19-dcbb9e9d.pth");
        assert_eq!(entry.url, "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth");
        assert_eq!(entry.size, 574_673_361);
        assert_eq!(entry.sha256, "dcbb9e9dad569fff7a846263a77324fc34978fea2bfb039c012d710e1776ae44");
        assert_eq!(entry.format, "pth");
        assert_eq!(entry.layers.len(), 13);
        assert_eq!(entry.layers["conv1_1"], "features.0");
        assert_eq!(entry.layers["conv4_2"], "features.21");
        assert_eq!(entry.layers["conv5_1"], "features.28");
        let prefixes: Vec<String> =
            crate::weights::VGG19_CONV_INDICES.iter().map(|i| format!("features.{i}")).collect();
        for p in entry.layers.values() {
            assert!(prefixes.contains(p), "{p} is not a VGG-19 conv");
        }
    }
}
