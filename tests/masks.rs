//! Spatial control (`--mask`, guided Gram matrices, Gatys et al. 2017) and colour-only transfer
//! (`stylize recolor`): end to end on lavapipe with small random networks, the command line's bad
//! input, and `recolor` against an f64 computation of its formula.

mod common;
use common::{stylize, tiny_weights};
use std::path::{Path, PathBuf};
use std::process::Output;

use stylize::image_io::{self, Image};
use stylize::net::random_weights;
use stylize::rng::Rng;
use stylize::test_support::gpu_or_skip;
use stylize::{Options, Silent, StyleTransfer};

/// An image whose channel c is uniform in `ranges[c]`.
fn random_image(rng: &mut Rng, width: u32, height: u32, ranges: [(f64, f64); 3]) -> Image {
    let plane = (width * height) as usize;
    let data = (0..3 * plane).map(|i| rng.range(ranges[i / plane].0, ranges[i / plane].1) as f32).collect();
    Image::new(width, height, data)
}

fn save(path: &Path, image: &Image) {
    image_io::save_image(path, image, 8).unwrap();
}

/// Mean colour of the pixels whose column is in `columns`.
fn mean_colour(image: &Image, columns: std::ops::Range<u32>) -> [f64; 3] {
    let mut sum = [0.0; 3];
    let mut count = 0.0;
    for y in 0..image.height {
        for x in columns.clone() {
            let p = image.pixel(x, y);
            for c in 0..3 {
                sum[c] += p[c] as f64;
            }
            count += 1.0;
        }
    }
    sum.map(|s| s / count)
}

/// A mask white in the columns `columns`, black elsewhere.
fn column_mask(width: u32, height: u32, columns: std::ops::Range<u32>) -> Vec<f32> {
    (0..width * height).map(|i| if columns.contains(&(i % width)) { 1.0 } else { 0.0 }).collect()
}

const RED: [(f64, f64); 3] = [(0.7, 1.0), (0.0, 0.25), (0.0, 0.25)];
const BLUE: [(f64, f64); 3] = [(0.0, 0.25), (0.0, 0.25), (0.7, 1.0)];

/// Shallow style layers (their receptive fields stay within a region), no content term, a high
/// learning rate: the style terms alone move the colours.
fn colour_options() -> Options {
    Options {
        content_layers: vec![],
        content_weight: 0.0,
        style_layers: vec!["relu1_1".into(), "relu2_1".into()],
        style_layer_weights: vec![1.0, 1.0],
        learning_rate: 0.05,
        ..Options::default()
    }
}

/// 150 steps of a grey 32x24 content with a red style masked to its left half and a blue one to
/// its right half, under `options`: the content and the result (None without a GPU).
fn two_region_run(test: &str, options: Options) -> Option<(Image, Image)> {
    let ctx = gpu_or_skip(test)?;
    let (w, h) = (32, 24);
    let mut rng = Rng::new(3);
    let content = random_image(&mut rng, w, h, [(0.4, 0.6); 3]);
    let styles = [random_image(&mut rng, w, h, RED), random_image(&mut rng, w, h, BLUE)];
    let masks = [column_mask(w, h, 0..w / 2), column_mask(w, h, w / 2..w)];
    let weights = random_weights(&[8, 8, 16, 16], 4);
    let mut transfer = StyleTransfer::with_masks(ctx, &weights, &content, &styles, &masks, &content, &options).unwrap();
    let result = transfer.run(150, &mut Silent).unwrap();
    Some((content, result))
}

/// Two masked styles, a red one on the left half and a blue one on the right: after the run each
/// half has its own style's colour, the grey content's neutrality gone in opposite directions.
#[test]
fn masked_styles_put_each_style_in_its_own_region() {
    let Some((content, result)) = two_region_run("masked_styles_put_each_style_in_its_own_region", colour_options())
    else {
        return;
    };
    let w = content.width;
    // Away from the seam, where receptive fields see both regions.
    let (left, right) = (mean_colour(&result, 0..12), mean_colour(&result, 20..w));
    let before = (mean_colour(&content, 0..12), mean_colour(&content, 20..w));
    eprintln!("mean colour: content {before:?}, left {left:?}, right {right:?}");
    assert!(left[0] - left[2] > 0.2, "the left half should be red: {left:?}");
    assert!(right[2] - right[0] > 0.2, "the right half should be blue: {right:?}");
    // Each half moved towards its own style, not the other's.
    assert!(left[0] > before.0[0] + 0.1 && left[2] < before.0[2] - 0.1, "{left:?} vs {:?}", before.0);
    assert!(right[2] > before.1[2] + 0.1 && right[0] < before.1[0] - 0.1, "{right:?} vs {:?}", before.1);
}

/// The same with the W2 loss (each region's weighted mean and covariance against its own
/// style's): the left half turns red, the right half blue.
#[test]
fn masked_w2_styles_put_each_style_in_its_own_region() {
    let options = Options { style_loss: stylize::StyleLoss::W2, style_weight: W2_STYLE_WEIGHT, ..colour_options() };
    let Some((content, result)) = two_region_run("masked_w2_styles_put_each_style_in_its_own_region", options) else {
        return;
    };
    let w = content.width;
    let (left, right) = (mean_colour(&result, 0..12), mean_colour(&result, 20..w));
    eprintln!("masked w2: mean colour left {left:?}, right {right:?}");
    assert!(left[0] - left[2] > 0.2, "the left half should be red: {left:?}");
    assert!(right[2] - right[0] > 0.2, "the right half should be blue: {right:?}");
}

/// W2's style weight for `masked_w2_styles_put_each_style_in_its_own_region` (its loss is on
/// another scale than the Gram's).
const W2_STYLE_WEIGHT: f64 = 100.0;

/// One all-white mask is the original method: the same losses and the same image, step by step.
#[test]
fn white_mask_run_equals_the_unmasked_run() {
    let Some(ctx) = gpu_or_skip("white_mask_run_equals_the_unmasked_run") else {
        return;
    };
    let (w, h) = (24, 20);
    let mut rng = Rng::new(5);
    let content = random_image(&mut rng, w, h, [(0.0, 1.0); 3]);
    let style = random_image(&mut rng, w, h, RED);
    let weights = stylize::load_network_weights(Default::default(), tiny_weights().to_str(), 0, &mut |_| {}).unwrap();
    let options = Options { learning_rate: 0.02, ..Options::default() };
    let white = vec![vec![1.0; (w * h) as usize]];
    let ctx2 = gpu_or_skip("white_mask_run_equals_the_unmasked_run").unwrap();
    let mut masked =
        StyleTransfer::with_masks(ctx, &weights, &content, std::slice::from_ref(&style), &white, &content, &options)
            .unwrap();
    let mut plain = StyleTransfer::new(ctx2, &weights, &content, &style, &content, &options).unwrap();
    for step in 0..6 {
        masked.step();
        plain.step();
        masked.sync().unwrap();
        plain.sync().unwrap();
        let (a, b) = (masked.losses().unwrap(), plain.losses().unwrap());
        assert!(b.style > 0.0);
        for (what, x, y) in
            [("total", a.total, b.total), ("style", a.style, b.style), ("content", a.content, b.content)]
        {
            assert!((x - y).abs() <= 1e-6 * y.abs().max(1e-12), "step {step}: {what} {x} vs {y}");
        }
    }
    let (a, b) = (masked.image().unwrap(), plain.image().unwrap());
    let diff = a.data.iter().zip(&b.data).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(diff <= 1e-5, "images differ by {diff}");
    assert!(b.data.iter().zip(&content.data).any(|(x, y)| (x - y).abs() > 1e-3), "the run moved the image");
}

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Self {
        let files = Self { dir: tempfile::tempdir().unwrap() };
        let mut rng = Rng::new(7);
        save(&files.path("content.png"), &random_image(&mut rng, 24, 20, [(0.0, 1.0); 3]));
        save(&files.path("red.png"), &random_image(&mut rng, 17, 13, RED));
        save(&files.path("blue.png"), &random_image(&mut rng, 20, 20, BLUE));
        // A colour mask (luminance is read) and a grey one, of other sizes than the content.
        let colour_left =
            Image::new(12, 10, (0..3 * 120).map(|i| if (i % 120) % 12 < 6 { 1.0 } else { 0.0 }).collect());
        save(&files.path("left.png"), &colour_left);
        image::GrayImage::from_fn(12, 10, |x, _| image::Luma([if x >= 6 { 255 } else { 0 }]))
            .save(files.path("right.png"))
            .unwrap();
        std::fs::write(files.path("broken.png"), b"not a png at all").unwrap();
        files
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn args(&self, extra: &[&str], output: &Path) -> Vec<String> {
        let mut args: Vec<String> = ["--content", "content.png"].iter().map(|s| s.to_string()).collect();
        for a in extra {
            args.push(if a.ends_with(".png") { self.path(a).to_str().unwrap().to_string() } else { a.to_string() });
        }
        args[1] = self.path("content.png").to_str().unwrap().to_string();
        args.extend(["--weights".into(), tiny_weights().to_str().unwrap().into()]);
        args.extend(["--iterations".into(), "2".into(), "--output".into(), output.to_str().unwrap().into()]);
        args
    }
}

/// Exit code `code`, no panic, exactly one stderr line containing every `needle`, no output file.
fn assert_clean_failure(what: &str, output: &Output, code: i32, needles: &[&str], out_file: &Path) {
    common::assert_failure(what, output, code, needles, out_file, true);
}

/// Mask count mismatch, masks with blend weights, an unreadable or missing mask, a mask before
/// its style: one line, a non-zero exit, nothing written (all found before any GPU work).
#[test]
fn cli_bad_masks_give_one_line_and_write_nothing() {
    let f = Files::new();
    let out = f.path("out.png");
    for (what, extra, code, needles) in [
        (
            "two styles, one mask",
            vec!["--style", "red.png", "--mask", "left.png", "--style", "blue.png"],
            1,
            vec!["--mask is given 1 times for 2 --style images"],
        ),
        (
            "masks with blend weights",
            vec![
                "--style",
                "red.png",
                "--mask",
                "left.png",
                "--style",
                "blue.png",
                "--mask",
                "right.png",
                "--style-blend-weights",
                "1,2",
            ],
            1,
            vec!["--mask and --style-blend-weights exclude each other"],
        ),
        ("unreadable mask", vec!["--style", "red.png", "--mask", "broken.png"], 1, vec!["broken.png"]),
        ("missing mask", vec!["--style", "red.png", "--mask", "nowhere.png"], 1, vec!["nowhere.png"]),
        ("mask before its style", vec!["--mask", "left.png", "--style", "red.png"], 2, vec!["--mask number 1"]),
        (
            "second mask after the wrong style",
            vec!["--style", "red.png", "--style", "blue.png", "--mask", "left.png", "--mask", "right.png"],
            2,
            vec!["--mask number 1"],
        ),
    ] {
        let output = stylize().args(f.args(&extra, &out)).output().unwrap();
        assert_clean_failure(what, &output, code, &needles, &out);
    }
}

/// A masked run on the command line, with the masks shown after their styles in --side-by-side.
#[test]
fn cli_masked_run_shows_the_masks_side_by_side() {
    if gpu_or_skip("cli_masked_run_shows_the_masks_side_by_side").is_none() {
        return;
    }
    let f = Files::new();
    let out = f.path("out.png");
    let sbs = f.path("sbs.png");
    let extra = ["--style", "red.png", "--mask", "left.png", "--style", "blue.png", "--mask", "right.png"];
    let mut args = f.args(&extra, &out);
    args.extend(["--side-by-side".into(), sbs.to_str().unwrap().into()]);
    let output = stylize().args(&args).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let result = image::open(&out).unwrap();
    assert_eq!((result.width(), result.height()), (24, 20));
    // content | red | left mask | blue | right mask | result
    let composite = image::open(&sbs).unwrap().to_rgb8();
    assert_eq!((composite.width(), composite.height()), (6 * 24, 20));
    let at = |panel: u32, x: u32| composite.get_pixel(panel * 24 + x, 10).0;
    assert_eq!((at(2, 2), at(2, 21)), ([255; 3], [0; 3]), "the left mask");
    assert_eq!((at(4, 2), at(4, 21)), ([0; 3], [255; 3]), "the right mask");
}

/// `--style-loss w2` with two masked styles runs on the command line: each region's weighted
/// mean and covariance against its own style's (`ops::w2`), a finite, positive style loss in the
/// loss log at every step.
#[test]
fn cli_w2_with_masks_runs() {
    if gpu_or_skip("cli_w2_with_masks_runs").is_none() {
        return;
    }
    let f = Files::new();
    let out = f.path("w2-masked.png");
    let log = f.path("w2-masked.csv");
    let extra = [
        "--style-loss",
        "w2",
        "--style",
        "red.png",
        "--mask",
        "left.png",
        "--style",
        "blue.png",
        "--mask",
        "right.png",
    ];
    let mut args = f.args(&extra, &out);
    args.extend(["--loss-log".into(), log.to_str().unwrap().into()]);
    let output = stylize().args(&args).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let result = image::open(&out).unwrap();
    assert_eq!((result.width(), result.height()), (24, 20));
    let csv = std::fs::read_to_string(&log).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let style = header.iter().position(|&h| h == "style").unwrap_or_else(|| panic!("a style column: {csv}"));
    let rows: Vec<f64> = csv.lines().skip(1).map(|line| line.split(',').nth(style).unwrap().parse().unwrap()).collect();
    assert_eq!(rows.len(), 2, "{csv}");
    assert!(rows.iter().all(|v| v.is_finite() && *v > 0.0), "the masked W2 style loss: {csv}");
}

/// The formula of `stylize recolor` computed independently in f64: matrix square roots by the
/// Denman-Beavers iteration (Y -> C^1/2, Z -> C^-1/2), not an eigen-decomposition.
fn recolor_f64(content: &Image, style: &Image) -> Vec<f64> {
    type M = [[f64; 3]; 3];
    let stats = |image: &Image| {
        let plane = image.plane_len();
        let px = |i: usize| [0, 1, 2].map(|c| image.data[c * plane + i] as f64);
        let mut mean = [0.0; 3];
        (0..plane).for_each(|i| (0..3).for_each(|c| mean[c] += px(i)[c] / plane as f64));
        let mut cov = [[0.0; 3]; 3];
        for i in 0..plane {
            let x = px(i);
            for a in 0..3 {
                for b in 0..3 {
                    cov[a][b] += (x[a] - mean[a]) * (x[b] - mean[b]) / plane as f64;
                }
            }
        }
        (mean, cov)
    };
    let mul = |a: &M, b: &M| -> M {
        std::array::from_fn(|r| std::array::from_fn(|c| (0..3).map(|k| a[r][k] * b[k][c]).sum()))
    };
    let inv = |m: &M| -> M {
        let cof = |r: usize, c: usize| {
            let (r1, r2, c1, c2) = ((r + 1) % 3, (r + 2) % 3, (c + 1) % 3, (c + 2) % 3);
            m[r1][c1] * m[r2][c2] - m[r1][c2] * m[r2][c1]
        };
        let det: f64 = (0..3).map(|c| m[0][c] * cof(0, c)).sum();
        std::array::from_fn(|r| std::array::from_fn(|c| cof(c, r) / det))
    };
    let roots = |m: &M| {
        let (mut y, mut z): (M, M) = (*m, [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]);
        for _ in 0..60 {
            let (yi, zi) = (inv(&y), inv(&z));
            let next_y = std::array::from_fn(|r| std::array::from_fn(|c| (y[r][c] + zi[r][c]) / 2.0));
            z = std::array::from_fn(|r| std::array::from_fn(|c| (z[r][c] + yi[r][c]) / 2.0));
            y = next_y;
        }
        (y, z)
    };
    let (mu_c, cov_c) = stats(content);
    let (mu_s, cov_s) = stats(style);
    let a = mul(&roots(&cov_s).0, &roots(&cov_c).1);
    let plane = content.plane_len();
    let mut out = vec![0.0; 3 * plane];
    for i in 0..plane {
        let d = [0, 1, 2].map(|c| content.data[c * plane + i] as f64 - mu_c[c]);
        for r in 0..3 {
            out[r * plane + i] = ((0..3).map(|k| a[r][k] * d[k]).sum::<f64>() + mu_s[r]).clamp(0.0, 1.0);
        }
    }
    out
}

#[test]
fn recolor_matches_its_formula_in_f64() {
    let mut rng = Rng::new(11);
    // Correlated channels with different spreads, some values clamped.
    let correlated = |rng: &mut Rng, w: u32, h: u32, mix: [f64; 3], base: [f64; 3]| {
        let plane = (w * h) as usize;
        let shared: Vec<f64> = (0..plane).map(|_| rng.range(-0.3, 0.3)).collect();
        let data: Vec<f32> = (0..3 * plane)
            .map(|i| {
                (base[i / plane] + mix[i / plane] * shared[i % plane] + rng.range(-0.1, 0.1)).clamp(0.0, 1.0) as f32
            })
            .collect();
        Image::new(w, h, data)
    };
    let content = correlated(&mut rng, 19, 13, [1.0, 0.5, -0.3], [0.5, 0.4, 0.6]);
    let style = correlated(&mut rng, 11, 17, [0.2, 1.0, 0.8], [0.3, 0.6, 0.5]);
    let out = stylize::image_io::color::recolor(&content, &style);
    assert_eq!((out.width, out.height), (19, 13));
    let expected = recolor_f64(&content, &style);
    let err = stylize::test_support::rel_err(&out.data, &expected);
    assert!(err < 1e-6, "relative error {err:e}");
    // The style's colour statistics where nothing was clamped: the mean moved to the style's.
    let (mu_out, _) = stylize::image_io::color::statistics(&out);
    let (mu_s, _) = stylize::image_io::color::statistics(&style);
    assert!((0..3).all(|c| (mu_out[c] - mu_s[c]).abs() < 0.02), "{mu_out:?} vs {mu_s:?}");
    // A flat content (zero covariance) stays finite: the eigenvalue floor.
    let flat = stylize::image_io::color::recolor(&Image::filled(5, 4, [0.2, 0.3, 0.4]), &style);
    assert!(flat.data.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)));
}

/// `stylize recolor` on files: 16-bit PNG in, 16-bit PNG out; 8-bit in, 8-bit out; a 16-bit
/// content to JPEG gives 8 bits; bad input gets one line and writes nothing.
#[test]
fn cli_recolor_keeps_16_bits_and_reports_bad_input() {
    let f = Files::new();
    let mut rng = Rng::new(13);
    let wide = image::ImageBuffer::<image::Rgb<u16>, Vec<u16>>::from_fn(9, 7, |_, _| {
        image::Rgb([0, 0, 0].map(|_: u16| (rng.uniform() * 65535.0) as u16))
    });
    wide.save(f.path("wide.png")).unwrap();
    let run = |content: &str, output: &str| {
        stylize()
            .args(["recolor", "--content"])
            .arg(f.path(content))
            .arg("--style")
            .arg(f.path("blue.png"))
            .arg("-o")
            .arg(f.path(output))
            .output()
            .unwrap()
    };
    for (content, output, color) in [
        ("wide.png", "wide_out.png", image::ColorType::Rgb16),
        ("content.png", "narrow_out.png", image::ColorType::Rgb8),
        ("wide.png", "wide_out.jpg", image::ColorType::Rgb8),
    ] {
        let result = run(content, output);
        assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
        let written = image::open(f.path(output)).unwrap();
        assert_eq!((written.color(), written.width()), (color, if content == "wide.png" { 9 } else { 24 }), "{output}");
    }
    // The 16-bit output is the library's result at 16 bits.
    let expected = stylize::image_io::color::recolor(
        &image_io::load_image(&f.path("wide.png")).unwrap(),
        &image_io::load_image(&f.path("blue.png")).unwrap(),
    );
    let written = image::open(f.path("wide_out.png")).unwrap().into_rgb16();
    let [r, _, _] = written.get_pixel(3, 2).0;
    assert!((r as f64 / 65535.0 - expected.pixel(3, 2)[0] as f64).abs() < 1e-4);
    let out = f.path("bad_out.png");
    let result = run("broken.png", "bad_out.png");
    assert_clean_failure("unreadable content", &result, 1, &["broken.png"], &out);
    let result = run("missing.png", "bad_out.png");
    assert_clean_failure("missing content", &result, 1, &["missing.png"], &out);
    let result = run("content.png", "bad_out.xyz");
    assert_clean_failure("unknown format", &result, 1, &["xyz"], &f.path("bad_out.xyz"));
}

#[test]
fn help_documents_masks_and_recolor() {
    let output = stylize().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("--mask") && help.contains("recolor"), "{help}");
    let output = stylize().args(["recolor", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in ["--content", "--style", "--output", "Cov_s^1/2"] {
        assert!(help.contains(flag), "recolor --help lacks {flag}:\n{help}");
    }
}
