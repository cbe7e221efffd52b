//! A video frame's temporal terms (Ruder et al. 2016) in the training step: three Adam steps of a
//! frame with two `Temporal` terms (warped earlier results and reliability maps of zeros, ones
//! and fractions) match the method plus `weight * mean(c (x - w)^2)` per term over the normalized
//! image, written in f64, whole and in 16 px tiles.

mod common;

use common::*;
use stylize::gpu::Precision;
use stylize::net::reference::Reference;
use stylize::net::tiling::TileChoice;
use stylize::net::{LossLayers, Plan};
use stylize::pipeline::FrameInputs;
use stylize::rng::Rng;
use stylize::test_support::to_f64;
use stylize::transfer::Temporal;
use stylize::{Image, Losses, Model, Options};

fn random_image(rng: &mut Rng, width: u32, height: u32) -> Image {
    let data = (0..3 * width * height).map(|_| rng.uniform() as f32).collect();
    Image::new(width, height, data)
}

#[test]
fn gpu_temporal_term_matches_the_method_in_f64() {
    if gpu_or_skip("gpu_temporal_term_matches_the_method_in_f64").is_none() {
        return;
    }
    let (width, height) = (40u32, 32u32);
    let mut rng = Rng::new(230);
    let content = random_image(&mut rng, width, height);
    let style = random_image(&mut rng, width, height);
    let pixels = (width * height) as usize;
    // Two terms (long-term consistency): each a warped earlier result and its reliability, a
    // quarter unreliable, a quarter fractional (a reliable_*.pgm), the rest reliable.
    let terms: Vec<(Image, Vec<f32>)> = (0..2)
        .map(|k| {
            let warped = random_image(&mut rng, width, height);
            let reliability = (0..pixels)
                .map(|p| match (p + k) % 4 {
                    0 => 0.0,
                    1 => rng.uniform() as f32,
                    _ => 1.0,
                })
                .collect();
            (warped, reliability)
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let weights_path = dir.path().join("vgg19-eighth.npz");
    let widths: Vec<usize> = Model::Vgg19.widths().iter().map(|w| w / 8).collect();
    stylize::test_support::write_vgg19_npz(&weights_path, &widths, 231).unwrap();
    let weights_spec = weights_path.to_str().unwrap().to_string();
    let steps = 3;
    let temporal_weight = 1e6;
    let base = Options {
        size: width,
        iterations: steps,
        learning_rate: 0.05,
        weights: Some(weights_spec.clone()),
        precision: Precision::F32,
        ..Options::default()
    };

    // The method in f64, plus the temporal term.
    let weights = stylize::load_network_weights(Model::Vgg19, Some(&weights_spec), 0, &mut |_| {}).unwrap();
    let conv_widths: Vec<(usize, usize)> = weights.iter().map(|c| (c.in_channels, c.out_channels)).collect();
    let plan = Plan::new(Model::Vgg19.layers(), &conv_widths, height as usize, width as usize, &LossLayers::default());
    let network = Reference::new(plan.unwrap(), &weights);
    let input = Model::Vgg19.preprocess();
    let normalize = |image: &Image| input.input_of(&to_f64(&image.data));
    let targets = network.targets(&normalize(&content), &normalize(&style));
    let reference_terms: Vec<(Vec<f64>, Vec<f64>)> =
        terms.iter().map(|(warped, c)| (normalize(warped), to_f64(c).repeat(3))).collect();
    let d = (3 * pixels) as f64;
    let mut x = normalize(&content);
    let (beta1, beta2, eps, lr) = (0.9f64, 0.999f64, 1e-8, base.learning_rate);
    let (mut m, mut v) = (vec![0.0; x.len()], vec![0.0; x.len()]);
    let mut expected = Vec::new();
    for t in 1..=steps {
        let (losses, mut grad) = network.loss_and_grad(&x, &targets);
        let mut temporal = 0.0;
        for (target, c) in &reference_terms {
            temporal += temporal_weight / d * (0..x.len()).map(|i| c[i] * (x[i] - target[i]).powi(2)).sum::<f64>();
            for i in 0..x.len() {
                grad[i] += 2.0 * temporal_weight / d * c[i] * (x[i] - target[i]);
            }
        }
        expected.push((losses.content, losses.style, temporal, losses.total + temporal));
        let (bc1, bc2) = (1.0 - beta1.powi(t as i32), 1.0 - beta2.powi(t as i32));
        for i in 0..x.len() {
            m[i] = beta1 * m[i] + (1.0 - beta1) * grad[i];
            v[i] = beta2 * v[i] + (1.0 - beta2) * grad[i] * grad[i];
            x[i] -= lr / bc1 * m[i] / (v[i].sqrt() / bc2.sqrt() + eps);
        }
    }
    let rgb: Vec<f64> = input.to_rgb(&x).into_iter().map(|v| v.clamp(0.0, 1.0)).collect();
    let moved = rgb.iter().zip(&content.data).map(|(a, &b)| (a - b as f64).abs()).fold(0.0, f64::max);
    // Three steps of 0.05 in the normalized space move a value by up to 0.15 x 0.229 in RGB.
    assert!(moved > 0.03, "the image should move: {moved}");
    let column = |k: usize| expected.iter().map(|e| [e.0, e.1, e.2, e.3][k]).collect::<Vec<f64>>();
    assert!(column(2)[0] > 0.1 * column(3)[0], "the temporal term should weigh: {expected:?}");

    for tile in [TileChoice::Off, TileChoice::Side(16)] {
        let options = Options { tile, ..base.clone() };
        let frame = FrameInputs { content: content.clone(), styles: vec![style.clone()], masks: Vec::new() };
        let temporal = terms
            .iter()
            .map(|(warped, c)| Temporal { warped: warped.clone(), reliability: c.clone(), weight: temporal_weight })
            .collect();
        let job = stylize::Job::for_frame(frame, options, Default::default(), None, temporal).unwrap();
        let mut record = LossRecord::default();
        let ctx = stylize::pipeline::open_context(&base).unwrap();
        let (finished, _) = job.run_on(ctx, &weights, &mut record).unwrap();
        let got = |f: fn(&Losses) -> f64| record.losses.iter().map(f).map(|v| v as f32).collect::<Vec<f32>>();
        let what = |name: &str| format!("temporal ({tile:?}): {name}");
        assert_close(&what("content"), &got(|l| l.content), &column(0), 1e-4);
        assert_close(&what("style"), &got(|l| l.style), &column(1), 1e-4);
        assert_close(&what("temporal"), &got(|l| l.temporal), &column(2), 1e-4);
        assert_close(&what("total"), &got(|l| l.total), &column(3), 1e-4);
        assert_close(&what("the result"), &finished.outcome.target.data, &rgb, 1e-4);
    }
}
