//! `stylize recolor`: the colour-only transfer, no network and no device.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use stylize::image_io;

#[derive(Args, Debug)]
pub struct RecolorArgs {
    /// The image whose colours change.
    #[arg(long, value_name = "PATH")]
    pub content: PathBuf,
    /// The image whose colour statistics it takes.
    #[arg(long, value_name = "PATH")]
    pub style: PathBuf,
    /// Where to write the result; the format follows the extension.
    #[arg(long, short, value_name = "PATH")]
    pub output: PathBuf,
}

pub fn run(RecolorArgs { content, style, output }: RecolorArgs) -> Result<()> {
    recolor(&content, &style, &output)
}

/// `stylize recolor`: the colour-only transfer, 16-bit out for 16-bit content where the format allows.
fn recolor(content_path: &Path, style_path: &Path, output: &Path) -> Result<()> {
    image_io::check_output_path(output, 8)?;
    let content = image_io::load_image(content_path)?;
    let style = image_io::load_image(style_path)?;
    let wide = image_io::source_bit_depth(content_path)? == 16;
    let format = image_io::OutputFormat::from_path(output).map_err(|p| anyhow::anyhow!("{}: {p}", output.display()))?;
    let depth = if wide && format.supports_16_bit() { 16 } else { 8 };
    let result = image_io::color::recolor(&content, &style);
    image_io::save_image(output, &result, depth)?;
    eprintln!("stylize: wrote {} ({}x{}, {depth}-bit)", output.display(), result.width, result.height);
    Ok(())
}
