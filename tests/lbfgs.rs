//! L-BFGS: the f64 reference (PyTorch's algorithm) on a quadratic, and the GPU optimizer against it.

mod common;

use common::*;
use stylize::optim::lbfgs::reference::{self, LbfgsState};
use stylize::optim::{Lbfgs, LbfgsConfig, LbfgsOutcome};
use stylize::test_support::rel_err_f64;

/// f(x) = 1/2 x'Ax - b'x with A = 0.5 I + B'B / n (positive definite, condition number ~10).
struct Quadratic {
    n: usize,
    a: Vec<f64>,
    b: Vec<f64>,
}

impl Quadratic {
    fn new(n: usize, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let m: Vec<f64> = (0..n * n).map(|_| rng.normal()).collect();
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] = (0..n).map(|k| m[k * n + i] * m[k * n + j]).sum::<f64>() / n as f64;
            }
            a[i * n + i] += 0.5;
        }
        let b = rng.vec(n, -1.0, 1.0);
        Self { n, a, b }
    }

    fn grad(&self, x: &[f64]) -> Vec<f64> {
        (0..self.n).map(|i| (0..self.n).map(|j| self.a[i * self.n + j] * x[j]).sum::<f64>() - self.b[i]).collect()
    }

    fn loss_and_grad(&self, x: &[f64]) -> (f64, Vec<f64>) {
        let g = self.grad(x);
        // f = 1/2 x'(Ax) - b'x = 1/2 x'(g + b) - b'x
        let f = (0..self.n).map(|i| 0.5 * x[i] * (g[i] + self.b[i]) - self.b[i] * x[i]).sum();
        (f, g)
    }

    /// The minimizer A^-1 b, by Gaussian elimination.
    #[allow(clippy::needless_range_loop)]
    fn solution(&self) -> Vec<f64> {
        let n = self.n;
        let mut m: Vec<Vec<f64>> = (0..n).map(|i| [&self.a[i * n..(i + 1) * n], &[self.b[i]]].concat()).collect();
        for col in 0..n {
            let pivot = (col..n).max_by(|&p, &q| m[p][col].abs().total_cmp(&m[q][col].abs())).unwrap();
            m.swap(col, pivot);
            for row in 0..n {
                if row != col {
                    let f = m[row][col] / m[col][col];
                    for k in col..=n {
                        m[row][k] -= f * m[col][k];
                    }
                }
            }
        }
        (0..n).map(|i| m[i][n] / m[i][i]).collect()
    }
}

#[test]
fn lbfgs_reference_converges_on_a_quadratic() {
    let q = Quadratic::new(50, 31);
    let solution = q.solution();
    // With tolerances out of the way, the fixed-step iteration converges to rounding level.
    let config = LbfgsConfig { tolerance_change: 1e-20, tolerance_grad: 1e-20, ..LbfgsConfig::new(1.0) };
    let mut state = LbfgsState::default();
    let mut x = vec![0.0; q.n];
    for _ in 0..50 {
        reference::step(config, 1, &mut state, &mut x, |x| q.loss_and_grad(x));
    }
    let err = rel_err_f64(&x, &solution);
    assert!(err < 1e-9, "after 50 iterations ||x - x*|| / ||x*|| = {err:e}");
    // With PyTorch's defaults it gets close, then stops where g'd > -tolerance_change: the
    // iterate no longer moves (PyTorch breaks before the update, every call).
    let config = LbfgsConfig::new(1.0);
    let mut state = LbfgsState::default();
    let mut x = vec![0.0; q.n];
    for _ in 0..40 {
        reference::step(config, 1, &mut state, &mut x, |x| q.loss_and_grad(x));
    }
    let err = rel_err_f64(&x, &solution);
    assert!(err < 1e-4, "after 40 iterations ||x - x*|| / ||x*|| = {err:e}");
    let stalled = x.clone();
    reference::step(config, 1, &mut state, &mut x, |x| q.loss_and_grad(x));
    assert_eq!(x, stalled);
    let gtd: f64 = q.grad(&x).iter().zip(&state.d).map(|(g, d)| g * d).sum();
    assert!(gtd > -config.tolerance_change, "g'd = {gtd:e}");
}

/// jcjohnson/neural-style runs one optim.lbfgs call with maxIter = N; that is the same trajectory
/// as N calls with max_iter = 1 (each call re-evaluates the same point once more).
#[test]
fn lbfgs_reference_one_call_of_n_iterations_equals_n_calls_of_one() {
    let q = Quadratic::new(30, 32);
    for history in [100, 4] {
        let config = LbfgsConfig { history, ..LbfgsConfig::new(1.0) };
        let mut one_call = vec![0.0; q.n];
        let mut state = LbfgsState::default();
        reference::step(config, 15, &mut state, &mut one_call, |x| q.loss_and_grad(x));
        assert_eq!(state.n_iter, 15);
        let mut many = vec![0.0; q.n];
        let mut state = LbfgsState::default();
        for _ in 0..15 {
            reference::step(config, 1, &mut state, &mut many, |x| q.loss_and_grad(x));
        }
        assert!(rel_err_f64(&many, &one_call) < 1e-12, "history {history}");
        assert_eq!(state.old_dirs.len(), history.min(14));
    }
}

#[test]
fn lbfgs_reference_stops_at_tolerance_grad() {
    let q = Quadratic::new(10, 33);
    let mut x = q.solution();
    let before = x.clone();
    let mut state = LbfgsState::default();
    reference::step(LbfgsConfig { tolerance_grad: 1e-6, ..LbfgsConfig::new(1.0) }, 1, &mut state, &mut x, |x| {
        q.loss_and_grad(x)
    });
    assert_eq!(x, before);
    assert_eq!(state.n_iter, 0);
}

/// The GPU optimizer against the reference on the quadratic, the gradient computed on the CPU
/// from the GPU's parameters and uploaded each step; with the full history and with a short one
/// (so the ring of history slots wraps).
#[test]
fn gpu_lbfgs_matches_reference_on_a_quadratic() {
    let q = Quadratic::new(50, 34);
    for (grid, ctx) in contexts("gpu_lbfgs_matches_reference_on_a_quadratic") {
        for history in [100, 5] {
            let config = LbfgsConfig { history, ..LbfgsConfig::new(1.0) };
            let mut rng = Rng::new(35);
            let start = rng.vec(q.n, -1.0, 1.0);
            let param = upload(&ctx, &start);
            let grad = poisoned(&ctx, q.n);
            let mut lbfgs = Lbfgs::new(&ctx, q.n, &param, &grad, config).unwrap();
            let mut state = LbfgsState::default();
            let mut x = start.clone();
            for iteration in 1..=20 {
                let on_gpu = to_f64(&read(&ctx, &param, q.n));
                ctx.write(&grad, &to_f32(&q.grad(&on_gpu)));
                let outcome = lbfgs.step(&ctx).unwrap();
                assert!(matches!(outcome, LbfgsOutcome::Stepped { .. }), "{outcome:?}");
                reference::step(config, 1, &mut state, &mut x, |x| q.loss_and_grad(x));
                let err = rel_err(&read(&ctx, &param, q.n), &x);
                assert!(err <= 1e-4, "history {history}, iteration {iteration} ({grid}): relative error {err:e}");
                assert_eq!(lbfgs.history_len(), state.old_dirs.len());
            }
            assert_eq!(lbfgs.iterations(), 20);
            assert!(lbfgs.previous_gtd().is_some_and(|g| g < 0.0));
        }
    }
}

/// The same with the vectors in bands (4 bands of 3, 3, 3 and 1 rows of 5): every dot product
/// summed over the bands, every update band by band.
#[test]
fn gpu_lbfgs_in_bands_matches_reference_on_a_quadratic() {
    use stylize::ops::{ActShape, bands::Bands};
    let q = Quadratic::new(50, 34);
    let shape = ActShape { channels: 1, height: 10, width: 5 };
    for (grid, mut ctx) in contexts("gpu_lbfgs_in_bands_matches_reference_on_a_quadratic") {
        ctx.set_band_limit(3 * 5 * 4);
        let config = LbfgsConfig { history: 5, ..LbfgsConfig::new(1.0) };
        let mut rng = Rng::new(35);
        let start = rng.vec(q.n, -1.0, 1.0);
        let (param, grad) = (Bands::new(&ctx, "param", shape).unwrap(), Bands::new(&ctx, "grad", shape).unwrap());
        assert_eq!(param.bands().len(), 4);
        param.write(&ctx, &to_f32(&start));
        let mut lbfgs = Lbfgs::banded(&ctx, &param, &grad, config).unwrap();
        let mut state = LbfgsState::default();
        let mut x = start.clone();
        for iteration in 1..=12 {
            let on_gpu = to_f64(&param.read(&ctx).unwrap());
            grad.write(&ctx, &to_f32(&q.grad(&on_gpu)));
            let outcome = lbfgs.step(&ctx).unwrap();
            assert!(matches!(outcome, LbfgsOutcome::Stepped { .. }), "{outcome:?}");
            reference::step(config, 1, &mut state, &mut x, |x| q.loss_and_grad(x));
            let err = rel_err(&param.read(&ctx).unwrap(), &x);
            assert!(err <= 1e-4, "iteration {iteration} ({grid}): relative error {err:e}");
            assert_eq!(lbfgs.history_len(), state.old_dirs.len());
        }
    }
}

/// A zero gradient is converged: nothing moves, no iteration is counted.
#[test]
fn gpu_lbfgs_stops_at_tolerance_grad() {
    let Some(ctx) = gpu_or_skip("gpu_lbfgs_stops_at_tolerance_grad") else {
        return;
    };
    let start = [0.5, -0.25, 1.0];
    let param = upload(&ctx, &start);
    let grad = upload(&ctx, &[0.0, 1e-8, -1e-8]);
    let mut lbfgs = Lbfgs::new(&ctx, 3, &param, &grad, LbfgsConfig::new(1.0)).unwrap();
    let outcome = lbfgs.step(&ctx).unwrap();
    assert!(matches!(outcome, LbfgsOutcome::Converged { .. }), "{outcome:?}");
    assert_eq!(read(&ctx, &param, 3), to_f32(&start));
    assert_eq!(lbfgs.iterations(), 0);
}

/// A direction with g'd > -tolerance_change is not followed (PyTorch breaks before the update):
/// a gradient of 2e-7 per value is above tolerance_grad, but g'd = -4e-13.
#[test]
fn gpu_lbfgs_does_not_follow_a_direction_below_tolerance_change() {
    let Some(ctx) = gpu_or_skip("gpu_lbfgs_does_not_follow_a_direction_below_tolerance_change") else {
        return;
    };
    let start = vec![0.25; 10];
    let gradient = vec![2e-7; 10];
    let config = LbfgsConfig::new(1.0);
    let param = upload(&ctx, &start);
    let grad = upload(&ctx, &gradient);
    let mut lbfgs = Lbfgs::new(&ctx, 10, &param, &grad, config).unwrap();
    let mut state = LbfgsState::default();
    let mut x = start.clone();
    for _ in 0..2 {
        let outcome = lbfgs.step(&ctx).unwrap();
        assert!(matches!(outcome, LbfgsOutcome::Stepped { .. }), "{outcome:?}");
        reference::step(config, 1, &mut state, &mut x, |_| (0.0, gradient.clone()));
    }
    assert_eq!(x, start);
    assert_eq!(read(&ctx, &param, 10), to_f32(&start));
    assert_eq!((lbfgs.iterations(), state.n_iter), (2, 2));
    let gtd = lbfgs.previous_gtd().unwrap();
    assert!(gtd < 0.0 && gtd > -config.tolerance_change, "{gtd:e}");
}
