//! Tiled runs whose image-sized state is stored in bands of a few rows (`ops::bands`; forced
//! small with `Context::set_band_limit`): the image, its gradient, Adam's moments, L-BFGS's
//! vectors, the finiteness guard's two images and the iterate average, with the tiny weights of
//! tests/fixtures. Banding changes no element's arithmetic, so Adam's runs are the unbanded ones
//! bit for bit; L-BFGS sums its dot products band by band, so its runs agree to rounding.

mod common;

use common::tiny_weights;
use stylize::net::tiling::TileChoice;
use stylize::rng::Rng;
use stylize::test_support::{gpu_or_skip, rel_err_f64};
use stylize::{Image, Optimizer, Options, StyleTransfer, TransferError};

const WIDTH: u32 = 96;
const HEIGHT: u32 = 80;
/// Bands of 3 image rows: 27 of them.
const BAND_BYTES: u64 = 3 * 3 * WIDTH as u64 * 4;

struct Inputs {
    weights: Vec<stylize::ConvLayerWeights>,
    content: Image,
    style: Image,
}

fn inputs() -> Inputs {
    inputs_of(WIDTH, HEIGHT)
}

fn inputs_of(width: u32, height: u32) -> Inputs {
    let weights = stylize::load_network_weights(Default::default(), tiny_weights().to_str(), 0, &mut |_| {}).unwrap();
    let mut rng = Rng::new(12);
    let n = (3 * width * height) as usize;
    let mut image = |lo: f64, hi: f64| Image::new(width, height, (0..n).map(|_| rng.range(lo, hi) as f32).collect());
    let (content, style) = (image(0.0, 1.0), image(0.3, 0.7));
    Inputs { weights, content, style }
}

/// Tiles of 48 px (2 x 2 tiles), the state in bands of `band_bytes` or in one buffer each.
fn transfer(test: &str, inputs: &Inputs, options: &Options, band_bytes: Option<u64>) -> Option<StyleTransfer> {
    let mut ctx = gpu_or_skip(test)?;
    if let Some(bytes) = band_bytes {
        ctx.set_band_limit(bytes);
    }
    let options = Options { tile: TileChoice::Side(48), ..options.clone() };
    let transfer = StyleTransfer::new(ctx, &inputs.weights, &inputs.content, &inputs.style, &inputs.content, &options);
    Some(transfer.unwrap())
}

fn options(optimizer: Optimizer) -> Options {
    Options {
        optimizer,
        learning_rate: if optimizer == Optimizer::Lbfgs { 0.5 } else { 0.02 },
        lbfgs_history: 3,
        average_decay: 0.7,
        tv_weight: 1e-3,
        ..Options::default()
    }
}

fn steps(transfer: &mut StyleTransfer, n: usize) -> Vec<f64> {
    (0..n)
        .map(|_| {
            transfer.step();
            transfer.sync().unwrap();
            transfer.losses().unwrap().total
        })
        .collect()
}

fn moved(image: &Image, from: &Image) -> Vec<f64> {
    image.data.iter().zip(&from.data).map(|(&a, &b)| a as f64 - b as f64).collect()
}

#[test]
fn a_run_with_its_state_in_bands_equals_one_without() {
    let test = "a_run_with_its_state_in_bands_equals_one_without";
    let inputs = inputs();
    for optimizer in [Optimizer::Adam, Optimizer::Lbfgs] {
        let options = options(optimizer);
        let Some(mut plain) = transfer(test, &inputs, &options, None) else { return };
        let mut banded = transfer(test, &inputs, &options, Some(BAND_BYTES)).unwrap();
        assert_eq!(plain.schedule(), banded.schedule());
        let (a, b) = (steps(&mut plain, 4), steps(&mut banded, 4));
        let (a_image, b_image) = (plain.image().unwrap(), banded.image().unwrap());
        let change = rel_err_f64(&moved(&b_image, &inputs.content), &moved(&a_image, &inputs.content));
        eprintln!("{optimizer:?}: totals {a:?} and {b:?}; the image's change differs by {change:.1e}");
        assert!(a_image.data.iter().zip(&inputs.content.data).any(|(x, y)| x != y), "the image moved");
        match optimizer {
            Optimizer::Adam => {
                assert_eq!(a, b, "{optimizer:?}: losses");
                assert!(a_image.data == b_image.data, "{optimizer:?}: the averaged image differs by {change:e}");
            }
            Optimizer::Lbfgs => {
                let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs() / x.abs()).fold(0.0, f64::max);
                assert!(worst <= 1e-5 && change <= 1e-4, "{optimizer:?}: losses {worst:e}, image {change:e}");
            }
        }
    }
}

/// A banded state taken after 2 steps and restored into a new banded run continues exactly as
/// the run it came from (4 steps), both optimizers.
#[test]
fn a_banded_state_resumes_bit_for_bit() {
    let test = "a_banded_state_resumes_bit_for_bit";
    let inputs = inputs();
    for optimizer in [Optimizer::Adam, Optimizer::Lbfgs] {
        let options = options(optimizer);
        let Some(mut straight) = transfer(test, &inputs, &options, Some(BAND_BYTES)) else { return };
        steps(&mut straight, 2);
        let saved = straight.state().unwrap();
        steps(&mut straight, 2);
        let mut resumed = transfer(test, &inputs, &options, Some(BAND_BYTES)).unwrap();
        resumed.restore_state(&saved).unwrap();
        assert_eq!(format!("{:?}", resumed.state().unwrap()), format!("{saved:?}"), "{optimizer:?}: restored");
        steps(&mut resumed, 2);
        assert_eq!(format!("{:?}", resumed.state().unwrap()), format!("{:?}", straight.state().unwrap()));
    }
}

/// A non-finite gradient stops a banded run with the initial image put back, band by band.
#[test]
fn a_banded_run_that_goes_non_finite_keeps_the_last_finite_image() {
    let test = "a_banded_run_that_goes_non_finite_keeps_the_last_finite_image";
    let inputs = inputs();
    let options = Options { style_weight: 1e300, ..options(Optimizer::Adam) };
    let Some(mut banded) = transfer(test, &inputs, &options, Some(BAND_BYTES)) else { return };
    let result = banded.run(3, &mut stylize::Silent);
    assert!(matches!(result, Err(TransferError::NonFinite { .. })), "{:?}", result.map(|_| ()));
    let kept = banded.image().unwrap();
    let content = &inputs.content.data;
    assert!(kept.data.iter().all(|v| v.is_finite()), "a non-finite value is kept");
    let worst = kept.data.iter().zip(content).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(worst <= 1e-6, "the initial image is back (worst difference {worst:e})");
}

/// Past the binding limit (lowered to 2 MB, `Context::set_binding_limit`): a 1200x160 step whose
/// conv1 activation (3.1 MB) and image (2.3 MB) exceed it is refused untiled and runs tiled under
/// `auto`, the image in bands, no buffer over the limit (the context refuses any larger one), with
/// the losses of an untiled run without the limit.
#[test]
fn a_step_over_the_binding_limit_runs_tiled_with_its_image_in_bands() {
    let test = "a_step_over_the_binding_limit_runs_tiled_with_its_image_in_bands";
    let inputs = inputs_of(1200, 160);
    let limited = || {
        let mut ctx = gpu_or_skip(test)?;
        ctx.set_binding_limit(2_000_000);
        Some(ctx)
    };
    let Some(ctx) = limited() else { return };
    let options = options(Optimizer::Adam);
    let build = |ctx, tile| {
        let options = Options { tile, ..options.clone() };
        StyleTransfer::new(ctx, &inputs.weights, &inputs.content, &inputs.style, &inputs.content, &options)
    };
    let refused = build(ctx, TileChoice::Off).err().expect("untiled, the step does not fit").to_string();
    assert!(refused.contains("MiB") || refused.contains("bytes"), "{refused}");
    let mut tiled = build(limited().unwrap(), TileChoice::Auto).unwrap();
    let schedule = tiled.schedule().expect("auto tiles");
    eprintln!("{schedule}; untiled: {refused}");
    let mut whole = build(gpu_or_skip(test).unwrap(), TileChoice::Off).unwrap();
    assert!(whole.schedule().is_none());
    let (a, b) = (steps(&mut whole, 2), steps(&mut tiled, 2));
    let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs() / x.abs()).fold(0.0, f64::max);
    eprintln!("totals {a:?} untiled, {b:?} tiled: worst {worst:.1e}");
    assert!(worst <= 1e-5, "tiled and untiled totals differ by {worst:e}");
}
