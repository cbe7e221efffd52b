//! The tiled executor: the network run window by window over an image of any size, computing
//! exactly the untiled losses and image gradient (`tiling` has the schedule and its f64 proof).
//!
//! One training step is one submit of two passes over the tiles. Pass 1 loads each tile's window
//! of the image into a window executor, runs the forward, and adds the Gram of the positions the
//! tile owns at every style layer into the whole image's Gram and the content loss of its owned
//! positions into a slot of its own; then each style term's loss and dL/dG come from the whole
//! Grams. Pass 2 loads each window again, runs forward and backward with the loss gradients
//! injected at every loss layer (content: from the whole image's content features cropped to the
//! window; style: the whole dL/dG) and writes the image gradient of the tile's own pixels back.
//! Injecting everywhere in the window, not only where its features are exact, changes nothing
//! the tile keeps: a feature outside the tile's exact region depends on none of its pixels.
//!
//! With `StyleLoss::W2` each style term's mean and second moment take its Gram's place: pass 1
//! sums them over the tiles' owned positions (`ops::w2::add_moments`, weighted by the whole
//! mask's column weights when masked), the loss and the moments' gradients come once from the
//! sums, and pass 2 injects dL/dF from those and each window's own features
//! (`ops::w2::feature_grad`). The style image's row means are summed beside its Gram likewise.
//!
//! The total variation reads only the image: each tile adds the terms anchored at its own
//! pixels and their gradient from its window's image in pass 2 (the halo holds their neighbours).
//!
//! Every window executor takes its buffers from one `SharedBuffers` (windows run one after the
//! other), so the memory is that of the largest window plus the image-sized arrays here, which
//! are stored in bands of at most one binding each (`ops::bands`): no buffer grows with the image.

use super::executor::{SharedBuffers, W2Terms};
use super::tiling::{Tile, Tiling, window_plan};
use super::{ConvLayerWeights, Execute, Executor, Losses, NetError, Plan};
use crate::gpu::{Context, Step};
use crate::ops::bands::{Bands, copy_rect_from_bands, copy_rect_into_bands, each_band};
use crate::ops::region::{Rect, copy_rect};
use crate::ops::{ActShape, gram, loss, normalize, reduce, tv, vector, w2};

/// The network over a tiled image: the same public face as `Executor` for what a run needs.
pub struct TiledExecutor {
    /// The plan of the whole image (its losses' scales are the ones every window uses).
    pub plan: Plan,
    pub tiling: Tiling,
    /// One executor per distinct window size, and which one serves each tile.
    windows: Vec<Executor>,
    window_of_tile: Vec<usize>,
    shared: SharedBuffers,
    /// RGB in [0, 1], the normalized image being optimized and dL/d(image), each of the whole
    /// image (in bands, split alike).
    rgb: Bands,
    image: Bands,
    image_grad: Bands,
    /// Per content term: the content image's features over the whole image (in bands).
    content_features: Vec<Bands>,
    /// A tile's owned features at one loss layer, and the content target over the same positions.
    owned: wgpu::Buffer,
    owned_target: wgpu::Buffer,
    /// Per style term: a masked term's column weights over the whole layer (T^2 / a, with the
    /// coverage a of the whole mask; in bands), and the owned block of one of them.
    column_weights: Vec<Option<Bands>>,
    owned_weights: wgpu::Buffer,
    /// Under `--normalize-gradients`: per content term, then per style term, each tile's share of
    /// the L1 norm of the term's gradient, and the gradient at a tile's owned positions of a style layer.
    norm_partials: Vec<wgpu::Buffer>,
    owned_grad: wgpu::Buffer,
    /// Per style term with `StyleLoss::W2`: the whole image's moments, target and gradients
    /// (`ops::w2` over the whole layer, summed over the tiles' owned positions) and style row
    /// means; every window holds handles on the same buffers. Empty with Gram losses.
    w2: W2Terms,
    /// One tile's Gram before it is added to the whole image's, and the Gram forward's partial sums.
    tile_gram: wgpu::Buffer,
    gram_partials: wgpu::Buffer,
    /// Per tile (tile-major): each content term's loss over the tile's owned positions and, with
    /// a total variation, the terms anchored at its pixels; then per style term its loss.
    losses: wgpu::Buffer,
    rgb_to_image: Step,
    image_to_rgb: Step,
    capture_content: Step,
    capture_style: Step,
    train: Step,
}

/// Where the Grams of the tiles' owned positions are summed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum GramSum {
    /// The style targets (the style image's Grams).
    StyleTargets,
    /// The Grams of the image being optimized.
    Image,
}

impl TiledExecutor {
    /// Tiles of `side` pixels with the plan's halo (`tiling::halo`).
    pub fn new(ctx: &Context, plan: Plan, weights: &[ConvLayerWeights], side: usize) -> Result<Self, NetError> {
        let halo = super::tiling::halo(&plan);
        Self::with_halo(ctx, plan, weights, side, halo)
    }

    /// As `new` with a chosen halo: the tests show one grid step less than the plan's is not exact.
    pub fn with_halo(
        ctx: &Context,
        plan: Plan,
        weights: &[ConvLayerWeights],
        side: usize,
        halo: usize,
    ) -> Result<Self, NetError> {
        let tiling = Tiling::with_halo(&plan, side, halo)?;
        let (window_plans, window_of_tile) = window_plans(&plan, &tiling)?;
        let shared = SharedBuffers::new(ctx, &window_plans.iter().collect::<Vec<_>>(), weights)?;
        let w2 = super::executor::w2_terms(ctx, &plan, &largest_owned_blocks(&plan, &tiling))?;
        let windows = window_plans
            .into_iter()
            .map(|wp| Executor::window(ctx, wp, &shared, &w2))
            .collect::<Result<Vec<_>, _>>()?;
        let (owned_len, partials_len, gram_len) = tile_buffer_lens(&plan, &tiling);
        let column_weights = whole_column_weights(ctx, &plan)?;
        let content_features = plan
            .content
            .iter()
            .map(|t| Bands::new(ctx, &format!("content features {} (whole image)", t.layer), plan.acts[t.act]))
            .collect::<Result<Vec<_>, _>>()?;
        let image = Bands::new(ctx, "image (whole)", plan.acts[0])?;
        if nine_point_tv(&plan) && image.bands().len() > 1 {
            let s = plan.acts[0];
            return Err(NetError::Unsupported(format!(
                "the nine-point total variation over tiles needs the {}x{} image in one binding (it runs on \
                 the whole image, not per tile); give a smaller --size or --tv-loss sum",
                s.width, s.height
            )));
        }
        let mut tiled = Self {
            rgb: image.like(ctx, "rgb image (whole)")?,
            image_grad: image.like(ctx, "image gradient (whole)")?,
            image,
            content_features,
            owned: ctx.buffer("owned features of a tile", owned_len)?,
            owned_target: ctx.buffer("owned content target of a tile", owned_len)?,
            column_weights,
            w2,
            owned_weights: ctx.buffer("owned mask weights of a tile", owned_len)?,
            norm_partials: norm_partials(ctx, &plan, &tiling)?,
            owned_grad: ctx
                .buffer("owned gradient of a tile", if plan.losses.normalize_gradients { owned_len } else { 1 })?,
            tile_gram: ctx.buffer("gram of a tile", gram_len)?,
            gram_partials: ctx.buffer("gram partials of a tile", partials_len)?,
            losses: ctx.buffer("losses of the tiles", loss_slots(&plan, &tiling))?,
            rgb_to_image: Step::new(),
            image_to_rgb: Step::new(),
            capture_content: Step::new(),
            capture_style: Step::new(),
            train: Step::new(),
            plan,
            tiling,
            windows,
            window_of_tile,
            shared,
        };
        tiled.record_steps(ctx)?;
        Ok(tiled)
    }

    fn record_steps(&mut self, ctx: &Context) -> Result<(), NetError> {
        // Every band holds all three channels of its rows: a plane is a third of it.
        let (rgb, image, input) = (&self.rgb, &self.image, &self.plan.losses.input);
        each_band(&mut self.rgb_to_image, &[rgb, image], |len, b| {
            normalize::normalize(ctx, input, len / 3, b[0], b[1])
        })?;
        each_band(&mut self.image_to_rgb, &[image, rgb], |len, b| {
            normalize::denormalize_clamp(ctx, input, len / 3, b[0], b[1])
        })?;
        self.capture_content = self.record_content_capture(ctx)?;
        self.capture_style = self.record_gram_pass(ctx, GramSum::StyleTargets)?;
        self.train = self.record_training(ctx)?;
        Ok(())
    }

    fn window(&self, tile: usize) -> &Executor {
        &self.windows[self.window_of_tile[tile]]
    }

    /// The positions of activation `act` that tile `t`'s window covers, over the whole image.
    fn window_region(&self, t: usize, act: usize) -> Rect {
        let local = self.window(t).plan.acts[act];
        let (y, x) = self.tiling.window_origin(&self.tiling.tiles[t], act);
        Rect { y, x, height: local.height, width: local.width }
    }

    /// Copies tile `t`'s window of the whole image into its window executor's input.
    fn load_window(&self, ctx: &Context, step: &mut Step, t: usize) -> Result<(), NetError> {
        let window = self.window(t);
        let local = window.plan.acts[0];
        copy_rect_from_bands(ctx, step, &self.image, self.window_region(t, 0), window.act_buffer(0), local, (0, 0))?;
        Ok(())
    }

    /// The positions of activation `act` that `tile` owns: over the whole image, and in its window.
    fn owned(&self, tile: &Tile, act: usize) -> (Rect, Rect) {
        let (rows, cols) = self.tiling.owned(tile, act);
        let (oy, ox) = self.tiling.window_origin(tile, act);
        let whole = Rect { y: rows.start, x: cols.start, height: rows.len(), width: cols.len() };
        (whole, Rect { y: rows.start - oy, x: cols.start - ox, ..whole })
    }

    /// Copies what tile `t` owns of activation `act` of its window into `self.owned` (compact).
    fn crop_owned(&self, ctx: &Context, step: &mut Step, t: usize, act: usize) -> Result<ActShape, NetError> {
        let window = self.window(t);
        let (whole, local) = self.owned(&self.tiling.tiles[t], act);
        let compact = ActShape { channels: self.plan.acts[act].channels, height: whole.height, width: whole.width };
        step.push(copy_rect(ctx, window.act_buffer(act), window.plan.acts[act], local, &self.owned, compact, (0, 0))?);
        Ok(compact)
    }

    /// Copies what tile `t` owns of a masked term's column weights (one value per position of
    /// activation `act` over the whole image) into `self.owned_weights`.
    fn crop_owned_weights(
        &self,
        ctx: &Context,
        step: &mut Step,
        t: usize,
        act: usize,
        weights: &Bands,
    ) -> Result<&wgpu::Buffer, NetError> {
        let (whole, _) = self.owned(&self.tiling.tiles[t], act);
        let compact = ActShape { channels: 1, height: whole.height, width: whole.width };
        copy_rect_from_bands(ctx, step, weights, whole, &self.owned_weights, compact, (0, 0))?;
        Ok(&self.owned_weights)
    }

    /// Per tile: the forward, then each content term's owned features into the whole image's.
    fn record_content_capture(&self, ctx: &Context) -> Result<Step, NetError> {
        let mut step = Step::new();
        for t in 0..self.tiling.tiles.len() {
            let window = self.window(t);
            self.load_window(ctx, &mut step, t)?;
            step.extend(window.record_forward_pass(ctx)?);
            for (term, features) in self.plan.content.iter().zip(&self.content_features) {
                let (whole, local) = self.owned(&self.tiling.tiles[t], term.act);
                let (src, src_dims) = (window.act_buffer(term.act), window.plan.acts[term.act]);
                copy_rect_into_bands(ctx, &mut step, src, src_dims, local, features, (whole.y, whole.x))?;
            }
        }
        Ok(step)
    }

    /// Per tile: the forward, then at each style layer the Gram of the owned positions, added
    /// into `sum`'s Grams (the first tile writes them); for `GramSum::Image` also each content
    /// term's loss over the owned positions. The first half of a training step, or the style capture.
    fn record_gram_pass(&self, ctx: &Context, sum: GramSum) -> Result<Step, NetError> {
        let mut step = Step::new();
        for t in 0..self.tiling.tiles.len() {
            self.load_window(ctx, &mut step, t)?;
            step.extend(self.window(t).record_forward_pass(ctx)?);
            self.add_owned_grams(ctx, &mut step, t, sum)?;
            if sum == GramSum::Image {
                self.owned_content_losses(ctx, &mut step, t)?;
            }
        }
        Ok(step)
    }

    /// With `StyleLoss::W2`, the image's moments take the Grams' place and the style targets'
    /// row means join their Grams (`add_owned_w2_moments`).
    fn add_owned_grams(&self, ctx: &Context, step: &mut Step, t: usize, sum: GramSum) -> Result<(), NetError> {
        let first = self.windows.first().expect("at least one window");
        for (i, term) in self.plan.style.iter().enumerate() {
            let compact = self.crop_owned(ctx, step, t, term.act)?;
            if compact.is_empty() {
                continue;
            }
            if !self.w2.is_empty() {
                self.add_owned_w2_moments(ctx, step, t, i, compact, sum)?;
                if sum == GramSum::Image {
                    continue;
                }
            }
            let whole = match sum {
                GramSum::StyleTargets => first.style_gram_buffer(i),
                GramSum::Image => first.image_gram_buffer(i),
            };
            let shape = gram::GramShape { channels: compact.channels, n: compact.height * compact.width };
            let dst = if t == 0 { whole } else { &self.tile_gram };
            // The style targets are plain Grams of the style image, as `Executor::set_style` takes them.
            match (&self.column_weights[i], sum) {
                (Some(weights), GramSum::Image) => {
                    let owned_weights = self.crop_owned_weights(ctx, step, t, term.act, weights)?;
                    let partials = &self.gram_partials;
                    step.extend(gram::forward_masked_with_partials(
                        ctx,
                        shape,
                        &self.owned,
                        owned_weights,
                        // The whole layer's octave bounds every tile's weights.
                        term.mask.as_ref().map_or(0, |mask| mask.weight_exponent()),
                        partials,
                        dst,
                    )?);
                }
                _ => step.extend(gram::forward_with_partials(ctx, shape, &self.owned, &self.gram_partials, dst)?),
            }
            if t > 0 {
                step.push(vector::axpy(ctx, shape.gram_len(), 1.0, &self.tile_gram, whole)?);
            }
        }
        Ok(())
    }

    /// W2 style term `i`'s share of the moments from the positions tile `t` owns (`compact`, in
    /// `self.owned`), over the whole layer's N: the image's mean and second moment (weighted by
    /// the whole mask's column weights for a masked term), or the style image's plain row means
    /// (its second moment is its plain Gram, `add_owned_grams`'). Tile 0 writes, the rest add.
    fn add_owned_w2_moments(
        &self,
        ctx: &Context,
        step: &mut Step,
        t: usize,
        i: usize,
        compact: ActShape,
        sum: GramSum,
    ) -> Result<(), NetError> {
        let (buffers, style_means) = &self.w2[i];
        let positions = compact.height * compact.width;
        let plain = w2::Block { features: &self.owned, positions, weights: None };
        match (sum, &self.column_weights[i]) {
            (GramSum::StyleTargets, _) => {
                step.push(w2::add_row_means(ctx, buffers.shape(), plain, style_means, t == 0)?);
            }
            (GramSum::Image, None) => w2::add_moments(ctx, step, buffers, plain, t == 0)?,
            (GramSum::Image, Some(weights)) => {
                let weights = Some(self.crop_owned_weights(ctx, step, t, self.plan.style[i].act, weights)?);
                w2::add_moments(ctx, step, buffers, w2::Block { weights, ..plain }, t == 0)?;
            }
        }
        Ok(())
    }

    /// Each content term's loss over the positions tile `t` owns, into the tile's slots.
    fn owned_content_losses(&self, ctx: &Context, step: &mut Step, t: usize) -> Result<(), NetError> {
        for (j, (term, features)) in self.plan.content.iter().zip(&self.content_features).enumerate() {
            let compact = self.crop_owned(ctx, step, t, term.act)?;
            if compact.is_empty() {
                continue;
            }
            let (whole, _) = self.owned(&self.tiling.tiles[t], term.act);
            copy_rect_from_bands(ctx, step, features, whole, &self.owned_target, compact, (0, 0))?;
            let (len, slot) = (compact.len(), self.content_slot(t, j));
            loss::sq_diff_forward(ctx, step, len, &self.owned, &self.owned_target, &self.losses, slot, term.scale)?;
            if let Some(partials) = self.norm_partials.get(j) {
                // This tile's sum of |F - P| (the norm of 2 scale (F - P) is 2 scale times it).
                step.push(vector::axpy(ctx, len, -1.0, &self.owned_target, &self.owned)?);
                vector::abs_sum(ctx, step, len, &self.owned, partials, t)?;
            }
        }
        Ok(())
    }

    /// Pass 1, each style term's loss and dL/dG from the whole image's Grams, then pass 2.
    fn record_training(&self, ctx: &Context) -> Result<Step, NetError> {
        let mut step = self.record_gram_pass(ctx, GramSum::Image)?;
        let first = self.windows.first().expect("at least one window");
        for (i, term) in self.plan.style.iter().enumerate() {
            let slot = self.style_slot(i);
            // Normalized gradients take beta after the norm, as the untiled executor does.
            let normalize = self.plan.losses.normalize_gradients;
            let scale = if normalize { term.scale } else { term.scale * self.plan.style_weight };
            if let Some((buffers, _)) = self.w2.get(i) {
                w2::forward_from_moments(ctx, &mut step, buffers, &self.losses, slot, term.scale)?;
                w2::moment_grads(ctx, &mut step, buffers, scale)?;
                continue;
            }
            let len = self.plan.gram_shape(term.act).gram_len();
            let (image_gram, target) = (first.image_gram_buffer(i), first.style_gram_buffer(i));
            loss::sq_diff_forward(ctx, &mut step, len, image_gram, target, &self.losses, slot, term.scale)?;
            let grad_gram = first.gram_gradient_buffer(i);
            step.push(loss::sq_diff_backward(ctx, len, image_gram, target, grad_gram, scale, false)?);
        }
        if self.plan.losses.normalize_gradients {
            self.record_norms(ctx, &mut step)?;
        }
        for t in 0..self.tiling.tiles.len() {
            self.record_tile_backward(ctx, &mut step, t)?;
        }
        if nine_point_tv(&self.plan) {
            self.record_whole_nine_point_tv(ctx, &mut step)?;
        }
        Ok(step)
    }

    /// The nine-point total variation reads only the image, which is in one band (`new` checks):
    /// its loss goes to the first tile's slot (the others stay 0) and its gradient is added to the
    /// whole image's after every tile wrote its own pixels'.
    fn record_whole_nine_point_tv(&self, ctx: &Context, step: &mut Step) -> Result<(), NetError> {
        let plan = &self.plan;
        let (shape, weight, factors) = (plan.tv_shape(), plan.tv_weight, plan.tv_rgb_factors());
        let (image, grad) = (&self.image.bands()[0].buffer, &self.image_grad.bands()[0].buffer);
        tv::nine_point::forward(ctx, step, shape, image, &self.losses, self.tv_slot(0), weight, &factors)?;
        step.push(tv::nine_point::backward(ctx, shape, image, grad, weight, &factors, true)?);
        Ok(())
    }

    fn slots_per_tile(&self) -> usize {
        slots_per_tile(&self.plan)
    }

    fn content_slot(&self, t: usize, term: usize) -> usize {
        t * self.slots_per_tile() + term
    }

    fn tv_slot(&self, t: usize) -> usize {
        t * self.slots_per_tile() + self.plan.content.len()
    }

    fn style_slot(&self, term: usize) -> usize {
        self.tiling.tiles.len() * self.slots_per_tile() + term
    }

    /// `--normalize-gradients`: each style term's share per tile of the L1 norm of its gradient
    /// (a pass of its own: the forward again, then the Gram backward over the owned positions
    /// with the whole dL/dG), then every term's norm over the whole image and its reciprocal into
    /// the scalars the windows read.
    fn record_norms(&self, ctx: &Context, step: &mut Step) -> Result<(), NetError> {
        let plan = &self.plan;
        let first = self.windows.first().expect("at least one window");
        for t in 0..self.tiling.tiles.len() {
            if plan.style.is_empty() {
                break;
            }
            self.load_window(ctx, step, t)?;
            step.extend(self.window(t).record_forward_pass(ctx)?);
            for (i, term) in plan.style.iter().enumerate() {
                let compact = self.crop_owned(ctx, step, t, term.act)?;
                if compact.is_empty() {
                    continue;
                }
                let shape = gram::GramShape { channels: compact.channels, n: compact.height * compact.width };
                let grad_gram = first.gram_gradient_buffer(i);
                match &self.column_weights[i] {
                    _ if !self.w2.is_empty() => self.owned_w2_gradient(ctx, step, t, i, shape.n)?,
                    Some(weights) => {
                        let owned_weights = self.crop_owned_weights(ctx, step, t, term.act, weights)?;
                        let kernel = gram::backward_masked(
                            ctx,
                            shape,
                            &self.owned,
                            owned_weights,
                            grad_gram,
                            &self.owned_grad,
                            false,
                        )?;
                        step.extend(kernel);
                    }
                    None => step.extend(gram::backward(ctx, shape, &self.owned, grad_gram, &self.owned_grad, false)?),
                }
                let partials = &self.norm_partials[plan.content.len() + i];
                vector::abs_sum(ctx, step, compact.len(), &self.owned_grad, partials, t)?;
            }
        }
        let tiles = self.tiling.tiles.len();
        let terms =
            plan.content.iter().map(|term| (false, 2.0 * term.scale)).chain(plan.style.iter().map(|_| (true, 1.0)));
        for (k, (style, factor)) in terms.enumerate() {
            let index = if style { k - plan.content.len() } else { k };
            let norm = first.norm_buffer(style, index).expect("allocated with normalize_gradients");
            reduce::sum_into(ctx, step, tiles, &self.norm_partials[k], norm, 0, factor as f32)?;
            step.push(vector::scalar_reciprocal(ctx, norm, 1, 0, super::executor::NORMALIZE_EPS)?);
        }
        Ok(())
    }

    /// W2 style term `i`'s dL/dF at the positions tile `t` owns (`positions` of them, in
    /// `self.owned`) into `self.owned_grad`, from the whole image's moment gradients.
    fn owned_w2_gradient(
        &self,
        ctx: &Context,
        step: &mut Step,
        t: usize,
        i: usize,
        positions: usize,
    ) -> Result<(), NetError> {
        let act = self.plan.style[i].act;
        let weights = match &self.column_weights[i] {
            Some(weights) => Some(self.crop_owned_weights(ctx, step, t, act, weights)?),
            None => None,
        };
        let block = w2::Block { features: &self.owned, positions, weights };
        w2::feature_grad(ctx, step, &self.w2[i].0, block, &self.owned_grad, false)?;
        Ok(())
    }

    /// Pass 2 over tile `t`: its window, its content targets, forward and backward with the
    /// gradients injected, and the image gradient of its own pixels into the whole image's.
    fn record_tile_backward(&self, ctx: &Context, step: &mut Step, t: usize) -> Result<(), NetError> {
        let (tile, window) = (&self.tiling.tiles[t], self.window(t));
        self.load_window(ctx, step, t)?;
        for (j, (term, features)) in self.plan.content.iter().zip(&self.content_features).enumerate() {
            let local = window.plan.acts[term.act];
            let from = self.window_region(t, term.act);
            copy_rect_from_bands(ctx, step, features, from, window.content_target_buffer(j), local, (0, 0))?;
        }
        // Masked style terms: the window's column weights, cut from the whole layer's.
        for (i, (term, weights)) in self.plan.style.iter().zip(&self.column_weights).enumerate() {
            let (Some(weights), Some(local_weights)) = (weights, window.column_weights_buffer(i)) else { continue };
            let local = ActShape { channels: 1, ..window.plan.acts[term.act] };
            let from = self.window_region(t, term.act);
            copy_rect_from_bands(ctx, step, weights, from, local_weights, local, (0, 0))?;
        }
        step.extend(window.record_injected_training(ctx)?);
        // The tile's own pixels are what it owns of the image (activation 0).
        let (own, in_window) = self.owned(tile, 0);
        let local = window.plan.acts[0];
        // The nine-point form runs on the whole image after the tiles (`record_training`).
        if self.plan.has_tv() && !nine_point_tv(&self.plan) {
            self.record_tile_tv(ctx, step, t, in_window)?;
        }
        let at = (own.y, own.x);
        copy_rect_into_bands(ctx, step, window.image_grad_buffer(), local, in_window, &self.image_grad, at)?;
        Ok(())
    }

    /// The total variation's terms anchored at tile `t`'s own pixels (`owned`, in its window) into
    /// its loss slot, and their gradient added to the window's image gradient, from the window's
    /// image: exact at the owned pixels, whose neighbours are all in the window.
    fn record_tile_tv(&self, ctx: &Context, step: &mut Step, t: usize, owned: Rect) -> Result<(), NetError> {
        let (plan, window) = (&self.plan, self.window(t));
        let (local, pixels) = (window.plan.acts[0], window.act_buffer(0));
        tv::forward_owned(ctx, step, local, owned, pixels, &self.losses, self.tv_slot(t), plan.tv_weight)?;
        step.push(tv::backward(ctx, local, pixels, window.image_grad_buffer(), plan.tv_weight, true)?);
        Ok(())
    }

    fn check_image_len(&self, len: usize) -> Result<(), NetError> {
        self.plan.check_image_len(len)
    }
}

impl Execute for TiledExecutor {
    fn plan(&self) -> &Plan {
        &self.plan
    }

    fn tiling(&self) -> Option<&Tiling> {
        Some(&self.tiling)
    }

    /// Uploads an RGB image in [0, 1] (CHW) and normalizes it into the image being optimized.
    fn set_image(&self, ctx: &Context, rgb: &[f32]) -> Result<(), NetError> {
        self.check_image_len(rgb.len())?;
        self.rgb.write(ctx, rgb);
        self.rgb_to_image.run(ctx)?;
        Ok(())
    }

    /// Writes an already normalized image (tests and resumed runs).
    fn set_normalized_image(&self, ctx: &Context, image: &[f32]) -> Result<(), NetError> {
        self.check_image_len(image.len())?;
        self.image.write(ctx, image);
        Ok(())
    }

    /// Runs the forward pass over the tiles of `rgb` and keeps its features at the content
    /// layers as targets.
    fn set_content(&self, ctx: &Context, rgb: &[f32]) -> Result<(), NetError> {
        self.set_image(ctx, rgb)?;
        self.capture_content.run(ctx)?;
        Ok(())
    }

    /// Runs the forward pass over the tiles of `rgb` and keeps the Grams at the style layers as targets.
    fn set_style(&self, ctx: &Context, rgb: &[f32]) -> Result<(), NetError> {
        self.set_image(ctx, rgb)?;
        self.capture_style.run(ctx)?;
        if !self.w2.is_empty() {
            self.windows.first().expect("at least one window").set_w2_targets(ctx)?;
        }
        Ok(())
    }

    /// The Gram matrices of `rgb` at the style layers; replaces the style targets with them.
    fn style_grams(&self, ctx: &Context, rgb: &[f32]) -> Result<Vec<Vec<f32>>, NetError> {
        self.set_style(ctx, rgb)?;
        self.read_style_grams(ctx)
    }

    /// The current style targets, in the order of `plan.style`.
    fn read_style_grams(&self, ctx: &Context) -> Result<Vec<Vec<f32>>, NetError> {
        let first = self.windows.first().expect("at least one window");
        (0..self.plan.style.len())
            .map(|i| Ok(ctx.read(first.style_gram_buffer(i), self.plan.gram_shape(self.plan.style[i].act).gram_len())?))
            .collect()
    }

    /// Sets the style targets directly, one C x C matrix per style term.
    fn set_style_grams(&self, ctx: &Context, grams: &[Vec<f32>]) -> Result<(), NetError> {
        self.windows.first().expect("at least one window").set_style_grams(ctx, grams)
    }

    /// The W2 terms' style row means (empty without W2), the whole image's.
    fn read_style_means(&self, ctx: &Context) -> Result<Vec<Vec<f32>>, NetError> {
        self.windows.first().expect("at least one window").read_style_means(ctx)
    }

    /// The W2 targets from given Grams (of the whole image's N positions) and row means.
    fn set_style_moments(&self, ctx: &Context, grams: &[Vec<f32>], means: &[Vec<f32>]) -> Result<(), NetError> {
        self.windows.first().expect("at least one window").set_style_moments(ctx, grams, means)
    }

    /// The recorded training step: both passes over the tiles. Callers append their optimizer's
    /// kernels so that one submit does everything.
    fn training_step(&mut self) -> &mut Step {
        &mut self.train
    }

    /// The normalized image being optimized (the whole image, in bands; handles on the buffers).
    fn image_bands(&self) -> Bands {
        self.image.clone()
    }

    /// dL/d(image) after a training step (the whole image, split as the image is).
    fn image_grad_bands(&self) -> Bands {
        self.image_grad.clone()
    }

    /// Number of values in the image (3 H W).
    fn image_len(&self) -> usize {
        self.plan.acts[0].len()
    }

    /// Reads the loss values of the last training step: each content term and the total
    /// variation summed over the tiles.
    fn read_losses(&self, ctx: &Context) -> Result<Losses, NetError> {
        let tiles = self.tiling.tiles.len();
        let slots = ctx.read(&self.losses, loss_slots(&self.plan, &self.tiling))?;
        let over_tiles = |slot: &dyn Fn(usize) -> usize| (0..tiles).map(|t| slots[slot(t)] as f64).sum::<f64>();
        let mut terms: Vec<f64> =
            (0..self.plan.content.len()).map(|j| over_tiles(&|t| self.content_slot(t, j))).collect();
        terms.extend((0..self.plan.style.len()).map(|i| slots[self.style_slot(i)] as f64));
        if self.plan.has_tv() {
            terms.push(over_tiles(&|t| self.tv_slot(t)));
        }
        Ok(Losses::from_slots(&self.plan, &terms))
    }

    /// Reads dL/d(image) of the last training step.
    #[cfg(feature = "testing")]
    fn read_image_grad(&self, ctx: &Context) -> Result<Vec<f32>, NetError> {
        Ok(self.image_grad.read(ctx)?)
    }

    /// Reads the normalized image.
    fn read_normalized_image(&self, ctx: &Context) -> Result<Vec<f32>, NetError> {
        Ok(self.image.read(ctx)?)
    }

    /// Reads the image as RGB in [0, 1] (denormalized and clamped on the GPU).
    fn read_rgb(&self, ctx: &Context) -> Result<Vec<f32>, NetError> {
        self.image_to_rgb.submit(ctx);
        Ok(self.rgb.read(ctx)?)
    }

    /// FLOPs of one tiled step (`tiling::tiled_flops`).
    fn flops_per_step(&self) -> Result<u64, NetError> {
        super::tiling::tiled_flops(&self.plan, &self.tiling)
    }

    /// Bytes of every buffer this executor allocated (the windows' shared buffers, the whole
    /// image's, and its steps' own), each counted once.
    fn allocated_bytes(&self) -> u64 {
        let whole: u64 = [&self.rgb, &self.image, &self.image_grad]
            .into_iter()
            .chain(&self.content_features)
            .chain(self.column_weights.iter().flatten())
            .map(Bands::bytes)
            .sum();
        let own: u64 = [&self.owned, &self.owned_target, &self.tile_gram, &self.gram_partials, &self.losses]
            .into_iter()
            .chain(&self.norm_partials)
            .chain([&self.owned_weights, &self.owned_grad])
            .map(|b| b.size())
            .sum::<u64>()
            + whole;
        let steps =
            [&self.capture_content, &self.capture_style, &self.train].iter().map(|s| s.scratch_bytes()).sum::<u64>();
        let w2: u64 = self.w2.iter().map(|(buffers, means)| buffers.bytes() + means.size()).sum();
        self.shared.bytes() + own + steps + w2
    }
}

/// Loss slots per tile: its content terms, then its share of the total variation.
/// Whether `plan` has crowsonkb's nine-point total variation.
fn nine_point_tv(plan: &Plan) -> bool {
    plan.has_tv() && plan.losses.tv_loss == super::TvLoss::NinePoint
}

fn slots_per_tile(plan: &Plan) -> usize {
    plan.content.len() + usize::from(plan.has_tv())
}

/// Slots of the loss buffer: per tile its content terms and total variation, then per style term.
fn loss_slots(plan: &Plan, tiling: &Tiling) -> usize {
    tiling.tiles.len() * slots_per_tile(plan) + plan.style.len()
}

/// Each masked style term's column weights T^2 / a over the whole layer (`gram::mask_column_weights`,
/// the coverage a of the whole mask), in bands.
fn whole_column_weights(ctx: &Context, plan: &Plan) -> Result<Vec<Option<Bands>>, NetError> {
    plan.style
        .iter()
        .map(|term| {
            let Some(mask) = &term.mask else { return Ok(None) };
            let weights = mask.column_weights();
            let shape = ActShape { channels: 1, ..plan.acts[term.act] };
            debug_assert_eq!(weights.len(), shape.len());
            let bands = Bands::new(ctx, &format!("column weights of {} (whole image)", term.layer), shape)?;
            bands.write(ctx, &weights);
            Ok(Some(bands))
        })
        .collect()
}

/// The plan of every distinct window size (`tiling::window_plan`; first the largest, so that it
/// bounds the rest), and per tile the index of its window's plan.
fn window_plans(plan: &Plan, tiling: &Tiling) -> Result<(Vec<Plan>, Vec<usize>), NetError> {
    let mut sizes: Vec<(usize, usize)> =
        tiling.tiles.iter().map(|t| (t.window_rows.len(), t.window_cols.len())).collect();
    sizes.sort_unstable_by(|a, b| (b.0 * b.1).cmp(&(a.0 * a.1)).then(b.cmp(a)));
    sizes.dedup();
    let of_tile = tiling
        .tiles
        .iter()
        .map(|t| sizes.iter().position(|&s| s == (t.window_rows.len(), t.window_cols.len())).expect("listed"))
        .collect();
    let plans = sizes.iter().map(|&(h, w)| window_plan(plan, h, w)).collect::<Result<Vec<_>, NetError>>()?;
    Ok((plans, of_tile))
}

/// Per style term: the most positions any tile owns at its layer (the W2 moments' longest block).
fn largest_owned_blocks(plan: &Plan, tiling: &Tiling) -> Vec<usize> {
    let owned = |tile: &Tile, act: usize| {
        let (rows, cols) = tiling.owned(tile, act);
        rows.len() * cols.len()
    };
    plan.style.iter().map(|term| tiling.tiles.iter().map(|tile| owned(tile, term.act)).max().unwrap_or(0)).collect()
}

/// Values of the tile buffers: the largest owned block of any loss layer, the largest Gram
/// forward's partial sums over one, and the largest Gram (each at least 1).
fn tile_buffer_lens(plan: &Plan, tiling: &Tiling) -> (usize, usize, usize) {
    let (mut owned, mut partials, mut gram_len) = (1, 1, 1);
    for tile in &tiling.tiles {
        for term in plan.content.iter().chain(&plan.style) {
            let (rows, cols) = tiling.owned(tile, term.act);
            owned = owned.max(plan.acts[term.act].channels * rows.len() * cols.len());
        }
        for term in &plan.style {
            let (rows, cols) = tiling.owned(tile, term.act);
            let shape = gram::GramShape { channels: plan.acts[term.act].channels, n: rows.len() * cols.len() };
            partials = partials.max(shape.partials_len());
            gram_len = gram_len.max(shape.gram_len());
        }
    }
    (owned, partials, gram_len)
}

/// Under `--normalize-gradients`, one buffer per content and per style term for each tile's share
/// of the L1 norm of the term's gradient (zero where a tile owns nothing); none without it.
fn norm_partials(ctx: &Context, plan: &Plan, tiling: &Tiling) -> Result<Vec<wgpu::Buffer>, NetError> {
    if !plan.losses.normalize_gradients {
        return Ok(Vec::new());
    }
    let tiles = tiling.tiles.len();
    plan.content
        .iter()
        .chain(&plan.style)
        .map(|term| Ok(ctx.upload(&format!("L1 norm shares of {}", term.layer), &vec![0.0; tiles])?))
        .collect()
}
