//! `--preset`: each recipe run through the library's pipeline (`Job`, as the CLI runs it) against
//! that tool's recipe written out here in f64, from its own description: the preprocessing, the
//! losses, their gradients, the regularizer, the initial image and the optimizer. Only the network
//! itself (convolutions, ReLUs, pools and their backward passes) is the f64 method's
//! (`net::reference`, which tests/gradcheck.rs checks).

mod common;

use common::*;
use stylize::gpu::Precision;
use stylize::net::reference::Reference;
use stylize::net::tiling::TileChoice;
use stylize::net::{LossLayers, Plan};
use stylize::optim::LbfgsConfig;
use stylize::optim::lbfgs::reference::{self as lbfgs, LbfgsState};
use stylize::test_support::to_f64;
use stylize::{Losses, Model, Options, Preset};

/// Caffe's mean pixel, in its BGR order.
const MEAN_BGR: [f64; 3] = [103.939, 116.779, 123.68];

/// neural-style's input: BGR, x 255, minus the mean pixel (CHW planes).
fn caffe(rgb: &[f64]) -> Vec<f64> {
    let plane = rgb.len() / 3;
    (0..3).flat_map(|c| rgb[(2 - c) * plane..(3 - c) * plane].iter().map(move |v| v * 255.0 - MEAN_BGR[c])).collect()
}

/// The inverse of `caffe`.
fn uncaffe(x: &[f64]) -> Vec<f64> {
    let plane = x.len() / 3;
    (0..3)
        .flat_map(|c| x[(2 - c) * plane..(3 - c) * plane].iter().map(move |v| (v + MEAN_BGR[2 - c]) / 255.0))
        .collect()
}

/// `F F^T / (C H W)`, neural-style's `GramMatrix` divided by `input:nElement()`.
fn gram_by_chw(f: &[f64], channels: usize) -> Vec<f64> {
    let n = f.len() / channels;
    let m = f.len() as f64;
    let mut g = vec![0.0; channels * channels];
    for i in 0..channels {
        for j in 0..channels {
            g[i * channels + j] = (0..n).map(|k| f[i * n + k] * f[j * n + k]).sum::<f64>() / m;
        }
    }
    g
}

/// neural-style's `TVLoss:updateGradInput` with `strength`, line by line (one image, CHW).
fn tv_gradient(x: &[f64], height: usize, width: usize, strength: f64) -> Vec<f64> {
    let mut grad = vec![0.0; x.len()];
    let at = |c: usize, y: usize, x_: usize| c * height * width + y * width + x_;
    for c in 0..3 {
        for y in 0..height - 1 {
            for i in 0..width - 1 {
                let x_diff = x[at(c, y, i)] - x[at(c, y, i + 1)];
                let y_diff = x[at(c, y, i)] - x[at(c, y + 1, i)];
                grad[at(c, y, i)] += strength * (x_diff + y_diff);
                grad[at(c, y, i + 1)] -= strength * x_diff;
                grad[at(c, y + 1, i)] -= strength * y_diff;
            }
        }
    }
    grad
}

/// The sum of squared differences on that grid, of which `tv_gradient` is the gradient of half.
fn tv_sum(x: &[f64], height: usize, width: usize) -> f64 {
    let at = |c: usize, y: usize, x_: usize| c * height * width + y * width + x_;
    let mut sum = 0.0;
    for c in 0..3 {
        for y in 0..height - 1 {
            for i in 0..width - 1 {
                sum += (x[at(c, y, i)] - x[at(c, y, i + 1)]).powi(2) + (x[at(c, y, i)] - x[at(c, y + 1, i)]).powi(2);
            }
        }
    }
    sum
}

/// `--preset jcjohnson` (random weights at a quarter of VGG-19's widths, a 24 x 20 image, whole and in
/// 16 px tiles) against neural-style's recipe in f64: the Caffe VGG-19's BGR 0-255 input, content
/// 5 mean((F - P)^2) at relu4_2, style 100 sum_l mean((G_l - A_l)^2) with G = F F^T / (C H W) at
/// relu1_1..relu5_1, the TV gradient of neural-style's TVLoss at strength 1e-3 (the loss reports
/// half its sum of squares times that), L-BFGS (PyTorch's, lr 1, history 100) from normal noise
/// x 0.001 in Caffe space. Compared: every step's losses and the RGB result.
#[test]
fn gpu_jcjohnson_preset_matches_neural_styles_recipe_in_f64() {
    let Some(ctx) = gpu_or_skip("gpu_jcjohnson_preset_matches_neural_styles_recipe_in_f64") else {
        return;
    };
    let (width, height, steps) = (24usize, 20usize, 6usize);
    let dir = tempfile::tempdir().unwrap();
    let (content_path, style_path) = (dir.path().join("content.png"), dir.path().join("style.png"));
    random_png(&content_path, width as u32, height as u32, 80);
    random_png(&style_path, width as u32, height as u32, 81);
    // The Caffe VGG-19's layout at a quarter of its widths.
    let weights_path = dir.path().join("vgg19-caffe-quarter.npz");
    let widths: Vec<usize> = Model::Vgg19Caffe.widths().iter().map(|w| w / 4).collect();
    stylize::test_support::write_vgg19_npz(&weights_path, &widths, 82).unwrap();
    let weights_spec = weights_path.to_str().unwrap().to_string();
    let recipe = Preset::Jcjohnson.options();
    let base = Options {
        size: width as u32,
        iterations: steps,
        weights: Some(weights_spec.clone()),
        seed: 83,
        precision: Precision::F32,
        ..recipe.clone()
    };

    // The recipe in f64.
    let weights = stylize::load_network_weights(Model::Vgg19Caffe, Some(&weights_spec), 0, &mut |_| {}).unwrap();
    let layers = LossLayers {
        content: vec!["relu4_2".into()],
        style: ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"].iter().map(|n| (n.to_string(), 1.0)).collect(),
        ..LossLayers::default()
    };
    let widths: Vec<(usize, usize)> = weights.iter().map(|c| (c.in_channels, c.out_channels)).collect();
    let plan = Plan::new(Model::Vgg19Caffe.layers(), &widths, height, width, &layers).unwrap();
    let (content_act, style_acts): (usize, Vec<usize>) =
        (plan.content[0].act, plan.style.iter().map(|t| t.act).collect());
    let channels: Vec<usize> = style_acts.iter().map(|&a| plan.acts[a].channels).collect();
    let network = Reference::new(plan, &weights);
    let load = |path: &std::path::Path| caffe(&to_f64(&stylize::image_io::load_image(path).unwrap().data));
    let content_acts = network.forward(&load(&content_path));
    let style_acts_of_style = network.forward(&load(&style_path));
    let target_p = content_acts[content_act].clone();
    let target_a: Vec<Vec<f64>> =
        style_acts.iter().zip(&channels).map(|(&a, &c)| gram_by_chw(&style_acts_of_style[a], c)).collect();
    // neural-style's loss (content and style: its TVLoss adds a gradient only) and its gradient.
    let evaluate = |x: &[f64]| -> (f64, f64, Vec<f64>) {
        let acts = network.forward(x);
        let mut grads: Vec<Option<Vec<f64>>> = vec![None; acts.len()];
        let f = &acts[content_act];
        let n = f.len() as f64;
        let content = f.iter().zip(&target_p).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / n;
        grads[content_act] = Some(f.iter().zip(&target_p).map(|(a, b)| 5.0 * 2.0 * (a - b) / n).collect());
        let mut style = 0.0;
        for ((&act, &c), a) in style_acts.iter().zip(&channels).zip(&target_a) {
            let f = &acts[act];
            let g = gram_by_chw(f, c);
            style += 100.0 * g.iter().zip(a).map(|(g, a)| (g - a).powi(2)).sum::<f64>() / (c * c) as f64;
            // dL/dG = 100 * 2 (G - A) / C^2; G = F F^T / M, so dL/dF = 2 dL/dG F / M (G symmetric).
            let m = f.len() as f64;
            let hw = f.len() / c;
            let dg: Vec<f64> = g.iter().zip(a).map(|(g, a)| 100.0 * 2.0 * (g - a) / (c * c) as f64).collect();
            let df: Vec<f64> = (0..f.len())
                .map(|idx| {
                    let (i, k) = (idx / hw, idx % hw);
                    2.0 * (0..c).map(|j| dg[i * c + j] * f[j * hw + k]).sum::<f64>() / m
                })
                .collect();
            assert!(grads[act].is_none(), "one style layer per activation");
            grads[act] = Some(df);
        }
        let mut grad = network.backward_from(&acts, grads);
        for (g, t) in grad.iter_mut().zip(tv_gradient(x, height, width, 1e-3)) {
            *g += t;
        }
        (5.0 * content, style, grad)
    };
    // `-init random`: normal noise x 0.001 in Caffe space from the run's seed. The run holds it
    // as an RGB image of f32 values, which its f32 preprocessing turns back into Caffe space with
    // errors of a few 1e-6 (f32's resolution at the mean pixel): a few percent of the noise, to
    // which Adam's and L-BFGS's first steps are sensitive. So the recipe starts from the variable
    // the run starts from, read off the GPU and checked to be that noise.
    let mut rng = stylize::rng::Rng::new(base.seed);
    let noise: Vec<f64> = (0..3 * width * height).map(|_| 0.001 * rng.normal()).collect();
    let content_image = stylize::image_io::load_image(&content_path).unwrap();
    let init = stylize::pipeline::first_initial_image(&content_image, &base).unwrap();
    let style_image = stylize::image_io::load_image(&style_path).unwrap();
    let mut probe = stylize::StyleTransfer::new(ctx, &weights, &content_image, &style_image, &init, &base).unwrap();
    let mut x = to_f64(&probe.state().unwrap().image);
    drop(probe);
    let off = x.iter().zip(&noise).map(|(a, b)| (a - b).abs()).fold(0.0f64, f64::max);
    let std = (x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64).sqrt();
    assert!(
        off < 2e-5 && (std - 0.001).abs() < 1e-4,
        "the initial image is not the noise: off by {off:e}, std {std:e}"
    );
    let start = x.clone();
    let config = LbfgsConfig { lr: 1.0, history: 100, ..LbfgsConfig::new(1.0) };
    let mut state = LbfgsState::default();
    let mut expected = Vec::new();
    for _ in 0..steps {
        let (mut at_start, mut tv) = ((0.0, 0.0), 0.0);
        lbfgs::step(config, 1, &mut state, &mut x, |x| {
            let (content, style, grad) = evaluate(x);
            if at_start == (0.0, 0.0) {
                at_start = (content, style);
                tv = 1e-3 / 2.0 * tv_sum(x, height, width);
            }
            (content + style, grad)
        });
        expected.push((at_start.0, at_start.1, tv));
    }
    let rgb: Vec<f64> = uncaffe(&x).iter().map(|v| v.clamp(0.0, 1.0)).collect();
    let totals: Vec<f64> = expected.iter().map(|(c, s, _)| c + s).collect();
    let moved = x.iter().zip(&start).map(|(a, b)| (a - b).abs()).fold(0.0f64, f64::max);
    eprintln!("totals {totals:?}, moved {moved}");
    assert!(totals.windows(2).all(|w| w[1] < w[0]), "the loss should fall at every step: {totals:?}");
    assert!(moved > 1.0, "the image should move by more than one Caffe unit somewhere: {moved}");

    for tile in [TileChoice::Off, TileChoice::Side(16)] {
        let options = Options { tile, ..base.clone() };
        let mut record = LossRecord::default();
        let outputs = stylize::Outputs { output: None, ..Default::default() };
        let job = stylize::Job::new(&content_path, &[&style_path], options, outputs, &mut record).unwrap();
        let finished = job.run(&mut record).unwrap();
        assert_eq!(record.losses.len(), steps);
        let what = |of: &str| format!("jcjohnson ({tile:?}): {of}");
        let got = |f: fn(&Losses) -> f64| record.losses.iter().map(f).map(|v| v as f32).collect::<Vec<f32>>();
        let content: Vec<f64> = expected.iter().map(|e| e.0).collect();
        let style: Vec<f64> = expected.iter().map(|e| e.1).collect();
        let tv: Vec<f64> = expected.iter().map(|e| e.2).collect();
        assert_close(&what("5 x content"), &got(|l| 5.0 * l.content), &content, 1e-4);
        assert_close(&what("100 x style"), &got(|l| 100.0 * l.style), &style, 1e-4);
        assert_close(&what("tv"), &got(|l| l.tv), &tv, 1e-4);
        assert_close(&what("the RGB result"), &finished.outcome.target.data, &rgb, 1e-4);
        eprintln!("jcjohnson ({tile:?}): totals {totals:?}: {steps} steps match the recipe in f64");
    }
}

/// crowsonkb's `TVLoss` on the RGB image, from its PyTorch code (`tv::nine_point::reference` is
/// that code transcribed; here with every channel's factor 1, as the tool applies it to [0, 1]).
fn crowsonkb_tv(rgb: &[f64], height: usize, width: usize) -> (f64, Vec<f64>) {
    use stylize::ops::tv::nine_point::reference as tv9;
    let shape = stylize::ops::ActShape { channels: 3, height, width };
    (tv9::forward(shape, rgb, 2.0, &[1.0; 3]), tv9::backward(shape, rgb, 2.0, &[1.0; 3]))
}

/// An image's CHW planes in f64.
fn planes(image: &stylize::Image) -> Vec<f64> {
    to_f64(&image.data)
}

/// `--preset crowsonkb` against style_transfer.py's loop written out in f64, over two scales
/// (an eighth of VGG-19's widths; a 48 x 40 content, a 52 x 44 style; 4 steps on the first scale
/// as its initial_iterations, 3 on the second): per scale the content and the style fitted to the
/// scale (the style by its own longer side), targets P at relu4_2 and the style's mean and second
/// raw moment at each style layer; the loss 0.015 mean((F - P)^2) + sum_l w_l W2_l (w = 256, 64,
/// 16 normalized, at relu1_1..relu3_1: deeper layers of so small an image have fewer positions
/// than channels) + the nine-point TV x 2 on RGB; Adam (lr 0.02, betas 0.9, 0.99) on the RGB image,
/// clamped to [0, 1] after every step; the EMA (0.99, seeded with the scale's start) as the output;
/// the next scale from that average resized bicubically (PyTorch's interpolate) and clamped, with
/// Adam's moments resized (bicubic, bilinear clamped at 0) and its step count going on.
#[test]
fn gpu_crowsonkb_preset_matches_style_transfer_pytorch_in_f64() {
    use stylize::image_io::{Filter, fit_within_with, interpolate};
    use stylize::ops::w2;
    if gpu_or_skip("gpu_crowsonkb_preset_matches_style_transfer_pytorch_in_f64").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (content_path, style_path) = (dir.path().join("content.png"), dir.path().join("style.png"));
    random_png(&content_path, 48, 40, 90);
    random_png(&style_path, 52, 44, 91);
    let weights_path = dir.path().join("vgg19-eighth.npz");
    let widths: Vec<usize> = Model::Vgg19.widths().iter().map(|w| w / 8).collect();
    stylize::test_support::write_vgg19_npz(&weights_path, &widths, 92).unwrap();
    let weights_spec = weights_path.to_str().unwrap().to_string();
    let recipe = Preset::Crowsonkb.options();
    let layer_weights: Vec<f64> = [256.0, 64.0, 16.0].iter().map(|w| w / 336.0).collect();
    let (first_steps, later_steps) = (4usize, 3usize);
    let base = Options {
        size: 48,
        scales: 2,
        iterations: later_steps,
        initial_iterations: Some(first_steps),
        style_layers: ["relu1_1", "relu2_1", "relu3_1"].map(String::from).to_vec(),
        style_layer_weights: layer_weights.clone(),
        weights: Some(weights_spec.clone()),
        precision: Precision::F32,
        ..recipe.clone()
    };
    let sizes = stylize::scale_sizes(base.size, base.scales, None);
    assert_eq!(sizes, [34, 48]);

    // The recipe in f64.
    let weights = stylize::load_network_weights(Model::Vgg19, Some(&weights_spec), 0, &mut |_| {}).unwrap();
    let conv_widths: Vec<(usize, usize)> = weights.iter().map(|c| (c.in_channels, c.out_channels)).collect();
    let (mean, std) = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]);
    let normalize = |rgb: &[f64]| -> Vec<f64> {
        let plane = rgb.len() / 3;
        rgb.iter().enumerate().map(|(i, v)| (v - mean[i / plane]) / std[i / plane]).collect()
    };
    // Its first convolution pads by replicating the edges (`_change_padding_mode(..., 'replicate')`).
    let layers = LossLayers {
        content: vec!["relu4_2".into()],
        style: base.style_layers.iter().cloned().zip(layer_weights.iter().copied()).collect(),
        padding: stylize::Padding::Replicate,
        ..LossLayers::default()
    };
    let content_image = stylize::image_io::load_image(&content_path).unwrap();
    let style_image = stylize::image_io::load_image(&style_path).unwrap();
    let (beta1, beta2, lr, eps, decay) = (0.9f64, 0.99f64, 0.02, 1e-8, 0.99);
    let mut adam_step = 0u64;
    let (mut m, mut v): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
    let mut image: Vec<f64> = Vec::new();
    let mut previous_size = (0usize, 0usize);
    let mut expected: Vec<(f64, f64, f64)> = Vec::new();
    for (index, &side) in sizes.iter().enumerate() {
        let content = fit_within_with(&content_image, side, Filter::CatmullRom);
        let style = fit_within_with(&style_image, side, Filter::CatmullRom);
        let (w, h) = (content.width as usize, content.height as usize);
        let plan = |sw: usize, sh: usize| Plan::new(Model::Vgg19.layers(), &conv_widths, sh, sw, &layers).unwrap();
        let network = Reference::new(plan(w, h), &weights);
        let style_network = Reference::new(plan(style.width as usize, style.height as usize), &weights);
        let content_act = network.plan.content[0].act;
        let target_p = network.forward(&normalize(&planes(&content)))[content_act].clone();
        let style_acts = style_network.forward(&normalize(&planes(&style)));
        let targets: Vec<w2::Target> = style_network
            .plan
            .style
            .iter()
            .map(|t| {
                let (mu, srm) = w2::reference::moments(&style_acts[t.act], style_network.plan.acts[t.act].channels);
                w2::Target::from_moments(&mu, &srm)
            })
            .collect();
        // The scale's start: the content, or the previous average resized; Adam's moments resized.
        let resize = |values: &[f64], bilinear: bool| -> Vec<f64> {
            let (pw, ph) = previous_size;
            let f = if bilinear { interpolate::bilinear } else { interpolate::bicubic };
            (0..3).flat_map(|c| f(&values[c * pw * ph..(c + 1) * pw * ph], pw, ph, w, h)).collect()
        };
        if index == 0 {
            image = planes(&content);
            m = vec![0.0; image.len()];
            v = vec![0.0; image.len()];
        } else {
            image = resize(&image, false).into_iter().map(|x| x.clamp(0.0, 1.0)).collect();
            m = resize(&m, false);
            v = resize(&v, true).into_iter().map(|x| x.max(0.0)).collect();
        }
        // EMA(image): value (1 - d) x0, accum d.
        let mut value: Vec<f64> = image.iter().map(|x| (1.0 - decay) * x).collect();
        let mut accum = decay;
        for _ in 0..base.scale_iterations(index) {
            let acts = network.forward(&normalize(&image));
            let mut grads: Vec<Option<Vec<f64>>> = vec![None; acts.len()];
            let f = &acts[content_act];
            let n = f.len() as f64;
            let content_loss = f.iter().zip(&target_p).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / n;
            grads[content_act] = Some(f.iter().zip(&target_p).map(|(a, b)| 0.015 * 2.0 * (a - b) / n).collect());
            let mut style_loss = 0.0;
            for ((term, target), &wl) in network.plan.style.iter().zip(&targets).zip(&layer_weights) {
                style_loss += wl * w2::reference::loss(&acts[term.act], target);
                let g: Vec<f64> = w2::reference::backward(&acts[term.act], target).iter().map(|g| wl * g).collect();
                assert!(grads[term.act].is_none(), "one loss per activation");
                grads[term.act] = Some(g);
            }
            let grad_normalized = network.backward_from(&acts, grads);
            let (tv, tv_grad) = crowsonkb_tv(&image, h, w);
            expected.push((0.015 * content_loss, style_loss, tv));
            let plane = w * h;
            adam_step += 1;
            let t = adam_step as f64;
            let (bc1, bc2) = (1.0 - beta1.powf(t), 1.0 - beta2.powf(t));
            for i in 0..image.len() {
                let g = grad_normalized[i] / std[i / plane] + tv_grad[i];
                m[i] = beta1 * m[i] + (1.0 - beta1) * g;
                v[i] = beta2 * v[i] + (1.0 - beta2) * g * g;
                let denom = v[i].sqrt() / bc2.sqrt() + eps;
                image[i] = (image[i] - lr / bc1 * m[i] / denom).clamp(0.0, 1.0);
            }
            accum *= decay;
            value.iter_mut().zip(&image).for_each(|(a, x)| *a = decay * *a + (1.0 - decay) * x);
        }
        // The next scale (and the output) starts from the average.
        image = value.iter().map(|a| a / (1.0 - accum)).collect();
        previous_size = (w, h);
    }
    let rgb: Vec<f64> = image.iter().map(|x| x.clamp(0.0, 1.0)).collect();
    let start = planes(&fit_within_with(&content_image, 48, Filter::CatmullRom));
    let moved = rgb.iter().zip(&start).map(|(a, b)| (a - b).abs()).fold(0.0f64, f64::max);
    assert!(moved > 0.05, "the image should move: {moved}");

    let mut record = LossRecord::default();
    let outputs = stylize::Outputs { output: None, ..Default::default() };
    let job = stylize::Job::new(&content_path, &[&style_path], base.clone(), outputs, &mut record).unwrap();
    let finished = job.run(&mut record).unwrap();
    assert_eq!(record.losses.len(), first_steps + later_steps);
    let got = |f: fn(&Losses) -> f64| record.losses.iter().map(f).map(|v| v as f32).collect::<Vec<f32>>();
    let column = |k: usize| expected.iter().map(|e| [e.0, e.1, e.2][k]).collect::<Vec<f64>>();
    eprintln!("crowsonkb: expected {expected:?}");
    assert_close("crowsonkb: 0.015 x content", &got(|l| 0.015 * l.content), &column(0), 1e-4);
    assert_close("crowsonkb: w2 style", &got(|l| l.style), &column(1), 1e-4);
    assert_close("crowsonkb: nine-point tv", &got(|l| l.tv), &column(2), 1e-4);
    assert_close("crowsonkb: the RGB result (the average)", &finished.outcome.target.data, &rgb, 1e-4);
}
