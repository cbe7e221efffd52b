//! L-BFGS as `torch.optim.LBFGS` with `line_search_fn=None` computes it, one iteration per
//! [`Lbfgs::step`], on GPU buffers.
//!
//! # Which algorithm
//!
//! [`reference::step`] mirrors PyTorch's `LBFGS.step` line by line (any `max_iter`). The GPU
//! optimizer runs it with `max_iter = 1`: every call evaluates the gradient once (someone else's
//! step writes it into `grad_buffer`) and takes one fixed-size step, `t = lr`, the first one
//! `t = min(1, 1 / |g|_1) * lr`. That is the trajectory of jcjohnson/neural-style, which calls
//! `optim.lbfgs` once with `maxIter = num_iterations` and no line search: one gradient evaluation
//! per iteration, the same two-loop recursion, the same `H_diag = s'y / y'y` scaling and the same
//! first step. What survives of the stopping rules with `max_iter = 1`:
//! * `max |g| <= tolerance_grad`: the step changes nothing (PyTorch returns early) and reports
//!   [`LbfgsOutcome::Converged`];
//! * `g'd > -tolerance_change` (not a descent direction): the parameters stay, the state
//!   advances (PyTorch breaks before `_add_grad`); decided on the GPU, reported one step late;
//! * a curvature pair with `y's <= 1e-10` is not added to the history.
//!
//! PyTorch's `tolerance_change` tests on `|d t|` and on the loss change only end the inner loop,
//! which a single iteration ends anyway, so they never act here (nor does it take the loss).
//!
//! # GPU design
//!
//! The vectors (`d`, the previous gradient, the history pairs `s_i`, `y_i`) and every scalar the
//! recursion needs (`alpha_i`, `rho_i`, `beta_i`, `H_diag`, `t`, `g'd`) live on the GPU; every
//! kernel is built once (per history slot) and only their order changes from step to step. Each
//! step reads back five scalars (`y's`, `y'y`, `max |g|`, `|g|_1` and the previous `g'd`) with one
//! small readback, which waits for the gradient step: the host needs them for PyTorch's branches
//! (history admission, convergence, first step size). History slots are allocated on first use
//! (`history + 1` pairs of buffers at most).

use std::collections::VecDeque;

use crate::gpu::{Context, GpuError, Kernel, Step};
use crate::ops::bands::{Bands, check_split, each_band};
use crate::ops::vector;

/// Hyper-parameters; `new` takes the step length and the rest as PyTorch's defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LbfgsConfig {
    /// Fixed step length (`lr`).
    pub lr: f64,
    /// Curvature pairs kept (`history_size`), at least 1.
    pub history: usize,
    /// A gradient with `max |g|` at most this is converged (`tolerance_grad`).
    pub tolerance_grad: f64,
    /// Directions with `g'd > -tolerance_change` are not followed (`tolerance_change`).
    pub tolerance_change: f64,
}

impl LbfgsConfig {
    /// Step length `lr` with torch.optim.LBFGS's history 100 and tolerances 1e-7 and 1e-9. The
    /// method's rate is `Options::default().learning_rate`, its one source.
    pub fn new(lr: f64) -> Self {
        Self { lr, history: 100, tolerance_grad: 1e-7, tolerance_change: 1e-9 }
    }
}

/// What one [`Lbfgs::step`] did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LbfgsOutcome {
    /// `max |g| <= tolerance_grad`: nothing was changed.
    Converged {
        /// `max |g|` of the gradient seen.
        grad_max: f64,
    },
    /// An update `x += t d` was submitted (with `t` replaced by 0 on the GPU when `g'd` was
    /// not below `-tolerance_change`).
    Stepped {
        /// The step length `t`.
        t: f64,
        /// Curvature pairs used for the direction.
        history: usize,
        /// `max |g|` of the gradient seen.
        grad_max: f64,
    },
}

// Layout of the scalars buffer.
const YS: usize = 0;
const YY: usize = 1;
const GMAX: usize = 2;
const GABS: usize = 3;
const GTD: usize = 4;
const T: usize = 5;
const TEFF: usize = 6;
const HDIAG: usize = 7;
const READBACK: usize = 5;
const SLOT_BASE: usize = 8;
// Per history slot: rho, alpha, a dot-product scratch, the second loop's coefficient alpha - beta.
const RHO: usize = 0;
const ALPHA: usize = 1;
const DOT: usize = 2;
const COEF: usize = 3;

fn slot_scalar(slot: usize, what: usize) -> usize {
    SLOT_BASE + 4 * slot + what
}

/// One history pair and the kernels that use it.
struct Slot {
    /// The pair's arrays (the kernels' bind groups use them; `state` reads them back).
    s: Bands,
    y: Bands,
    /// As the candidate: y = g - g_prev, s = t d, y's, y'y, max |g|, |g|_1.
    probe: Step,
    /// First loop: alpha = rho s'q; q -= alpha y.
    first: Step,
    /// Second loop: beta = rho y'r; r += (alpha - beta) s.
    second: Step,
}

/// L-BFGS state on the GPU for one parameter array (one buffer, or bands: `ops::bands`, every
/// vector split alike and every dot product summed over the bands); see the module documentation.
pub struct Lbfgs {
    config: LbfgsConfig,
    param: Bands,
    grad: Bands,
    /// The small buffer of scalars the kernels read and write (layout private).
    scalars: wgpu::Buffer,
    /// The search direction `d`.
    pub direction: Bands,
    prev_grad: Bands,
    slots: Vec<Slot>,
    /// Active history, oldest first.
    order: VecDeque<usize>,
    /// The slot the next curvature pair is written into.
    candidate: Option<usize>,
    first_probe: Step,
    head: Step,
    hdiag_scale: Step,
    tail: Step,
    n_iter: u64,
    t: f64,
    h_diag: f64,
    last_gtd: Option<f64>,
}

impl Lbfgs {
    /// Prepares the optimizer of `len` values in `param`, whose gradient arrives in `grad`.
    pub fn new(
        ctx: &Context,
        len: usize,
        param: &wgpu::Buffer,
        grad: &wgpu::Buffer,
        config: LbfgsConfig,
    ) -> Result<Self, GpuError> {
        Self::banded(ctx, &Bands::flat(len, param.clone()), &Bands::flat(len, grad.clone()), config)
    }

    /// As `new` for parameters in bands, their gradient split alike.
    pub fn banded(ctx: &Context, param: &Bands, grad: &Bands, config: LbfgsConfig) -> Result<Self, GpuError> {
        if config.history == 0 {
            return Err(GpuError::Device("L-BFGS needs a history of at least one pair".into()));
        }
        check_split("L-BFGS's parameters and gradient", &[param, grad])?;
        let scalars = ctx.upload("lbfgs scalars", &vec![0.0; SLOT_BASE + 4 * (config.history + 1)])?;
        let direction = param.zeros_like(ctx, "lbfgs direction")?;
        let prev_grad = param.zeros_like(ctx, "lbfgs previous gradient")?;
        let mut first_probe = Step::new();
        vector::abs_max_bands(ctx, &mut first_probe, grad, &scalars, GMAX)?;
        vector::abs_sum_bands(ctx, &mut first_probe, grad, &scalars, GABS)?;
        let mut head = Step::new();
        each_band(&mut head, &[grad, &direction], |len, b| vector::copy_scaled(ctx, len, -1.0, b[0], b[1]))?;
        let mut hdiag_scale = Step::new();
        each_band(&mut hdiag_scale, &[&direction], |len, b| {
            vector::scale_scalar(ctx, len, 1.0, &scalars, HDIAG, b[0])
        })?;
        let mut tail = Step::new();
        each_band(&mut tail, &[grad, &prev_grad], |len, b| vector::copy_scaled(ctx, len, 1.0, b[0], b[1]))?;
        vector::dot_bands(ctx, &mut tail, grad, &direction, &scalars, GTD, 1.0)?;
        tail.push(vector::scalar_gate(ctx, &scalars, TEFF, GTD, -config.tolerance_change as f32, T)?);
        each_band(&mut tail, &[&direction, param], |len, b| {
            vector::axpy_scalar(ctx, len, 1.0, &scalars, TEFF, b[0], b[1])
        })?;
        Ok(Self {
            config,
            param: param.clone(),
            grad: grad.clone(),
            scalars,
            direction,
            prev_grad,
            slots: Vec::new(),
            order: VecDeque::new(),
            candidate: None,
            first_probe,
            head,
            hdiag_scale,
            tail,
            n_iter: 0,
            t: 0.0,
            h_diag: 1.0,
            last_gtd: None,
        })
    }

    fn new_slot(&self, ctx: &Context, index: usize) -> Result<Slot, GpuError> {
        let sc = &self.scalars;
        let (grad, prev_grad, direction) = (&self.grad, &self.prev_grad, &self.direction);
        let s = self.param.like(ctx, "lbfgs s")?;
        let y = self.param.like(ctx, "lbfgs y")?;
        let mut probe = Step::new();
        each_band(&mut probe, &[grad, &y], |len, b| vector::copy_scaled(ctx, len, 1.0, b[0], b[1]))?;
        each_band(&mut probe, &[prev_grad, &y], |len, b| vector::axpy(ctx, len, -1.0, b[0], b[1]))?;
        each_band(&mut probe, &[direction, &s], |len, b| vector::copy_scaled_scalar(ctx, len, 1.0, sc, T, b[0], b[1]))?;
        vector::dot_bands(ctx, &mut probe, &y, &s, sc, YS, 1.0)?;
        vector::dot_bands(ctx, &mut probe, &y, &y, sc, YY, 1.0)?;
        vector::abs_max_bands(ctx, &mut probe, grad, sc, GMAX)?;
        vector::abs_sum_bands(ctx, &mut probe, grad, sc, GABS)?;
        let (rho, alpha, dot, coef) =
            (slot_scalar(index, RHO), slot_scalar(index, ALPHA), slot_scalar(index, DOT), slot_scalar(index, COEF));
        let mut first = Step::new();
        vector::dot_bands(ctx, &mut first, &s, direction, sc, dot, 1.0)?;
        first.push(vector::scalar_fma(ctx, sc, alpha, 0.0, rho, 1.0, rho, dot)?);
        each_band(&mut first, &[&y, direction], |len, b| vector::axpy_scalar(ctx, len, -1.0, sc, alpha, b[0], b[1]))?;
        let mut second = Step::new();
        vector::dot_bands(ctx, &mut second, &y, direction, sc, dot, 1.0)?;
        second.push(vector::scalar_fma(ctx, sc, coef, 1.0, alpha, -1.0, rho, dot)?);
        each_band(&mut second, &[&s, direction], |len, b| vector::axpy_scalar(ctx, len, 1.0, sc, coef, b[0], b[1]))?;
        Ok(Slot { s, y, probe, first, second })
    }

    fn candidate(&mut self, ctx: &Context) -> Result<usize, GpuError> {
        if let Some(index) = self.candidate {
            return Ok(index);
        }
        let index = self.slots.len();
        let slot = self.new_slot(ctx, index)?;
        self.slots.push(slot);
        self.candidate = Some(index);
        Ok(index)
    }

    fn write_scalar(&self, ctx: &Context, index: usize, value: f64) {
        ctx.queue.write_buffer(&self.scalars, (index * 4) as u64, bytemuck::bytes_of(&(value as f32)));
    }

    /// One L-BFGS iteration from the gradient in `grad_buffer` (submit the step that writes it
    /// first). Reads back five scalars (waiting for that step), then submits the direction and the
    /// update `param += t d` without waiting.
    pub fn step(&mut self, ctx: &Context) -> Result<LbfgsOutcome, GpuError> {
        let candidate = if self.n_iter == 0 { None } else { Some(self.candidate(ctx)?) };
        match candidate {
            None => self.first_probe.submit(ctx),
            Some(index) => self.slots[index].probe.submit(ctx),
        };
        let probe = ctx.read(&self.scalars, READBACK)?;
        let value = |i: usize| probe[i] as f64;
        if self.n_iter > 0 {
            self.last_gtd = Some(value(GTD));
        }
        let grad_max = value(GMAX);
        if grad_max <= self.config.tolerance_grad {
            return Ok(LbfgsOutcome::Converged { grad_max });
        }
        self.n_iter += 1;
        if let Some(index) = candidate {
            let ys = value(YS);
            if ys > 1e-10 {
                self.order.push_back(index);
                self.candidate = None;
                if self.order.len() > self.config.history {
                    self.candidate = self.order.pop_front();
                }
                self.write_scalar(ctx, slot_scalar(index, RHO), 1.0 / ys);
                self.h_diag = ys / value(YY);
            }
        }
        self.t = if self.n_iter == 1 { (1.0f64).min(1.0 / value(GABS)) * self.config.lr } else { self.config.lr };
        self.write_scalar(ctx, T, self.t);
        self.write_scalar(ctx, HDIAG, self.h_diag);
        let mut steps: Vec<&Step> = vec![&self.head];
        if self.n_iter > 1 {
            steps.extend(self.order.iter().rev().map(|&j| &self.slots[j].first));
            steps.push(&self.hdiag_scale);
            steps.extend(self.order.iter().map(|&j| &self.slots[j].second));
        }
        steps.push(&self.tail);
        submit_all(ctx, &steps);
        Ok(LbfgsOutcome::Stepped { t: self.t, history: self.order.len(), grad_max })
    }

    /// Iterations taken (steps that did not report convergence).
    pub fn iterations(&self) -> u64 {
        self.n_iter
    }

    /// Curvature pairs currently held.
    pub fn history_len(&self) -> usize {
        self.order.len()
    }

    /// `g'd` of the last iteration but one (read back with the latest step's scalars): a value
    /// above `-tolerance_change` means that iteration left the parameters where they were.
    #[cfg(feature = "testing")]
    pub fn previous_gtd(&self) -> Option<f64> {
        self.last_gtd
    }

    /// The configuration.
    pub fn config(&self) -> LbfgsConfig {
        self.config
    }

    /// The parameters this optimizer updates.
    pub fn param(&self) -> &Bands {
        &self.param
    }

    /// Everything the next iterations depend on, as the GPU holds it (exact f32 bits): the
    /// scalars buffer, the direction, the previous gradient, every history slot allocated so far,
    /// which slots are active (oldest first) and which one takes the next pair, and the host's
    /// iteration count, `t`, `H_diag` and last `g'd`.
    pub fn state(&self, ctx: &Context) -> Result<LbfgsSnapshot, GpuError> {
        let pairs = self
            .slots
            .iter()
            .map(|slot| Ok((slot.s.read(ctx)?, slot.y.read(ctx)?)))
            .collect::<Result<_, GpuError>>()?;
        Ok(LbfgsSnapshot {
            n_iter: self.n_iter,
            t: self.t,
            h_diag: self.h_diag,
            last_gtd: self.last_gtd,
            scalars: ctx.read(&self.scalars, self.scalars_len())?,
            direction: self.direction.read(ctx)?,
            prev_grad: self.prev_grad.read(ctx)?,
            pairs,
            order: self.order.iter().copied().collect(),
            candidate: self.candidate,
        })
    }

    /// Puts a `state()` back into an optimizer that has not stepped yet (same length and
    /// history size); checks it fully before writing anything.
    pub fn restore_state(&mut self, ctx: &Context, state: &LbfgsSnapshot) -> Result<(), GpuError> {
        self.check_state(state).map_err(|m| GpuError::Device(format!("saved L-BFGS state: {m}")))?;
        if !self.slots.is_empty() {
            return Err(GpuError::Device("L-BFGS state can only be restored before the first step".into()));
        }
        for (index, (s, y)) in state.pairs.iter().enumerate() {
            let slot = self.new_slot(ctx, index)?;
            slot.s.write(ctx, s);
            slot.y.write(ctx, y);
            self.slots.push(slot);
        }
        ctx.write(&self.scalars, &state.scalars);
        self.direction.write(ctx, &state.direction);
        self.prev_grad.write(ctx, &state.prev_grad);
        self.order = state.order.iter().copied().collect();
        self.candidate = state.candidate;
        self.n_iter = state.n_iter;
        self.t = state.t;
        self.h_diag = state.h_diag;
        self.last_gtd = state.last_gtd;
        Ok(())
    }

    fn scalars_len(&self) -> usize {
        SLOT_BASE + 4 * (self.config.history + 1)
    }

    /// The invariants `step` keeps: every slot is either active or the candidate, at most
    /// `history` are active, every vector has `len` values.
    fn check_state(&self, state: &LbfgsSnapshot) -> Result<(), String> {
        let vectors = [("direction", &state.direction), ("previous gradient", &state.prev_grad)];
        let pairs = state.pairs.iter().flat_map(|(s, y)| [("s", s), ("y", y)]);
        let len = self.param.len();
        if let Some((what, v)) = vectors.into_iter().chain(pairs).find(|(_, v)| v.len() != len) {
            return Err(format!("{what} has {} values for {len}", v.len()));
        }
        if state.scalars.len() != self.scalars_len() {
            return Err(format!("{} scalars for {}", state.scalars.len(), self.scalars_len()));
        }
        let slots = state.pairs.len();
        let mut used = vec![false; slots];
        for &index in state.order.iter().chain(&state.candidate) {
            if index >= slots || std::mem::replace(&mut used[index], true) {
                return Err(format!("slot {index} is out of range or used twice ({slots} slots)"));
            }
        }
        if used.contains(&false) || state.order.len() > self.config.history {
            return Err(format!(
                "{} active pairs and {slots} slots for a history of {}",
                state.order.len(),
                self.config.history
            ));
        }
        Ok(())
    }
}

/// L-BFGS's whole state (see [`Lbfgs::state`]); vectors bit for bit as the GPU held them.
#[derive(Clone, Debug, PartialEq)]
pub struct LbfgsSnapshot {
    pub n_iter: u64,
    pub t: f64,
    pub h_diag: f64,
    pub last_gtd: Option<f64>,
    /// The GPU's scalars buffer (layout private to this module).
    pub scalars: Vec<f32>,
    pub direction: Vec<f32>,
    pub prev_grad: Vec<f32>,
    /// `(s, y)` of every slot allocated, by slot index.
    pub pairs: Vec<(Vec<f32>, Vec<f32>)>,
    /// Active slots, oldest first.
    pub order: Vec<usize>,
    /// The slot the next curvature pair is written into, if one is set aside.
    pub candidate: Option<usize>,
}

/// Records the kernels of several steps into one compute pass and submits once.
fn submit_all(ctx: &Context, steps: &[&Step]) -> wgpu::SubmissionIndex {
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        for kernel in steps.iter().flat_map(|s| s.kernels()) {
            Kernel::record(kernel, &mut pass);
        }
    }
    ctx.queue.submit([encoder.finish()])
}

/// `torch.optim.LBFGS` (`line_search_fn=None`) in f64, line by line.
pub mod reference {
    use std::collections::VecDeque;

    use super::LbfgsConfig;

    /// The optimizer's state between calls (`self.state` in PyTorch).
    #[derive(Clone, Debug, Default)]
    pub struct LbfgsState {
        /// Last direction `d`.
        pub d: Vec<f64>,
        /// Last step length `t`.
        pub t: f64,
        /// `y_i`, oldest first.
        pub old_dirs: VecDeque<Vec<f64>>,
        /// `s_i`, oldest first.
        pub old_stps: VecDeque<Vec<f64>>,
        /// `1 / y_i's_i`.
        pub ro: VecDeque<f64>,
        /// Initial Hessian scale `y's / y'y`.
        pub h_diag: f64,
        /// Gradient at the start of the last iteration.
        pub prev_flat_grad: Option<Vec<f64>>,
        /// Loss at the start of the last iteration.
        pub prev_loss: f64,
        /// Iterations over all calls.
        pub n_iter: u64,
        /// Function evaluations over all calls.
        pub func_evals: u64,
    }

    fn dot(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    /// After the first iteration: admits the last curvature pair (if `y's > 1e-10`, dropping the
    /// oldest past `config.history`) and sets `state.d` by the two-loop recursion.
    fn update_direction(config: LbfgsConfig, state: &mut LbfgsState, flat_grad: &[f64]) {
        let prev = state.prev_flat_grad.as_ref().expect("set after the first iteration");
        let y: Vec<f64> = flat_grad.iter().zip(prev).map(|(g, p)| g - p).collect();
        let s: Vec<f64> = state.d.iter().map(|d| d * state.t).collect();
        let ys = dot(&y, &s);
        if ys > 1e-10 {
            if state.old_dirs.len() == config.history {
                state.old_dirs.pop_front();
                state.old_stps.pop_front();
                state.ro.pop_front();
            }
            state.h_diag = ys / dot(&y, &y);
            state.old_dirs.push_back(y);
            state.old_stps.push_back(s);
            state.ro.push_back(1.0 / ys);
        }
        let num_old = state.old_dirs.len();
        let mut al = vec![0.0; num_old];
        let mut q: Vec<f64> = flat_grad.iter().map(|g| -g).collect();
        for i in (0..num_old).rev() {
            al[i] = dot(&state.old_stps[i], &q) * state.ro[i];
            for (qk, yk) in q.iter_mut().zip(&state.old_dirs[i]) {
                *qk -= al[i] * yk;
            }
        }
        let mut r: Vec<f64> = q.iter().map(|v| v * state.h_diag).collect();
        for (i, &al_i) in al.iter().enumerate() {
            let be_i = dot(&state.old_dirs[i], &r) * state.ro[i];
            for (rk, sk) in r.iter_mut().zip(&state.old_stps[i]) {
                *rk += (al_i - be_i) * sk;
            }
        }
        state.d = r;
    }

    /// One `LBFGS.step(closure)` with `max_iter` iterations (and PyTorch's `max_eval =
    /// max_iter * 5 / 4`) on `x`; `closure` returns the loss and its gradient at a point.
    /// Returns the loss at the starting point, as PyTorch does.
    pub fn step(
        config: LbfgsConfig,
        max_iter: usize,
        state: &mut LbfgsState,
        x: &mut [f64],
        mut closure: impl FnMut(&[f64]) -> (f64, Vec<f64>),
    ) -> f64 {
        let max_eval = max_iter * 5 / 4;
        let (orig_loss, mut flat_grad) = closure(x);
        let mut loss = orig_loss;
        let mut current_evals = 1;
        state.func_evals += 1;
        let abs_max = |g: &[f64]| g.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let mut opt_cond = abs_max(&flat_grad) <= config.tolerance_grad;
        if opt_cond {
            return orig_loss;
        }
        let mut n_iter = 0;
        while n_iter < max_iter {
            n_iter += 1;
            state.n_iter += 1;
            if state.n_iter == 1 {
                state.d = flat_grad.iter().map(|g| -g).collect();
                state.old_dirs.clear();
                state.old_stps.clear();
                state.ro.clear();
                state.h_diag = 1.0;
            } else {
                update_direction(config, state, &flat_grad);
            }
            state.prev_flat_grad = Some(flat_grad.clone());
            state.prev_loss = loss;
            state.t = if state.n_iter == 1 {
                (1.0f64).min(1.0 / flat_grad.iter().map(|g| g.abs()).sum::<f64>()) * config.lr
            } else {
                config.lr
            };
            let gtd = dot(&flat_grad, &state.d);
            if gtd > -config.tolerance_change {
                break;
            }
            let mut ls_func_evals = 0;
            for (xk, dk) in x.iter_mut().zip(&state.d) {
                *xk += state.t * dk;
            }
            if n_iter != max_iter {
                let (l, g) = closure(x);
                loss = l;
                flat_grad = g;
                opt_cond = abs_max(&flat_grad) <= config.tolerance_grad;
                ls_func_evals = 1;
            }
            current_evals += ls_func_evals;
            state.func_evals += ls_func_evals as u64;
            if n_iter == max_iter || current_evals >= max_eval || opt_cond {
                break;
            }
            if abs_max(&state.d) * state.t.abs() <= config.tolerance_change {
                break;
            }
            if (loss - state.prev_loss).abs() < config.tolerance_change {
                break;
            }
        }
        orig_loss
    }
}
