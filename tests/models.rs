//! The models `--model` takes (VGG-19 and VGG-16, torchvision's and the Caffe conversions): each
//! one's layer table against a file of its layout, its preprocessing through the library's run
//! against the f64 method, and files of another model refused in one line.

mod common;

use common::*;
use stylize::gpu::Precision;
use stylize::net::reference::Reference;
use stylize::net::tiling::TileChoice;
use stylize::net::vgg::{LayerKind, Model};
use stylize::net::{Plan, random_weights};
use stylize::ops::normalize::{self, Preprocess};
use stylize::optim::adam::{self, AdamConfig};
use stylize::test_support::write_convs_npz;
use stylize::weights::{Problem, load_model};
use stylize::{Image, Options, StyleTransfer};

/// torchvision's full `features` of each architecture: the convolutions after conv5_1 too
/// (conv5_2.. at the indices torchvision gives them), which a model never reads.
fn full_features(model: Model) -> (Vec<usize>, Vec<usize>) {
    let mut indices = model.conv_indices().to_vec();
    let last = *indices.last().unwrap();
    let rest = if model.same_layers(Model::Vgg19) { 3 } else { 2 };
    indices.extend((1..=rest).map(|k| last + 2 * k));
    let widths = model.widths().iter().copied().chain(std::iter::repeat_n(512, rest)).map(|w| w / 16).collect();
    (indices, widths)
}

/// Every model loads a file of its own layout, picking exactly its table's convolutions (widths
/// from the file, in the table's order); the other architecture's file is one line naming the
/// first tensor that does not fit and the models it does fit.
#[test]
fn each_model_loads_its_layout_and_names_the_model_of_another() {
    let dir = tempfile::tempdir().unwrap();
    for model in Model::ALL {
        let (indices, widths) = full_features(model);
        let path = dir.path().join(format!("{model}.npz"));
        write_convs_npz(&path, &indices, &widths, 5).unwrap();
        let loaded = load_model(&path, model).unwrap_or_else(|e| panic!("{model}: {e}"));
        let convs = model.layers().iter().filter(|l| l.kind == LayerKind::Conv).count();
        assert_eq!(loaded.convs.len(), convs, "{model}");
        let expected = random_weights(&widths, 5);
        for (i, (got, want)) in loaded.convs.iter().zip(&expected).enumerate() {
            assert_eq!(got, want, "{model}: convolution {i} (features.{})", model.conv_indices()[i]);
        }
        for other in Model::ALL.into_iter().filter(|m| !m.same_layers(model)) {
            let err = load_model(&path, other).unwrap_err();
            let text = err.to_string();
            assert!(!text.contains('\n'), "{text}");
            let first_missing = other.conv_indices().iter().find(|i| !indices.contains(i)).unwrap();
            for needed in [
                path.display().to_string(),
                format!("does not fit {other}"),
                format!("features.{first_missing}.weight"),
                format!("--model {model}"),
            ] {
                assert!(text.contains(&needed), "{other} loading {model}'s file: {text:?} lacks {needed:?}");
            }
            assert!(matches!(err.problem(), Some(Problem::OtherModel { .. })), "{text}");
        }
    }
}

/// A file that fits no model keeps the plain first problem (no model is suggested).
#[test]
fn a_file_that_fits_no_model_names_its_first_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.npz");
    let indices = &Model::Vgg16.conv_indices()[..6];
    write_convs_npz(&path, indices, &[4, 4, 8, 8, 16, 16], 6).unwrap();
    for model in [Model::Vgg19, Model::Vgg16Caffe] {
        let err = load_model(&path, model).unwrap_err();
        assert!(matches!(err.problem(), Some(Problem::MissingKey(_))), "{model}: {err}");
    }
}

fn random_image(rng: &mut Rng, width: u32, height: u32) -> Image {
    Image::new(width, height, to_f32(&rng.vec(3 * (width * height) as usize, 0.0, 1.0)))
}

/// Three Adam steps of each model through the library (`StyleTransfer` with `Options::model`:
/// its table, its preprocessing on the GPU, Adam on its input scale) against the f64 method on
/// the same table with the preprocessing written out (`normalize::reference`): the loss of
/// every step, the optimizer's variable after the last and the RGB image the run returns; whole
/// and in 16 px tiles (each band of the tiled image preprocessed on its own). The weights are
/// random at 1/8 of the model's widths, the image 24 x 20.
#[test]
fn gpu_three_steps_of_each_model_match_the_f64_method() {
    let Some(mut ctx) = gpu_or_skip("gpu_three_steps_of_each_model_match_the_f64_method") else {
        return;
    };
    let (width, height) = (24u32, 20u32);
    for model in Model::ALL {
        let widths: Vec<usize> = model.widths().iter().map(|w| w / 8).collect();
        let weights = random_weights(&widths, 70);
        let mut rng = Rng::new(71);
        let (content, style) = (random_image(&mut rng, width, height), random_image(&mut rng, width, height));
        let preprocess = model.preprocess();
        // A step that moves the image visibly on either scale (0-255 for Caffe).
        let learning_rate = if preprocess == Preprocess::CAFFE { 2.0 } else { 0.02 };
        let options = Options { model, learning_rate, precision: Precision::F32, ..Options::default() };
        let mut runs = Vec::new();
        for tile in [TileChoice::Off, TileChoice::Side(16)] {
            let options = Options { tile, ..options.clone() };
            let mut transfer = StyleTransfer::new(ctx, &weights, &content, &style, &content, &options).unwrap();
            assert_eq!(transfer.schedule().is_some(), tile != TileChoice::Off, "{model} {tile:?}");
            let mut gpu_losses = Vec::new();
            for _ in 0..3 {
                transfer.step();
                transfer.sync().unwrap();
                gpu_losses.push(transfer.losses().unwrap().total);
            }
            runs.push((tile, gpu_losses, transfer.state().unwrap().image, transfer.image().unwrap()));
            ctx = transfer.into_context();
        }

        let conv_widths: Vec<(usize, usize)> = weights.iter().map(|c| (c.in_channels, c.out_channels)).collect();
        let plan = Plan::new(model.layers(), &conv_widths, height as usize, width as usize, &options.loss_layers());
        let reference = Reference::new(plan.unwrap(), &weights);
        let input = |image: &Image| normalize::reference::normalize(&preprocess, &to_f64(&image.data));
        let targets = reference.targets(&input(&content), &input(&style));
        let mut image = input(&content);
        let start = image.clone();
        let mut state = adam::reference::AdamState::new(image.len());
        let mut losses = Vec::new();
        for _ in 0..3 {
            let (loss, grad) = reference.loss_and_grad(&image, &targets);
            losses.push(loss.total);
            adam::reference::step(AdamConfig::new(learning_rate), &mut state, &mut image, &grad);
        }
        assert!(losses[2] < losses[0], "{model}: the loss should fall: {losses:?}");
        assert!(rel_err_f64(&image, &start) > 1e-4, "{model}: the image hardly moved");
        let expected_rgb = normalize::reference::denormalize_clamp(&preprocess, &image);
        for (tile, gpu_losses, variable, rgb) in runs {
            let what = |of: &str| format!("{model} ({tile:?}): {of}");
            assert_close(&what("losses of 3 steps"), &to_f32(&gpu_losses), &losses, 1e-4);
            assert_close(&what("the input after 3 steps"), &variable, &image, 1e-5);
            assert_close(&what("the RGB result"), &rgb.data, &expected_rgb, 1e-5);
            eprintln!("{model} ({tile:?}): losses {gpu_losses:?}, 3 steps match the f64 method");
        }
    }
}

fn rel_err_f64(a: &[f64], b: &[f64]) -> f64 {
    stylize::test_support::rel_err_f64(a, b)
}
