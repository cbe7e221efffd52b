//! Colour controls: luminance transfer (YIQ) and colour histogram matching (mean and covariance).

use stylize::image_io::Image;
use stylize::image_io::color::{self, ColorTransfer};
use stylize::rng::Rng;

fn random_image(rng: &mut Rng, width: u32, height: u32, lo: f64, hi: f64) -> Image {
    Image::new(width, height, rng.vec(3 * (width * height) as usize, lo, hi).into_iter().map(|v| v as f32).collect())
}

fn yiq(image: &Image, i: usize) -> [f64; 3] {
    let plane = image.plane_len();
    color::rgb_to_yiq([image.data[i] as f64, image.data[plane + i] as f64, image.data[2 * plane + i] as f64])
}

#[test]
fn preserve_luminance_keeps_result_luma_and_content_chroma() {
    let mut rng = Rng::new(41);
    // Mid-range colours, so no channel needs clamping.
    let result = random_image(&mut rng, 13, 7, 0.35, 0.65);
    let content = random_image(&mut rng, 13, 7, 0.35, 0.65);
    let out = color::preserve_luminance(&result, &content);
    assert_eq!((out.width, out.height, out.data.len()), (13, 7, 3 * 13 * 7));
    for i in 0..out.plane_len() {
        let (o, r, c) = (yiq(&out, i), yiq(&result, i), yiq(&content, i));
        assert!((o[0] - r[0]).abs() <= 1e-5, "Y at {i}: {} vs {}", o[0], r[0]);
        assert!((o[1] - c[1]).abs() <= 1e-5 && (o[2] - c[2]).abs() <= 1e-5, "IQ at {i}: {o:?} vs {c:?}");
    }
}

#[test]
fn preserve_luminance_clamps_to_the_unit_range() {
    let mut rng = Rng::new(42);
    let result = random_image(&mut rng, 9, 5, 0.0, 1.0);
    let content = random_image(&mut rng, 9, 5, 0.0, 1.0);
    let out = color::preserve_luminance(&result, &content);
    assert!(out.data.iter().all(|v| (0.0..=1.0).contains(v)));
    // A grey content makes the output grey at the result's luma.
    let grey = Image::filled(9, 5, [0.5, 0.5, 0.5]);
    let out = color::preserve_luminance(&result, &grey);
    for i in 0..out.plane_len() {
        let luma = yiq(&result, i)[0] as f32;
        let plane = out.plane_len();
        for c in 0..3 {
            assert!((out.data[c * plane + i] - luma).abs() < 1e-5);
        }
    }
}

/// An image with correlated channels: a shared random component plus channel noise.
fn correlated_image(rng: &mut Rng, width: u32, height: u32, centre: [f64; 3], mix: [f64; 3], noise: f64) -> Image {
    let plane = (width * height) as usize;
    let mut data = vec![0.0f32; 3 * plane];
    for i in 0..plane {
        let shared = rng.range(-1.0, 1.0);
        for c in 0..3 {
            data[c * plane + i] = (centre[c] + mix[c] * shared + noise * rng.range(-1.0, 1.0)) as f32;
        }
    }
    Image::new(width, height, data)
}

#[test]
fn match_histogram_matches_mean_and_covariance() {
    let mut rng = Rng::new(43);
    let source = correlated_image(&mut rng, 31, 17, [0.5, 0.45, 0.55], [0.25, 0.2, -0.15], 0.1);
    // A target of another size with other colours and correlations, narrow enough that the
    // matched colours stay in [0, 1] (so the clamp does not act).
    let target = correlated_image(&mut rng, 19, 23, [0.55, 0.4, 0.5], [-0.05, 0.08, 0.06], 0.04);
    let (mu_t, cov_t) = color::statistics(&target);
    for method in [ColorTransfer::Pca, ColorTransfer::Cholesky] {
        let out = color::match_histogram_with(&source, &target, method);
        assert_eq!((out.width, out.height, out.data.len()), (source.width, source.height, source.data.len()));
        assert!(out.data.iter().all(|&v| v > 0.0 && v < 1.0), "{method:?}: the clamp acted");
        let (mu, cov) = color::statistics(&out);
        for a in 0..3 {
            assert!((mu[a] - mu_t[a]).abs() <= 1e-4, "{method:?} mean {mu:?} vs {mu_t:?}");
            for b in 0..3 {
                assert!((cov[a][b] - cov_t[a][b]).abs() <= 1e-4, "{method:?} covariance {cov:?} vs {cov_t:?}");
            }
        }
    }
    // The default is the PCA (symmetric square root) variant.
    assert_eq!(
        color::match_histogram(&source, &target),
        color::match_histogram_with(&source, &target, ColorTransfer::Pca)
    );
}

#[test]
fn match_histogram_of_an_image_to_itself_is_the_identity() {
    let mut rng = Rng::new(44);
    let image = correlated_image(&mut rng, 11, 13, [0.5, 0.5, 0.5], [0.2, 0.1, 0.15], 0.1);
    let out = color::match_histogram(&image, &image);
    let worst = out.data.iter().zip(&image.data).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst < 1e-4, "{worst}");
}

#[test]
fn match_histogram_of_a_flat_source_stays_finite() {
    let mut rng = Rng::new(45);
    let target = random_image(&mut rng, 5, 5, 0.2, 0.8);
    let out = color::match_histogram(&Image::filled(4, 3, [0.3, 0.6, 0.9]), &target);
    assert_eq!((out.width, out.height), (4, 3));
    let (mu_t, _) = color::statistics(&target);
    // No spread to map: every pixel lands on the target's mean colour.
    for i in 0..12 {
        let plane = 12;
        for (c, mu) in mu_t.iter().enumerate() {
            assert!((out.data[c * plane + i] as f64 - mu).abs() < 1e-6);
        }
    }
}
