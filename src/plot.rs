//! The losses of a run as they were read back: the rows of `--loss-log`'s CSV, and a PNG plot of
//! the curves (`--loss-plot`, the live page's `/losses.csv`). Text is drawn with an embedded
//! DejaVu Sans Mono (assets/fonts, Bitstream Vera licence), so no system font is needed.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;

use crate::Losses;

/// The font the plot's text is drawn with, registered once as plotters' "sans-serif".
static FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSansMono.ttf");
static REGISTER_FONT: Once = Once::new();

/// One evaluation of the losses: the scale (from 0), the step within it, and the step counted over
/// all scales (the plot's x).
#[derive(Clone, Debug, PartialEq)]
pub struct LossRow {
    pub scale: usize,
    pub step: usize,
    pub run_step: usize,
    pub losses: Losses,
}

/// Loss rows in the order they were read, with the columns of `--loss-log`: `scale` only for
/// multi-scale runs, `tv` only when the term is on.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LossHistory {
    pub multiscale: bool,
    pub tv: bool,
    /// Whether to plot the temporal term of a clip's frames (`stylize video --loss-plot`).
    pub temporal: bool,
    /// alpha and beta, so the plot shows each term's share of the total.
    pub content_weight: f64,
    pub style_weight: f64,
    pub rows: Vec<LossRow>,
}

impl LossHistory {
    pub fn new(options: &crate::Options) -> Self {
        Self {
            multiscale: options.scales > 1,
            tv: options.tv_weight > 0.0,
            temporal: false,
            content_weight: options.content_weight,
            style_weight: options.style_weight,
            rows: Vec::new(),
        }
    }

    /// The CSV header line (with its newline): `[scale,]step,content,style,[tv,]total`.
    pub fn csv_header(&self) -> String {
        let scale = if self.multiscale { "scale," } else { "" };
        let tv = if self.tv { "tv," } else { "" };
        format!("{scale}step,content,style,{tv}total\n")
    }

    /// One CSV line (with its newline); the scale is counted from 1, as `--loss-log` writes it.
    pub fn csv_row(&self, row: &LossRow) -> String {
        let l = &row.losses;
        let scale = if self.multiscale { format!("{},", row.scale + 1) } else { String::new() };
        let tv = if self.tv { format!("{:e},", l.tv) } else { String::new() };
        format!("{scale}{},{:e},{:e},{tv}{:e}\n", row.step, l.content, l.style, l.total)
    }

    pub fn to_csv(&self) -> String {
        let mut csv = self.csv_header();
        for row in &self.rows {
            csv.push_str(&self.csv_row(row));
        }
        csv
    }

    /// The plotted series: (label, colour, points) for the weighted content and style terms, the
    /// TV term when on, and the total.
    fn series(&self) -> Vec<Series> {
        let pick = |f: &dyn Fn(&Losses) -> f64| -> Vec<(f64, f64)> {
            self.rows
                .iter()
                .map(|r| (r.run_step as f64, f(&r.losses)))
                .filter(|(_, y)| y.is_finite() && *y > 0.0)
                .collect()
        };
        let (alpha, beta) = (self.content_weight, self.style_weight);
        // The total first, so the term that dominates it is drawn on top and stays visible.
        let mut series = vec![
            ("total".to_string(), TOTAL_COLOR, pick(&|l| l.total)),
            (format!("content x {alpha}"), CONTENT_COLOR, pick(&|l| alpha * l.content)),
            (format!("style x {beta:e}"), STYLE_COLOR, pick(&|l| beta * l.style)),
        ];
        if self.tv {
            series.push(("tv".to_string(), TV_COLOR, pick(&|l| l.tv)));
        }
        if self.temporal {
            series.push(("temporal".to_string(), TEMPORAL_COLOR, pick(&|l| l.temporal)));
        }
        series
    }
}

/// One plotted curve: its legend label, colour and (step, value) points.
type Series = (String, RGBColor, Vec<(f64, f64)>);

pub const CONTENT_COLOR: RGBColor = RGBColor(31, 119, 180);
pub const STYLE_COLOR: RGBColor = RGBColor(214, 39, 40);
pub const TV_COLOR: RGBColor = RGBColor(44, 160, 44);
pub const TOTAL_COLOR: RGBColor = RGBColor(148, 103, 189);
pub const TEMPORAL_COLOR: RGBColor = RGBColor(255, 127, 14);

/// Size of `--loss-plot`'s image.
pub const PLOT_WIDTH: u32 = 800;
pub const PLOT_HEIGHT: u32 = 500;

/// Why a plot could not be drawn or written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("loss plot: {0}")]
    Draw(String),
    #[error("loss plot {path}: {source}")]
    Write { path: String, source: std::io::Error },
}

/// The loss curves as an RGB8 image `width` x `height` (row-major, 3 bytes a pixel): log-scale
/// y, step on x, one line per term, a legend. An empty history gives the axes alone.
pub fn render(history: &LossHistory, width: u32, height: u32) -> Result<Vec<u8>, PlotError> {
    REGISTER_FONT.call_once(|| {
        // The bytes are a valid TrueType file (checked by the tests); a failure leaves text out.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
    let draw = |e: &dyn std::fmt::Display| PlotError::Draw(e.to_string());
    let mut pixels = vec![255u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw(&e))?;
        let series = history.series();
        let points = series.iter().flat_map(|(_, _, p)| p.iter());
        let x_max = points.clone().map(|p| p.0).fold(1.0f64, f64::max);
        let (mut y_min, mut y_max) =
            points.map(|p| p.1).fold((f64::INFINITY, 0.0f64), |(lo, hi), y| (lo.min(y), hi.max(y)));
        if !(y_min.is_finite() && y_max > 0.0) {
            (y_min, y_max) = (1e-3, 1.0);
        }
        // A decade of margin when the curves are flat, so the log axis has ticks to show.
        let (y_min, y_max) = if y_max / y_min < 10.0 { (y_min / 3.0, y_max * 3.0) } else { (y_min / 1.5, y_max * 1.5) };
        let mut chart = ChartBuilder::on(&root)
            .caption("losses", ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(80)
            .build_cartesian_2d(0.0..x_max, (y_min..y_max).log_scale())
            .map_err(|e| draw(&e))?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("loss (log scale)")
            .y_label_formatter(&|v| format!("{v:.0e}"))
            .x_label_formatter(&|v| format!("{v:.0}"))
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(|e| draw(&e))?;
        for (label, color, points) in series {
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(if label == "total" { 4 } else { 2 })))
                .map_err(|e| draw(&e))?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(|e| draw(&e))?;
        root.present().map_err(|e| draw(&e))?;
    }
    Ok(pixels)
}

/// `render` at `PLOT_WIDTH` x `PLOT_HEIGHT`, encoded as PNG.
pub fn render_png(history: &LossHistory) -> Result<Vec<u8>, PlotError> {
    let pixels = render(history, PLOT_WIDTH, PLOT_HEIGHT)?;
    let image = image::RgbImage::from_raw(PLOT_WIDTH, PLOT_HEIGHT, pixels).expect("buffer of the plot's size");
    let mut bytes = std::io::Cursor::new(Vec::new());
    image.write_to(&mut bytes, image::ImageFormat::Png).map_err(|e| PlotError::Draw(e.to_string()))?;
    Ok(bytes.into_inner())
}

/// Writes the plot to `path` as PNG atomically (a temp file beside it, renamed over it).
pub fn write_png(path: &Path, history: &LossHistory) -> Result<(), PlotError> {
    let bytes = render_png(history)?;
    crate::image_io::write_atomically(path, &bytes)
        .map_err(|source| PlotError::Write { path: path.display().to_string(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn losses(content: f64, style: f64, tv: f64) -> Losses {
        Losses {
            content_terms: vec![content],
            style_terms: vec![style],
            content,
            style,
            tv,
            temporal: 0.0,
            total: content + 1e6 * style + tv,
        }
    }

    fn history(multiscale: bool, tv: bool) -> LossHistory {
        let options = crate::Options {
            scales: if multiscale { 2 } else { 1 },
            tv_weight: if tv { 1.0 } else { 0.0 },
            ..Default::default()
        };
        let mut h = LossHistory::new(&options);
        for step in 0..50 {
            let s = step as f64;
            h.rows.push(LossRow { scale: 0, step, run_step: step, losses: losses(1.0 + s, 1e-3 / (1.0 + s), 0.5) });
        }
        h
    }

    #[test]
    fn csv_has_the_loss_log_columns() {
        let h = history(true, true);
        let csv = h.to_csv();
        let mut lines = csv.lines();
        assert_eq!(lines.next(), Some("scale,step,content,style,tv,total"));
        assert_eq!(lines.next(), Some("1,0,1e0,1e-3,5e-1,1.0015e3"));
        assert_eq!(history(false, false).csv_header(), "step,content,style,total\n");
    }

    #[test]
    fn plot_draws_every_curve_in_its_colour() {
        let pixels = render(&history(false, true), PLOT_WIDTH, PLOT_HEIGHT).unwrap();
        for color in [CONTENT_COLOR, STYLE_COLOR, TV_COLOR, TOTAL_COLOR] {
            let count = pixels.chunks(3).filter(|p| p == &[color.0, color.1, color.2]).count();
            assert!(count > 300, "colour {color:?}: {count} pixels");
        }
        // Text (the embedded font) is drawn: dark pixels outside the curves.
        let dark = pixels.chunks(3).filter(|p| p.iter().all(|&c| c < 80)).count();
        assert!(dark > 500, "{dark} dark pixels");
    }
}
