//! `stylize models`: the networks `--model` takes, their files and whether each is in the cache.

use anyhow::Result;
use clap::Args;
use stylize::Model;

#[derive(Args, Debug)]
pub struct ModelsArgs {}

pub fn run(_: ModelsArgs) -> Result<()> {
    for model in Model::ALL {
        let entry = stylize::weights::model_entry(model);
        let dest = stylize::weights::default_weights_path(&entry)?;
        let size = match entry.size {
            Some(bytes) => format!("{:.0} MiB", bytes as f64 / (1u64 << 20) as f64),
            None => "size unknown".to_string(),
        };
        let hash = match (&entry.sha256, entry.expected_sha256()) {
            (Some(_), _) => "SHA-256 checked".to_string(),
            (None, Some(prefix)) => {
                format!("the first {} digits of its SHA-256 checked, as torch.hub does", prefix.len())
            }
            (None, None) => "not checked".to_string(),
        };
        let cache = if stylize::weights::is_downloaded(&entry, &dest) {
            format!("cached at {}", dest.display())
        } else {
            format!("not cached (stylize weights fetch --model {model} puts it at {})", dest.display())
        };
        println!("{model}{}{}", " ".repeat(13usize.saturating_sub(model.name().len())), model.description());
        println!("             {} ({size}, {hash}): {cache}", entry.file_name);
    }
    Ok(())
}
