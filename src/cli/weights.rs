//! `stylize weights fetch`: the verified download of a model's weights into the cache.

use anyhow::Result;
use clap::{Args, Subcommand};

use super::download::DownloadBar;
use super::values::{ModelArg, defaults};

#[derive(Args, Debug)]
pub struct WeightsArgs {
    #[command(subcommand)]
    pub action: WeightsAction,
}

#[derive(Subcommand, Debug)]
pub enum WeightsAction {
    /// Download a model's weights (torchvision's VGG-19 unless --model says otherwise) into the
    /// cache (or $STYLIZE_WEIGHTS, for vgg19) and verify their size and SHA-256 (where only the
    /// file name's hash is known, the digest's first digits, as torch.hub checks them); does
    /// nothing if they are already there. Prints the file's path.
    Fetch {
        /// Which model's file (`stylize models` lists them).
        #[arg(long, value_enum, default_value_t = defaults().model.into())]
        model: ModelArg,
    },
}

pub fn run(WeightsArgs { action }: WeightsArgs) -> Result<()> {
    match action {
        WeightsAction::Fetch { model } => fetch_weights(model.into()),
    }
}

fn fetch_weights(model: stylize::Model) -> Result<()> {
    let entry = stylize::weights::model_entry(model);
    let dest = stylize::weights::default_weights_path(&entry)?;
    let mut bar = DownloadBar::default();
    let path = stylize::weights::ensure_weights(&entry, &dest, &mut |e| bar.event(&e))?;
    bar.finish();
    println!("{}", path.display());
    Ok(())
}
