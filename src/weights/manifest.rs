//! The manifest of known weight files, `weights/manifest.toml`, compiled in: one per model.

use serde::Deserialize;

use crate::net::vgg::Model;

/// The manifest's text.
const MANIFEST_TOML: &str = include_str!("../../weights/manifest.toml");

/// One known weight file.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ManifestEntry {
    /// Short name, the model's (`Model::name`), e.g. `vgg19`.
    pub name: String,
    /// File name in the cache, e.g. `vgg19-dcbb9e9d.pth`.
    pub file_name: String,
    /// Where to download it.
    pub url: String,
    /// Size in bytes, where known.
    pub size: Option<u64>,
    /// SHA-256 of the file, lowercase hex, where known (else see `expected_sha256`).
    pub sha256: Option<String>,
    /// `pth` or `npz`.
    pub format: String,
}

impl ManifestEntry {
    /// What a download must hash to: the full SHA-256, or where only the file name's hash is
    /// known, that prefix (torch.hub's rule: the hex digits between the last `-` and the
    /// extension, which the digest must start with). `None`: nothing to check against.
    pub fn expected_sha256(&self) -> Option<String> {
        self.sha256.clone().or_else(|| file_name_hash_prefix(&self.file_name))
    }

    /// True when only a prefix of the SHA-256 is known.
    pub fn checks_prefix_only(&self) -> bool {
        self.sha256.is_none() && self.expected_sha256().is_some()
    }
}

/// torch.hub's `HASH_REGEX` (`-([a-f0-9]*)\.`) on a file name: the hex digits after the first
/// `-` that a `.` follows, e.g. `dcbb9e9d` in `vgg19-dcbb9e9d.pth`; at least 8 of them.
pub fn file_name_hash_prefix(file_name: &str) -> Option<String> {
    file_name.match_indices('-').find_map(|(at, _)| {
        let rest = &file_name[at + 1..];
        let hex: &str = &rest[..rest.find(|c: char| !matches!(c, '0'..='9' | 'a'..='f')).unwrap_or(rest.len())];
        (hex.len() >= 8 && rest[hex.len()..].starts_with('.')).then(|| hex.to_string())
    })
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

/// The entry of `model`'s weights.
pub fn model_entry(model: Model) -> ManifestEntry {
    manifest()
        .into_iter()
        .find(|e| e.name == model.name())
        .expect("weights/manifest.toml has an entry per model (checked by tests)")
}

/// The entry used when no weights are named: torchvision's VGG-19.
pub fn default_entry() -> ManifestEntry {
    model_entry(Model::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_parses_with_vgg19_figures() {
        let entry = default_entry();
        assert_eq!(entry.file_name, "vgg19-dcbb9e9d.pth");
        assert_eq!(entry.url, "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth");
        assert_eq!(entry.size, Some(574_673_361));
        let sha = "dcbb9e9dad569fff7a846263a77324fc34978fea2bfb039c012d710e1776ae44";
        assert_eq!(entry.sha256.as_deref(), Some(sha));
        assert_eq!(entry.expected_sha256().as_deref(), Some(sha));
        assert!(!entry.checks_prefix_only());
        assert_eq!(entry.format, "pth");
    }

    /// One entry per model and none else; each file name carries the hash its digest must start
    /// with (the full SHA-256 where the manifest gives one).
    #[test]
    fn one_entry_per_model_with_its_hash() {
        let entries = manifest();
        assert_eq!(entries.len(), Model::ALL.len());
        for model in Model::ALL {
            let entry = model_entry(model);
            let prefix = file_name_hash_prefix(&entry.file_name).expect(&entry.file_name);
            assert!(entry.expected_sha256().unwrap().starts_with(&prefix), "{model}");
            assert!(entry.url.ends_with(&format!("/{}", entry.file_name)), "{model}");
        }
        assert_eq!(model_entry(Model::Vgg19Caffe).file_name, "vgg19-d01eb7cb.pth");
        assert_eq!(model_entry(Model::Vgg16Caffe).file_name, "vgg16-00b39a1b.pth");
        assert_eq!(model_entry(Model::Vgg16).file_name, "vgg16-397923af.pth");
        assert!(model_entry(Model::Vgg16).checks_prefix_only());
    }

    #[test]
    fn hash_prefixes_as_torch_hub_reads_them() {
        assert_eq!(file_name_hash_prefix("vgg19-dcbb9e9d.pth").as_deref(), Some("dcbb9e9d"));
        assert_eq!(file_name_hash_prefix("vgg16-caffe-00b39a1b.pth").as_deref(), Some("00b39a1b"));
        assert_eq!(file_name_hash_prefix("resnet-1234567.pth"), None, "7 digits");
        assert_eq!(file_name_hash_prefix("vgg19-DCBB9E9D.pth"), None, "torch.hub's class is lowercase");
        assert_eq!(file_name_hash_prefix("weights.pth"), None);
        assert_eq!(file_name_hash_prefix("vgg19-dcbb9e9dx.pth"), None);
    }
}
