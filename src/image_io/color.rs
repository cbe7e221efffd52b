//! Colour controls applied on the CPU to whole images: keeping the content's colours under the
//! result's luminance (neural-style's `-original_colors 1`), and recolouring an image so that its
//! colour distribution matches another's (Gatys et al., "Preserving Color in Neural Artistic
//! Style Transfer", 2016, colour histogram matching by mean and covariance).

use super::Image;

/// RGB to YIQ (NTSC 1953 matrix; Y is the luma 0.299 R + 0.587 G + 0.114 B).
const RGB_TO_YIQ: [[f64; 3]; 3] =
    [[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]];

/// The exact inverse of [`RGB_TO_YIQ`] (computed once, so that a round trip is the identity).
fn yiq_to_rgb() -> [[f64; 3]; 3] {
    invert3(&RGB_TO_YIQ)
}

/// `[Y, I, Q]` of one RGB pixel.
pub fn rgb_to_yiq(rgb: [f64; 3]) -> [f64; 3] {
    mul3(&RGB_TO_YIQ, rgb)
}

/// RGB of one `[Y, I, Q]` pixel (not clamped).
pub fn yiq_to_rgb_pixel(yiq: [f64; 3]) -> [f64; 3] {
    mul3(&yiq_to_rgb(), yiq)
}

/// The result's luminance with the content's chroma: both images go to YIQ, the output keeps the
/// result's Y and the content's I and Q, and returns to RGB clamped to [0, 1].
///
/// jcjohnson/neural-style's `original_colors` does the same in YUV (torch's `rgb2yuv`); Y is the
/// same luma in both, and (I, Q) is a fixed rotation of (U, V), so keeping the content's I and Q
/// keeps its U and V too: the two give the same image up to rounding. Panics when sizes differ.
pub fn preserve_luminance(result: &Image, content: &Image) -> Image {
    assert!(
        result.width == content.width && result.height == content.height,
        "preserve_luminance: result is {}x{} but content is {}x{}",
        result.width,
        result.height,
        content.width,
        content.height
    );
    let inverse = yiq_to_rgb();
    let plane = result.plane_len();
    let mut data = vec![0.0f32; 3 * plane];
    for i in 0..plane {
        let y = rgb_to_yiq(sample(result, i))[0];
        let [_, ci, cq] = rgb_to_yiq(sample(content, i));
        let rgb = mul3(&inverse, [y, ci, cq]);
        for c in 0..3 {
            data[c * plane + i] = rgb[c].clamp(0.0, 1.0) as f32;
        }
    }
    Image::new(result.width, result.height, data)
}

/// How [`match_histogram_with`] builds the linear map `A` with `A Σ_source Aᵀ = Σ_target`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ColorTransfer {
    /// `A = Σ_t^{1/2} Σ_s^{-1/2}` with symmetric (eigen-decomposition) square roots: the "Image
    /// Analogies" variant Gatys et al. prefer, and the `pca` mode of common tools.
    #[default]
    Pca,
    /// `A = L_t L_s^{-1}` with Cholesky factors `Σ = L Lᵀ`.
    Cholesky,
}

/// Recolours `source` so that the mean and covariance of its RGB pixels match `target`'s:
/// `x' = A (x - μ_s) + μ_t` with [`ColorTransfer::Pca`]; see [`match_histogram_with`].
pub fn match_histogram(source: &Image, target: &Image) -> Image {
    match_histogram_with(source, target, ColorTransfer::Pca)
}

/// Regularizer added to the source covariance's diagonal (and the target's, for Cholesky) so that
/// flat images stay invertible; small against any real image's colour variance.
const COVARIANCE_EPS: f64 = 1e-8;

/// Recolours `source` so that the mean and covariance of its RGB pixels (population statistics)
/// match `target`'s, with the map `A` built as `method` says; the two images may differ in size.
/// The output keeps `source`'s size and is clamped to [0, 1], so it matches exactly when the
/// mapped colours stay in range.
pub fn match_histogram_with(source: &Image, target: &Image, method: ColorTransfer) -> Image {
    let (mu_s, cov_s) = statistics(source);
    let (mu_t, cov_t) = statistics(target);
    let mut cov_s_reg = cov_s;
    for (c, row) in cov_s_reg.iter_mut().enumerate() {
        row[c] += COVARIANCE_EPS;
    }
    let map = match method {
        ColorTransfer::Pca => matmul3(&sym_power(&cov_t, 0.5), &sym_power(&cov_s_reg, -0.5)),
        ColorTransfer::Cholesky => {
            let mut cov_t_reg = cov_t;
            for (c, row) in cov_t_reg.iter_mut().enumerate() {
                row[c] += COVARIANCE_EPS;
            }
            matmul3(&cholesky3(&cov_t_reg), &invert3(&cholesky3(&cov_s_reg)))
        }
    };
    apply_affine(source, &map, mu_s, mu_t)
}

/// Eigenvalues below this are taken as it by [`recolor`], so that flat images stay invertible.
pub const RECOLOR_EIGENVALUE_FLOOR: f64 = 1e-10;

/// `stylize recolor`, colour-only transfer: each pixel x of `content` becomes
/// `A (x - μ_c) + μ_s` with `A = Σ_s^{1/2} Σ_c^{-1/2}` (population mean and covariance of each
/// image's RGB values, symmetric square roots from the eigen-decomposition with eigenvalues
/// below [`RECOLOR_EIGENVALUE_FLOOR`] taken as it), clamped to [0, 1]. The transform of
/// [`match_histogram`] (`--preserve-colors histogram`) applied the other way: the content takes
/// the style's colours.
pub fn recolor(content: &Image, style: &Image) -> Image {
    let (mu_c, cov_c) = statistics(content);
    let (mu_s, cov_s) = statistics(style);
    let floor = RECOLOR_EIGENVALUE_FLOOR;
    let map = matmul3(&sym_power_floored(&cov_s, 0.5, floor), &sym_power_floored(&cov_c, -0.5, floor));
    apply_affine(content, &map, mu_c, mu_s)
}

/// `x' = map (x - from) + to` for every pixel, clamped to [0, 1].
fn apply_affine(source: &Image, map: &[[f64; 3]; 3], from: [f64; 3], to: [f64; 3]) -> Image {
    let plane = source.plane_len();
    let mut data = vec![0.0f32; 3 * plane];
    for i in 0..plane {
        let x = sample(source, i);
        let centred = [x[0] - from[0], x[1] - from[1], x[2] - from[2]];
        let mapped = mul3(map, centred);
        for c in 0..3 {
            data[c * plane + i] = (mapped[c] + to[c]).clamp(0.0, 1.0) as f32;
        }
    }
    Image::new(source.width, source.height, data)
}

/// Mean and population covariance (divided by the pixel count) of an image's RGB pixels.
pub fn statistics(image: &Image) -> ([f64; 3], [[f64; 3]; 3]) {
    let plane = image.plane_len();
    let n = plane.max(1) as f64;
    let mut mean = [0.0; 3];
    for i in 0..plane {
        let x = sample(image, i);
        for c in 0..3 {
            mean[c] += x[c] / n;
        }
    }
    let mut cov = [[0.0; 3]; 3];
    for i in 0..plane {
        let x = sample(image, i);
        let d = [x[0] - mean[0], x[1] - mean[1], x[2] - mean[2]];
        for a in 0..3 {
            for b in 0..3 {
                cov[a][b] += d[a] * d[b] / n;
            }
        }
    }
    (mean, cov)
}

fn sample(image: &Image, i: usize) -> [f64; 3] {
    let plane = image.plane_len();
    [image.data[i] as f64, image.data[plane + i] as f64, image.data[2 * plane + i] as f64]
}

fn mul3(m: &[[f64; 3]; 3], v: [f64; 3]) -> [f64; 3] {
    std::array::from_fn(|r| m[r][0] * v[0] + m[r][1] * v[1] + m[r][2] * v[2])
}

fn matmul3(a: &[[f64; 3]; 3], b: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    std::array::from_fn(|r| std::array::from_fn(|c| (0..3).map(|k| a[r][k] * b[k][c]).sum()))
}

fn invert3(m: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let cof = |r: usize, c: usize| {
        let (r1, r2) = ((r + 1) % 3, (r + 2) % 3);
        let (c1, c2) = ((c + 1) % 3, (c + 2) % 3);
        m[r1][c1] * m[r2][c2] - m[r1][c2] * m[r2][c1]
    };
    let det = m[0][0] * cof(0, 0) + m[0][1] * cof(0, 1) + m[0][2] * cof(0, 2);
    // inverse = adjugate / det, adjugate = transposed cofactors.
    std::array::from_fn(|r| std::array::from_fn(|c| cof(c, r) / det))
}

/// Lower Cholesky factor of a symmetric positive-definite 3x3 matrix.
fn cholesky3(m: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut l = [[0.0; 3]; 3];
    for r in 0..3 {
        for c in 0..=r {
            let s: f64 = (0..c).map(|k| l[r][k] * l[c][k]).sum();
            if r == c {
                l[r][c] = (m[r][r] - s).max(0.0).sqrt();
            } else {
                l[r][c] = (m[r][c] - s) / l[c][c];
            }
        }
    }
    l
}

/// `V diag(max(λ, 0)^power) Vᵀ` for a symmetric 3x3 matrix (cyclic Jacobi eigen-decomposition).
fn sym_power(m: &[[f64; 3]; 3], power: f64) -> [[f64; 3]; 3] {
    sym_power_floored(m, power, 0.0)
}

/// `V diag(max(λ, floor)^power) Vᵀ` for a symmetric 3x3 matrix (cyclic Jacobi eigen-decomposition).
fn sym_power_floored(m: &[[f64; 3]; 3], power: f64, floor: f64) -> [[f64; 3]; 3] {
    let mut a = *m;
    let mut v = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    for _sweep in 0..50 {
        let off = a[0][1].abs() + a[0][2].abs() + a[1][2].abs();
        if off <= 1e-300 {
            break;
        }
        for (p, q) in [(0, 1), (0, 2), (1, 2)] {
            if a[p][q] == 0.0 {
                continue;
            }
            let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
            let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
            let t = if theta == 0.0 { 1.0 } else { t };
            let c = 1.0 / (t * t + 1.0).sqrt();
            let s = t * c;
            // a = Jᵀ a J with the rotation J in the (p, q) plane; v = v J.
            for row in a.iter_mut() {
                let (akp, akq) = (row[p], row[q]);
                row[p] = c * akp - s * akq;
                row[q] = s * akp + c * akq;
            }
            let (row_p, row_q) = (a[p], a[q]);
            a[p] = std::array::from_fn(|k| c * row_p[k] - s * row_q[k]);
            a[q] = std::array::from_fn(|k| s * row_p[k] + c * row_q[k]);
            for row in v.iter_mut() {
                let (vp, vq) = (row[p], row[q]);
                row[p] = c * vp - s * vq;
                row[q] = s * vp + c * vq;
            }
        }
    }
    let lambda: [f64; 3] = std::array::from_fn(|k| a[k][k].max(floor).powf(power));
    std::array::from_fn(|r| std::array::from_fn(|c| (0..3).map(|k| v[r][k] * lambda[k] * v[c][k]).sum()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yiq_round_trip_is_the_identity() {
        let rgb = [0.2, 0.7, 0.4];
        let back = yiq_to_rgb_pixel(rgb_to_yiq(rgb));
        for c in 0..3 {
            assert!((back[c] - rgb[c]).abs() < 1e-12);
        }
    }

    #[test]
    fn matrix_square_roots_square_back() {
        let m = [[0.04, 0.01, -0.005], [0.01, 0.03, 0.002], [-0.005, 0.002, 0.02]];
        let root = sym_power(&m, 0.5);
        let inv_root = sym_power(&m, -0.5);
        let l = cholesky3(&m);
        let lt: [[f64; 3]; 3] = std::array::from_fn(|r| std::array::from_fn(|c| l[c][r]));
        for (name, got, want) in [
            ("sqrt^2", matmul3(&root, &root), m),
            ("sqrt * inv sqrt", matmul3(&root, &inv_root), [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]),
            ("L Lᵀ", matmul3(&l, &lt), m),
        ] {
            for r in 0..3 {
                for c in 0..3 {
                    assert!((got[r][c] - want[r][c]).abs() < 1e-12, "{name}: {got:?} vs {want:?}");
                }
            }
        }
    }
}
