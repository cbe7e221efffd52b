//! `stylize weights fetch`: the verified download of the default weights into the cache.

use anyhow::Result;
use clap::{Args, Subcommand};

use super::download::DownloadBar;

#[derive(Args, Debug)]
pub struct WeightsArgs {
    #[command(subcommand)]
    pub action: WeightsAction,
}

#[derive(Subcommand, Debug)]
pub enum WeightsAction {
    /// Download torchvision's VGG-19 weights into the cache (or $STYLIZE_WEIGHTS) and verify
    /// their size and SHA-256; does nothing if they are already there.
    Fetch,
}

pub fn run(WeightsArgs { action }: WeightsArgs) -> Result<()> {
    match action {
        WeightsAction::Fetch => fetch_weights(),
    }
}

fn fetch_weights() -> Result<()> {
    let entry = stylize::weights::default_entry();
    let dest = stylize::weights::default_weights_path(&entry)?;
    let mut bar = DownloadBar::default();
    let path = stylize::weights::ensure_weights(&entry, &dest, &mut |e| bar.event(&e))?;
    bar.finish();
    println!("{}", path.display());
    Ok(())
}
