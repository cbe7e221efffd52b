//! The network on the GPU: activations and gradients allocated once, the forward pass, the losses
//! and the backward pass to the image recorded once into a `Step`. Where each activation lives
//! (a buffer of its own or a shared scratch buffer) is the plan's decision (`Plan::storage`).

use super::plan::REPLICATED_BORDER;
use super::{BufferSpec, ConvLayerWeights, Execute, Losses, NetError, Node, Plan, Storage};
use crate::gpu::{Context, GpuError, Step};
use crate::ops::bands::Bands;
use crate::ops::region::{self, Border, Rect};
use crate::ops::{conv, gram, loss, normalize, pool, relu, tv, vector, w2};

/// Buffers and recorded steps of one network at one image size, allocated from `Plan::buffers`
/// (see `Buffers` for what each holds).
pub struct Executor {
    pub plan: Plan,
    convs: Vec<conv::GpuConvWeights>,
    /// RGB in [0, 1], CHW: where images are uploaded and results read back.
    rgb: wgpu::Buffer,
    /// The buffer of activation 0 (the normalized image being optimized) and of every node's
    /// output: its own for kept activations, a handle on a shared scratch buffer for transient
    /// ones, which hold their value only until a later node of the forward pass overwrites it.
    acts: Vec<wgpu::Buffer>,
    /// The shared scratch buffers (`Plan::scratch`); the backward ping-pongs its gradients in the first two.
    scratch: Vec<wgpu::Buffer>,
    /// dL/d(image) after the backward pass, a buffer of its own so that it outlives the next forward pass.
    image_grad: wgpu::Buffer,
    /// Per node: the bit mask of a fused ReLU's output, the arg-max codes of a max-pool.
    masks: Vec<Option<wgpu::Buffer>>,
    codes: Vec<Option<wgpu::Buffer>>,
    content_targets: Vec<wgpu::Buffer>,
    style_grams: Vec<wgpu::Buffer>,
    /// Partial sums of every Gram forward (one after the other, so one buffer serves all); None
    /// without style terms.
    gram_partials: Option<wgpu::Buffer>,
    /// Each term's own gradient under `--normalize-gradients`, one term after the other; None without it.
    term_grad: Option<wgpu::Buffer>,
    /// Per style term: a masked term's column weights T^2 / a (`gram::mask_column_weights`).
    column_weights: Vec<Option<wgpu::Buffer>>,
    /// Per style term: the Gram of the image being optimized and the loss's gradient with respect to it.
    image_grams: Vec<wgpu::Buffer>,
    gram_grads: Vec<wgpu::Buffer>,
    /// Per content and per style term under `--normalize-gradients`: the L1 norm's two scalars.
    content_norms: Vec<Option<wgpu::Buffer>>,
    style_norms: Vec<Option<wgpu::Buffer>>,
    /// Per style term with `StyleLoss::W2`: its buffers (`ops::w2`; a masked term's weighting its
    /// positions by its column weights) and the style features' row means, captured with the
    /// style Gram (`set_style`); empty with Gram losses. A window of the tiled executor holds
    /// handles on the whole image's (`W2Terms`).
    w2: W2Terms,
    /// Under `Padding::Replicate`: the padded image and the first convolution's padded output,
    /// which the backward reuses for their gradients (`Plan::replicated_shapes`).
    padded: Option<(wgpu::Buffer, wgpu::Buffer)>,
    losses: wgpu::Buffer,
    rgb_to_image: Step,
    image_to_rgb: Step,
    forward: Step,
    capture_style: Step,
    train: Step,
}

/// Whether and how a recorded forward pass writes the fused ReLUs' masks the backward reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MaskWriting {
    /// Not at all (the forward of the content and style targets).
    None,
    /// In the convolutions' epilogues (`conv::forward_relu_masked`): the training forward.
    Epilogue,
    /// By a pass of its own after each convolution (`relu::pack_mask`), as before the epilogue
    /// wrote them: kept so that tests can show both give the same bits and gradients.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    SeparatePass,
}

/// One loss term: its index in `Plan::content` or in `Plan::style`.
#[derive(Clone, Copy, Debug)]
enum Term {
    Content(usize),
    Style(usize),
}

/// Per style term with `StyleLoss::W2`: its `ops::w2` buffers and its style row means.
pub(super) type W2Terms = Vec<(w2::W2Buffers, wgpu::Buffer)>;

/// Buffers that executors of one network at several window sizes share, because their windows
/// run one after the other (the tiled executor's): every label of `Plan::buffers` allocated once,
/// at the largest length any of the plans asks for, and the convolutions' weights uploaded once.
pub struct SharedBuffers {
    by_label: std::collections::HashMap<String, wgpu::Buffer>,
    convs: Vec<conv::GpuConvWeights>,
}

impl SharedBuffers {
    /// Allocates what every one of `plans` (one network, one loss set, any sizes) needs.
    pub fn new(ctx: &Context, plans: &[&Plan], weights: &[ConvLayerWeights]) -> Result<Self, NetError> {
        let first = plans.first().ok_or_else(|| NetError::BadSize("no window to share buffers between".into()))?;
        let mut longest: std::collections::BTreeMap<String, usize> = Default::default();
        for plan in plans {
            if plan.storage != first.storage {
                return Err(NetError::BadSize("windows of one network store their activations alike".into()));
            }
            let specs = plan.buffers();
            let own = specs.iter().filter(|spec| spec.kind != super::BufferKind::Weights);
            // Reductions and mask weights belong to recorded steps and uploads, not to the pool.
            let own: Vec<&BufferSpec> = own
                .filter(|spec| {
                    !specs.reductions.contains(spec) && !specs.column_weights.iter().flatten().any(|c| c == *spec)
                })
                .collect();
            // Executors find their buffers here by label: one label, one role.
            let mut labels: Vec<&str> = own.iter().map(|spec| spec.label.as_str()).collect();
            labels.sort_unstable();
            if let Some(twice) = labels.windows(2).find(|pair| pair[0] == pair[1]) {
                return Err(NetError::BadSize(format!("two buffers of one plan are labelled {:?}", twice[0])));
            }
            for spec in own {
                let len = longest.entry(spec.label.clone()).or_default();
                *len = (*len).max(spec.len);
            }
        }
        let by_label = longest
            .into_iter()
            .map(|(label, len)| Ok((label.clone(), ctx.buffer(&label, len)?)))
            .collect::<Result<_, GpuError>>()?;
        let convs = upload_convs(ctx, first, &first.buffers().convs, weights)?;
        Ok(Self { by_label, convs })
    }

    /// The buffer of `spec`'s label (an error for one no plan asked for, or asked shorter).
    fn take(&self, spec: &BufferSpec) -> Result<wgpu::Buffer, GpuError> {
        match self.by_label.get(&spec.label) {
            Some(buffer) if buffer.size() >= spec.bytes() => Ok(buffer.clone()),
            _ => Err(GpuError::Device(format!("no shared buffer of {} values for {}", spec.len, spec.label))),
        }
    }

    /// Bytes of every buffer here, weights included, each counted once.
    pub fn bytes(&self) -> u64 {
        let weights: u64 = self.convs.iter().map(|c| c.weight.size() + c.bias.size()).sum();
        weights + self.by_label.values().map(|b| b.size()).sum::<u64>()
    }
}

/// Where an executor's buffers come from: allocated for it alone, or taken from `SharedBuffers`.
#[derive(Clone, Copy)]
struct Allocator<'a> {
    ctx: &'a Context,
    shared: Option<&'a SharedBuffers>,
}

impl Allocator<'_> {
    fn one(&self, spec: &BufferSpec) -> Result<wgpu::Buffer, GpuError> {
        match self.shared {
            Some(shared) => shared.take(spec),
            None => self.ctx.buffer(&spec.label, spec.len),
        }
    }

    fn each(&self, specs: &[BufferSpec]) -> Result<Vec<wgpu::Buffer>, GpuError> {
        specs.iter().map(|spec| self.one(spec)).collect()
    }

    fn some(&self, specs: &[Option<BufferSpec>]) -> Result<Vec<Option<wgpu::Buffer>>, GpuError> {
        specs.iter().map(|spec| spec.as_ref().map(|spec| self.one(spec)).transpose()).collect()
    }
}

/// Which steps an executor records when it is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// Everything a run on the whole image uses: the forward, the style capture and the training step.
    Whole,
    /// Nothing: a window of the tiled executor, which records each tile's passes itself.
    Window,
}

/// Where the backward pass gets dL/dG of the style terms from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GramGradients {
    /// From the Gram of this executor's own image (`record_losses` computes it first).
    Own,
    /// Already in the gradient buffers (`gram_gradient_buffer`): a window of the tiled executor,
    /// whose dL/dG comes from the whole image's Gram; so do the `--normalize-gradients` norms
    /// (`norm_buffer`), which are the whole image's.
    Given,
}

impl Executor {
    /// Uploads the weights, allocates every buffer of `Plan::buffers` and records every step for `plan`.
    pub fn new(ctx: &Context, plan: Plan, weights: &[ConvLayerWeights]) -> Result<Self, NetError> {
        Self::build(ctx, plan, weights, None, Role::Whole)
    }

    /// An executor of one window of the tiled executor: its buffers taken from `shared`, its W2
    /// terms handles on the whole image's `w2` (`w2_terms`), no step recorded
    /// (`record_forward_pass`, `record_injected_training` record them per tile).
    pub(super) fn window(ctx: &Context, plan: Plan, shared: &SharedBuffers, w2: &W2Terms) -> Result<Self, NetError> {
        let mut window = Self::build(ctx, plan, &[], Some(shared), Role::Window)?;
        window.w2 = w2.clone();
        Ok(window)
    }

    fn build(
        ctx: &Context,
        plan: Plan,
        weights: &[ConvLayerWeights],
        shared: Option<&SharedBuffers>,
        role: Role,
    ) -> Result<Self, NetError> {
        plan.check_fits(ctx.binding_limit())?;
        let specs = plan.buffers();
        let alloc = Allocator { ctx, shared };
        let convs = match shared {
            Some(shared) => shared.convs.clone(),
            None => upload_convs(ctx, &plan, &specs.convs, weights)?,
        };
        let rgb = alloc.one(&specs.rgb)?;
        let scratch = alloc.each(&specs.scratch)?;
        let acts = specs
            .acts
            .iter()
            .zip(&plan.storage)
            .map(|(spec, storage)| match (spec, *storage) {
                (Some(spec), Storage::Kept) => alloc.one(spec),
                (None, Storage::Scratch(slot)) => Ok(scratch[slot].clone()),
                _ => unreachable!("the plan lists a buffer for every kept activation"),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let plane = plan.acts[0].len() / 3;
        let mut rgb_to_image = Step::new();
        let mut image_to_rgb = Step::new();
        if role == Role::Whole {
            rgb_to_image.push(normalize::normalize(ctx, &plan.losses.input, plane, &rgb, &acts[0])?);
            image_to_rgb.push(normalize::denormalize_clamp(ctx, &plan.losses.input, plane, &acts[0], &rgb)?);
        }
        let column_weights = upload_column_weights(ctx, &plan, &specs.column_weights)?;
        let mut executor = Self {
            image_grad: alloc.one(&specs.image_grad)?,
            masks: alloc.some(&specs.masks)?,
            codes: alloc.some(&specs.codes)?,
            gram_partials: specs.gram_partials.as_ref().map(|spec| alloc.one(spec)).transpose()?,
            term_grad: specs.term_grad.as_ref().map(|spec| alloc.one(spec)).transpose()?,
            content_targets: alloc.each(&specs.content_targets)?,
            style_grams: alloc.each(&specs.style_grams)?,
            losses: alloc.one(&specs.losses)?,
            w2: match role {
                Role::Whole => w2_buffers(ctx, &plan, &column_weights)?,
                Role::Window => Vec::new(),
            },
            column_weights,
            image_grams: alloc.each(&specs.image_grams)?,
            gram_grads: alloc.each(&specs.gram_grads)?,
            content_norms: alloc.some(&specs.content_norms)?,
            style_norms: alloc.some(&specs.style_norms)?,
            padded: specs
                .padded
                .as_ref()
                .map(|[image, output]| Ok::<_, GpuError>((alloc.one(image)?, alloc.one(output)?)))
                .transpose()?,
            forward: Step::new(),
            capture_style: Step::new(),
            train: Step::new(),
            plan,
            convs,
            rgb,
            acts,
            scratch,
            rgb_to_image,
            image_to_rgb,
        };
        executor.reserve_split_scratch(ctx)?;
        if role == Role::Whole {
            executor.forward = executor.record_forward(ctx, MaskWriting::None)?;
            executor.capture_style = executor.record_style_capture(ctx)?;
            executor.train = executor.record_training(ctx, MaskWriting::Epilogue)?;
        }
        Ok(executor)
    }

    /// Records the training step again with the masks packed by a pass of their own after each
    /// convolution (`relu::pack_mask`), the way before the epilogue wrote them, so that tests can
    /// compare the two. Whatever callers appended to the step is dropped.
    #[cfg(feature = "testing")]
    pub fn record_training_with_separate_mask_pass(&mut self, ctx: &Context) -> Result<(), NetError> {
        self.train = self.record_training(ctx, MaskWriting::SeparatePass)?;
        Ok(())
    }

    /// The fused ReLUs' mask words, per node (None where the node has no fused ReLU), for tests.
    #[cfg(feature = "testing")]
    pub fn read_relu_masks(&self, ctx: &Context) -> Result<Vec<Option<Vec<u32>>>, NetError> {
        self.plan
            .nodes
            .iter()
            .zip(&self.masks)
            .map(|(node, mask)| {
                let words = self.plan.mask_words(node);
                Ok(match (mask, words) {
                    (Some(mask), Some(words)) => Some(ctx.read_words(mask, words)?),
                    _ => None,
                })
            })
            .collect()
    }

    /// One shared scratch, sized for the largest split-K convolution, serves every layer.
    fn reserve_split_scratch(&self, ctx: &Context) -> Result<(), NetError> {
        let split_scratch = self
            .plan
            .nodes
            .iter()
            .filter_map(|node| match *node {
                Node::Conv { input, output, .. } => {
                    Some(conv::scratch_floats(ctx, self.plan.conv_shape(input, output)))
                }
                _ => None,
            })
            .max()
            .unwrap_or(0);
        if split_scratch > 0 {
            ctx.shared_scratch(split_scratch)?;
        }
        Ok(())
    }

    /// The forward pass; with `masks` other than None, also the fused ReLUs' masks the backward
    /// reads (the max-pools write their arg-max codes either way).
    fn record_forward(&self, ctx: &Context, masks: MaskWriting) -> Result<Step, NetError> {
        let mut step = Step::new();
        for (i, node) in self.plan.nodes.iter().enumerate() {
            let (x, y) = (&self.acts[node.input()], &self.acts[node.output()]);
            let mask = self.masks[i].as_ref().filter(|_| masks != MaskWriting::None);
            // A replicate-padded convolution runs over the padded image into its padded output.
            let padded = self.padded_buffers(node);
            let (x, y) = padded.unwrap_or((x, y));
            let mut node_step = Step::new();
            if padded.is_some() {
                let image = self.plan.acts[node.input()];
                node_step.push(region::pad(ctx, image, REPLICATED_BORDER, Border::Replicate, &self.acts[0], x)?);
            }
            node_step.extend(match *node {
                Node::Conv { conv, input, output, relu: fused } => {
                    let shape = self.plan.conv_shape(input, output);
                    match mask {
                        Some(mask) if fused && masks == MaskWriting::Epilogue => {
                            conv::forward_relu_masked(ctx, shape, x, &self.convs[conv], y, mask)?
                        }
                        _ => conv::forward(ctx, shape, x, &self.convs[conv], y, fused)?,
                    }
                }
                Node::Relu { input, .. } => Step::single(relu::forward(ctx, self.plan.acts[input].len(), x, y)?),
                Node::MaxPool { input, .. } => {
                    let codes = self.codes[i].as_ref().expect("the plan gives every max-pool codes");
                    Step::single(pool::forward(ctx, self.plan.pool_shape(input), x, y, codes)?)
                }
                Node::AvgPool { input, .. } => Step::single(pool::avg_forward(ctx, self.plan.pool_shape(input), x, y)?),
            });
            // Packed right after the conv, before a later node may overwrite a transient output.
            if let (MaskWriting::SeparatePass, Some(mask), Node::Conv { input, output, .. }) = (masks, mask, *node) {
                let len = self.plan.conv_shape(input, output).output_len();
                node_step.push(relu::pack_mask(ctx, len, y, mask)?);
            }
            if padded.is_some() {
                node_step.push(self.crop_padded_output(ctx, node.output(), y)?);
            }
            step.extend(node_step);
        }
        Ok(step)
    }

    /// The padded image and padded output of `node` if it is the replicate-padded convolution.
    fn padded_buffers(&self, node: &Node) -> Option<(&wgpu::Buffer, &wgpu::Buffer)> {
        let replicates = matches!(*node, Node::Conv { input, .. } if self.plan.replicates(input));
        self.padded.as_ref().filter(|_| replicates).map(|(image, output)| (image, output))
    }

    /// Activation `output` = the interior of the padded convolution's output `padded`.
    fn crop_padded_output(
        &self,
        ctx: &Context,
        output: usize,
        padded: &wgpu::Buffer,
    ) -> Result<crate::gpu::Kernel, GpuError> {
        let dims = self.plan.acts[output];
        let b = REPLICATED_BORDER;
        let interior = Rect { y: b, x: b, height: dims.height, width: dims.width };
        region::copy_rect(ctx, padded, region::padded(dims, b), interior, &self.acts[output], dims, (0, 0))
    }

    /// The Gram matrix of activation `act` into `gram`, through the shared partial-sum buffer.
    fn gram_forward(&self, ctx: &Context, act: usize, gram: &wgpu::Buffer) -> Result<Step, NetError> {
        let shape = self.plan.gram_shape(act);
        let partials = self.gram_partials.as_ref().expect("allocated with the style terms");
        Ok(gram::forward_with_partials(ctx, shape, &self.acts[act], partials, gram)?)
    }

    /// Style term `index`'s Gram of the image being optimized into `gram`: the guided Gram for a
    /// masked term, the plain one otherwise.
    fn term_gram_forward(&self, ctx: &Context, index: usize, gram: &wgpu::Buffer) -> Result<Step, NetError> {
        let act = self.plan.style[index].act;
        let Some(weights) = &self.column_weights[index] else {
            return self.gram_forward(ctx, act, gram);
        };
        let shape = self.plan.gram_shape(act);
        let partials = self.gram_partials.as_ref().expect("allocated with the style terms");
        let octave = self.plan.style[index].mask.as_ref().map_or(0, |mask| mask.weight_exponent());
        Ok(gram::forward_masked_with_partials(ctx, shape, &self.acts[act], weights, octave, partials, gram)?)
    }

    /// grad (=, or += when `accumulate`) the backward of style term `index`'s Gram.
    fn term_gram_backward(
        &self,
        ctx: &Context,
        index: usize,
        grad_gram: &wgpu::Buffer,
        grad: &wgpu::Buffer,
        accumulate: bool,
    ) -> Result<Step, NetError> {
        let act = self.plan.style[index].act;
        let shape = self.plan.gram_shape(act);
        Ok(match &self.column_weights[index] {
            Some(weights) => gram::backward_masked(ctx, shape, &self.acts[act], weights, grad_gram, grad, accumulate)?,
            None => gram::backward(ctx, shape, &self.acts[act], grad_gram, grad, accumulate)?,
        })
    }

    /// The style image's plain Gram (and with W2 its plain row means) at each style term's layer:
    /// a masked term's target is its region's style image's plain moments, whatever its mask.
    fn record_style_capture(&self, ctx: &Context) -> Result<Step, NetError> {
        let mut step = Step::new();
        for (i, (term, style_gram)) in self.plan.style.iter().zip(&self.style_grams).enumerate() {
            step.extend(self.gram_forward(ctx, term.act, style_gram)?);
            if let Some((buffers, means)) = self.w2.get(i) {
                step.push(w2::row_means(ctx, buffers.shape(), &self.acts[term.act], means)?);
            }
        }
        Ok(step)
    }

    /// With `StyleLoss::W2`: each term's target from the captured style Gram G_s and row means
    /// mu_s (S_s = G_s / N), computed once on the host in f64 (`w2::Target`). A window of the
    /// tiled executor sets the whole image's (its style Grams and W2 terms are the whole image's).
    pub(super) fn set_w2_targets(&self, ctx: &Context) -> Result<(), NetError> {
        for ((buffers, means), style_gram) in self.w2.iter().zip(&self.style_grams) {
            let shape = buffers.shape();
            let c = shape.channels;
            let gram = ctx.read(style_gram, c * c)?;
            let mean: Vec<f64> = ctx.read(means, c)?.iter().map(|&v| v as f64).collect();
            let srm: Vec<f64> = gram.iter().map(|&v| v as f64 / shape.n as f64).collect();
            buffers.set_target(ctx, &w2::Target::from_moments(&mean, &srm));
        }
        ctx.wait()?;
        Ok(())
    }

    /// Forward (writing the masks as `masks` says), every loss value into its slot, then the
    /// backward pass to the image.
    fn record_training(&self, ctx: &Context, masks: MaskWriting) -> Result<Step, NetError> {
        let plan = &self.plan;
        debug_assert!(
            plan.content.iter().chain(&plan.style).all(|t| plan.storage[t.act] == Storage::Kept),
            "losses read kept features"
        );
        let mut step = self.record_forward(ctx, masks)?;
        self.record_losses(ctx, &mut step)?;
        self.record_backward(ctx, &mut step, GramGradients::Own)?;
        Ok(step)
    }

    /// The forward pass alone, no masks written: a tiled pass 1 over one window.
    pub(super) fn record_forward_pass(&self, ctx: &Context) -> Result<Step, NetError> {
        self.record_forward(ctx, MaskWriting::None)
    }

    /// A tiled pass 2 over one window: the forward (writing the masks) and the backward pass to
    /// the window's image, with the gradients of the loss injected at every loss layer: the
    /// content terms' from this window's features and content targets (which the tiled executor
    /// fills), the style terms' from the dL/dG already in `gram_gradient_buffer`. No loss value.
    pub(super) fn record_injected_training(&self, ctx: &Context) -> Result<Step, NetError> {
        let mut step = self.record_forward(ctx, MaskWriting::Epilogue)?;
        self.record_backward(ctx, &mut step, GramGradients::Given)?;
        Ok(step)
    }

    /// Every loss value into its slot: content terms, style terms (each first takes the Gram of
    /// the image being optimized), then the total variation.
    fn record_losses(&self, ctx: &Context, step: &mut Step) -> Result<(), NetError> {
        let plan = &self.plan;
        for (slot, (term, target)) in plan.content.iter().zip(&self.content_targets).enumerate() {
            let len = plan.acts[term.act].len();
            loss::sq_diff_forward(ctx, step, len, &self.acts[term.act], target, &self.losses, slot, term.scale)?;
        }
        let slots_before_style = plan.content.len();
        for (i, term) in plan.style.iter().enumerate() {
            if let Some((buffers, _)) = self.w2.get(i) {
                let slot = slots_before_style + i;
                w2::forward(ctx, step, buffers, &self.acts[term.act], &self.losses, slot, term.scale)?;
                continue;
            }
            let image_gram = &self.image_grams[i];
            step.extend(self.term_gram_forward(ctx, i, image_gram)?);
            let len = plan.gram_shape(term.act).gram_len();
            let slot = slots_before_style + i;
            loss::sq_diff_forward(ctx, step, len, image_gram, &self.style_grams[i], &self.losses, slot, term.scale)?;
        }
        if plan.has_tv() {
            let slot = slots_before_style + plan.style.len();
            let (shape, image, weight) = (plan.tv_shape(), &self.acts[0], plan.tv_weight);
            match plan.losses.tv_loss {
                super::TvLoss::Sum => tv::forward(ctx, step, shape, image, &self.losses, slot, weight)?,
                super::TvLoss::NinePoint => {
                    let factors = plan.tv_rgb_factors();
                    tv::nine_point::forward(ctx, step, shape, image, &self.losses, slot, weight, &factors)?
                }
            }
        }
        Ok(())
    }

    /// The backward pass to the image. Gradients ping-pong between the first two scratch buffers
    /// (the forward's transient activations are dead by then: losses read kept features, the
    /// backward masks and codes) and the last lands in the image gradient's own buffer; a loss's
    /// gradient is added where its features are read.
    fn record_backward(&self, ctx: &Context, step: &mut Step, gram_grads: GramGradients) -> Result<(), NetError> {
        let plan = &self.plan;
        let grads = [&self.scratch[0], &self.scratch[1]];
        // `current` holds dL/d(output of the node being walked); `valid` says whether anything
        // has been written to it yet (the deepest loss writes, the others add).
        let mut current = 0usize;
        let mut valid = false;
        for (i, node) in plan.nodes.iter().enumerate().rev() {
            valid = self.add_term_gradients_at(ctx, step, node.output(), grads[current], valid, gram_grads)?;
            if !valid {
                continue;
            }
            let other = 1 - current;
            // The gradient with respect to the image goes to its own buffer.
            let grad_input = if node.input() == 0 { &self.image_grad } else { grads[other] };
            self.record_node_backward(ctx, step, i, grads[current], grad_input)?;
            current = other;
        }
        // The total variation reads the image itself: its gradient joins after the backward pass.
        if plan.has_tv() {
            let (shape, image, weight) = (plan.tv_shape(), &self.acts[0], plan.tv_weight);
            step.push(match plan.losses.tv_loss {
                super::TvLoss::Sum => tv::backward(ctx, shape, image, &self.image_grad, weight, valid)?,
                super::TvLoss::NinePoint => {
                    let factors = plan.tv_rgb_factors();
                    tv::nine_point::backward(ctx, shape, image, &self.image_grad, weight, &factors, valid)?
                }
            });
        }
        Ok(())
    }

    /// Adds to `grad` the gradient of every loss term that reads activation `act` (content terms,
    /// then style terms); the first writes unless `written`. Returns whether `grad` holds anything.
    fn add_term_gradients_at(
        &self,
        ctx: &Context,
        step: &mut Step,
        act: usize,
        grad: &wgpu::Buffer,
        mut written: bool,
        gram_grads: GramGradients,
    ) -> Result<bool, NetError> {
        let plan = &self.plan;
        let content = (0..plan.content.len()).filter(|&i| plan.content[i].act == act).map(Term::Content);
        let style = (0..plan.style.len()).filter(|&i| plan.style[i].act == act).map(Term::Style);
        for term in content.chain(style) {
            self.add_term_gradient(ctx, step, term, grad, written, gram_grads)?;
            written = true;
        }
        Ok(written)
    }

    /// grad (=, or += when `accumulate`) the gradient of one weighted term with respect to its
    /// features. Under `--normalize-gradients` the term's own gradient goes to `term_grad` first
    /// and is divided by its L1 norm before the weights (alpha or beta times w_l) are applied.
    fn add_term_gradient(
        &self,
        ctx: &Context,
        step: &mut Step,
        term: Term,
        grad: &wgpu::Buffer,
        accumulate: bool,
        gram_grads: GramGradients,
    ) -> Result<(), NetError> {
        let plan = &self.plan;
        let (loss_term, loss_weight, norm) = match term {
            Term::Content(i) => (&plan.content[i], plan.content_weight, &self.content_norms[i]),
            Term::Style(i) => (&plan.style[i], plan.style_weight, &self.style_norms[i]),
        };
        if !plan.losses.normalize_gradients {
            return self.feature_gradient(ctx, step, term, grad, loss_term.scale * loss_weight, accumulate, gram_grads);
        }
        let term_grad = self.term_grad.as_ref().expect("allocated with normalize_gradients");
        let norm = norm.as_ref().expect("allocated with normalize_gradients");
        self.feature_gradient(ctx, step, term, term_grad, loss_term.scale, false, gram_grads)?;
        let len = plan.acts[loss_term.act].len();
        if gram_grads == GramGradients::Own {
            vector::abs_sum(ctx, step, len, term_grad, norm, 0)?;
            step.push(vector::scalar_reciprocal(ctx, norm, 1, 0, NORMALIZE_EPS)?);
        }
        // Given: the tiled executor has put the whole image's norm and its reciprocal there.
        add_normalized(ctx, step, len, term_grad, norm, loss_weight * loss_term.weight, grad, accumulate)
    }

    /// dst (=, or += when `accumulate`) the gradient of `scale` * sum((F - target)^2) with respect
    /// to the term's features F: directly for a content term, through its Gram for a style term
    /// (whose dL/dG is computed here, or given, as `gram_grads` says; a given one holds `scale`).
    #[allow(clippy::too_many_arguments)]
    fn feature_gradient(
        &self,
        ctx: &Context,
        step: &mut Step,
        term: Term,
        dst: &wgpu::Buffer,
        scale: f64,
        accumulate: bool,
        gram_grads: GramGradients,
    ) -> Result<(), NetError> {
        match term {
            Term::Content(i) => {
                let act = self.plan.content[i].act;
                let (len, target) = (self.plan.acts[act].len(), &self.content_targets[i]);
                step.push(loss::sq_diff_backward(ctx, len, &self.acts[act], target, dst, scale, accumulate)?);
            }
            Term::Style(i) if !self.w2.is_empty() => {
                let act = self.plan.style[i].act;
                let buffers = &self.w2[i].0;
                // Given: the tiled executor has put the whole image's moment gradients there.
                if gram_grads == GramGradients::Own {
                    w2::moment_grads(ctx, step, buffers, scale)?;
                }
                let positions = self.plan.gram_shape(act).n;
                let block =
                    w2::Block { features: &self.acts[act], positions, weights: self.column_weights[i].as_ref() };
                w2::feature_grad(ctx, step, buffers, block, dst, accumulate)?;
            }
            Term::Style(i) => {
                let len = self.plan.gram_shape(self.plan.style[i].act).gram_len();
                let (image_gram, grad_gram) = (&self.image_grams[i], &self.gram_grads[i]);
                if gram_grads == GramGradients::Own {
                    step.push(loss::sq_diff_backward(
                        ctx,
                        len,
                        image_gram,
                        &self.style_grams[i],
                        grad_gram,
                        scale,
                        false,
                    )?);
                }
                step.extend(self.term_gram_backward(ctx, i, grad_gram, dst, accumulate)?);
            }
        }
        Ok(())
    }

    /// grad_input = the backward of node `index` applied to `grad_output`.
    fn record_node_backward(
        &self,
        ctx: &Context,
        step: &mut Step,
        index: usize,
        grad_output: &wgpu::Buffer,
        grad_input: &wgpu::Buffer,
    ) -> Result<(), NetError> {
        let plan = &self.plan;
        match plan.nodes[index] {
            Node::Conv { conv, input, output, relu: fused } => {
                let shape = plan.conv_shape(input, output);
                // A fused ReLU's backward (mask by its output > 0) happens inside the conv's
                // loads, from the mask bits the forward packed.
                let mask = if fused { self.masks[index].as_ref() } else { None };
                debug_assert_eq!(fused, mask.is_some(), "the plan gives every fused ReLU a mask");
                let weights = &self.convs[conv];
                match self.padded_buffers(&plan.nodes[index]) {
                    // Over the padded image: the gradient embedded in the padded output (zeros
                    // on the border, which the forward cropped away), the convolution's
                    // backward to the padded image, and its border folded onto the edges.
                    Some((padded_image, padded_output)) => {
                        let b = REPLICATED_BORDER;
                        step.push(region::pad(ctx, plan.acts[output], b, Border::Zeros, grad_output, padded_output)?);
                        step.extend(conv::backward_input(
                            ctx,
                            shape,
                            padded_output,
                            weights,
                            padded_image,
                            false,
                            mask,
                        )?);
                        step.push(region::fold_replicate(ctx, plan.acts[input], b, padded_image, grad_input)?);
                    }
                    None => {
                        step.extend(conv::backward_input(ctx, shape, grad_output, weights, grad_input, false, mask)?)
                    }
                }
            }
            Node::Relu { input, .. } => {
                // The input is kept (`Plan::storage`); it is positive exactly where the output is.
                debug_assert_eq!(plan.storage[input], Storage::Kept);
                let len = plan.acts[input].len();
                step.push(relu::backward(ctx, len, &self.acts[input], grad_output, grad_input)?);
            }
            Node::MaxPool { input, .. } => {
                let codes = self.codes[index].as_ref().expect("the plan gives every max-pool codes");
                step.push(pool::backward(ctx, plan.pool_shape(input), codes, grad_output, grad_input)?);
            }
            Node::AvgPool { input, .. } => {
                step.push(pool::avg_backward(ctx, plan.pool_shape(input), grad_output, grad_input)?);
            }
        }
        Ok(())
    }

    fn check_image_len(&self, len: usize) -> Result<(), NetError> {
        self.plan.check_image_len(len)
    }

    /// The buffer of activation `act` (for a transient one, the scratch buffer it shares).
    pub(super) fn act_buffer(&self, act: usize) -> &wgpu::Buffer {
        &self.acts[act]
    }

    /// Content term `index`'s target features.
    pub(super) fn content_target_buffer(&self, index: usize) -> &wgpu::Buffer {
        &self.content_targets[index]
    }

    /// Style term `index`'s target Gram.
    pub(super) fn style_gram_buffer(&self, index: usize) -> &wgpu::Buffer {
        &self.style_grams[index]
    }

    /// Style term `index`'s Gram of the image being optimized.
    pub(super) fn image_gram_buffer(&self, index: usize) -> &wgpu::Buffer {
        &self.image_grams[index]
    }

    /// A masked style term's column weights (`gram::mask_column_weights` of its mask); None for a plain term.
    pub(super) fn column_weights_buffer(&self, index: usize) -> Option<&wgpu::Buffer> {
        self.column_weights[index].as_ref()
    }

    /// The `--normalize-gradients` scalars (the L1 norm and its reciprocal) of a content term, or
    /// of a style term; None without normalized gradients.
    pub(super) fn norm_buffer(&self, style: bool, index: usize) -> Option<&wgpu::Buffer> {
        if style { self.style_norms[index].as_ref() } else { self.content_norms[index].as_ref() }
    }

    /// Style term `index`'s dL/dG (weights and scale included).
    pub(super) fn gram_gradient_buffer(&self, index: usize) -> &wgpu::Buffer {
        &self.gram_grads[index]
    }

    /// The normalized image being optimized.
    pub fn image_buffer(&self) -> &wgpu::Buffer {
        &self.acts[0]
    }

    /// dL/d(image) after a training step (a buffer of its own: the next step's forward pass leaves it be).
    pub fn image_grad_buffer(&self) -> &wgpu::Buffer {
        &self.image_grad
    }
}

impl Execute for Executor {
    fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Uploads an RGB image in [0, 1] (CHW) and normalizes it into activation 0.
    fn set_image(&self, ctx: &Context, rgb: &[f32]) -> Result<(), NetError> {
        self.check_image_len(rgb.len())?;
        ctx.write(&self.rgb, rgb);
        self.rgb_to_image.run(ctx)?;
        Ok(())
    }

    /// Writes an already normalized image into activation 0 (tests and resumed runs).
    fn set_normalized_image(&self, ctx: &Context, image: &[f32]) -> Result<(), NetError> {
        self.check_image_len(image.len())?;
        ctx.write(&self.acts[0], image);
        Ok(())
    }

    /// Runs the forward pass on `rgb` and keeps its features at the content layers as targets.
    fn set_content(&self, ctx: &Context, rgb: &[f32]) -> Result<(), NetError> {
        self.set_image(ctx, rgb)?;
        self.forward.submit(ctx);
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        for (term, target) in self.plan.content.iter().zip(&self.content_targets) {
            encoder.copy_buffer_to_buffer(
                &self.acts[term.act],
                0,
                target,
                0,
                (self.plan.acts[term.act].len() * 4) as u64,
            );
        }
        ctx.queue.submit([encoder.finish()]);
        ctx.wait()?;
        Ok(())
    }

    /// Runs the forward pass on `rgb` and keeps the Gram matrices at the style layers as targets.
    fn set_style(&self, ctx: &Context, rgb: &[f32]) -> Result<(), NetError> {
        self.set_image(ctx, rgb)?;
        self.forward.submit(ctx);
        self.capture_style.run(ctx)?;
        if !self.w2.is_empty() {
            self.set_w2_targets(ctx)?;
        }
        Ok(())
    }

    /// The Gram matrices of `rgb` at the style layers (row-major C x C, unnormalized), in the order
    /// of `plan.style`. Replaces this executor's own style targets with them.
    fn style_grams(&self, ctx: &Context, rgb: &[f32]) -> Result<Vec<Vec<f32>>, NetError> {
        self.set_style(ctx, rgb)?;
        self.read_style_grams(ctx)
    }

    /// The current style targets, in the order of `plan.style`.
    fn read_style_grams(&self, ctx: &Context) -> Result<Vec<Vec<f32>>, NetError> {
        self.plan
            .style
            .iter()
            .zip(&self.style_grams)
            .map(|(term, buffer)| {
                let c = self.plan.acts[term.act].channels;
                Ok(ctx.read(buffer, c * c)?)
            })
            .collect()
    }

    /// Sets the style targets directly (e.g. a blend of several style images' Grams), one C x C
    /// matrix per style term in the order of `plan.style`.
    fn set_style_grams(&self, ctx: &Context, grams: &[Vec<f32>]) -> Result<(), NetError> {
        if !self.w2.is_empty() {
            return Err(NetError::Unsupported(
                "the w2 style loss takes its targets as moments (set_style_moments), not Grams alone".into(),
            ));
        }
        if grams.len() != self.plan.style.len() {
            return Err(NetError::BadSize(format!(
                "{} style Grams for {} style layers",
                grams.len(),
                self.plan.style.len()
            )));
        }
        for ((term, buffer), gram) in self.plan.style.iter().zip(&self.style_grams).zip(grams) {
            let c = self.plan.acts[term.act].channels;
            if gram.len() != c * c {
                return Err(NetError::BadSize(format!(
                    "the style Gram of {} has {} values, not {c} x {c}",
                    term.layer,
                    gram.len()
                )));
            }
            ctx.write(buffer, gram);
        }
        ctx.wait()?;
        Ok(())
    }

    /// The W2 terms' style row means (empty without W2).
    fn read_style_means(&self, ctx: &Context) -> Result<Vec<Vec<f32>>, NetError> {
        self.w2.iter().map(|(buffers, means)| Ok(ctx.read(means, buffers.shape().channels)?)).collect()
    }

    /// The W2 targets from given Grams and row means (`set_w2_targets` computes them as it does
    /// for a captured style).
    fn set_style_moments(&self, ctx: &Context, grams: &[Vec<f32>], means: &[Vec<f32>]) -> Result<(), NetError> {
        if self.w2.is_empty() || grams.len() != self.w2.len() || means.len() != self.w2.len() {
            return Err(NetError::BadSize(format!(
                "{} Grams and {} means for {} w2 style terms",
                grams.len(),
                means.len(),
                self.w2.len()
            )));
        }
        for (((buffers, means_buffer), gram_buffer), (gram, mean)) in
            self.w2.iter().zip(&self.style_grams).zip(grams.iter().zip(means))
        {
            let c = buffers.shape().channels;
            if gram.len() != c * c || mean.len() != c {
                return Err(NetError::BadSize(format!(
                    "style moments of {} and {} values for {c} channels",
                    gram.len(),
                    mean.len()
                )));
            }
            ctx.write(gram_buffer, gram);
            ctx.write(means_buffer, mean);
        }
        self.set_w2_targets(ctx)
    }

    /// The recorded training step: forward, losses, backward to the image. Callers append their
    /// optimizer's kernels so that one submit does everything.
    fn training_step(&mut self) -> &mut Step {
        &mut self.train
    }

    /// The image being optimized, as one band (for what works on banded arrays: optimizers).
    fn image_bands(&self) -> Bands {
        Bands::single(self.plan.acts[0], self.acts[0].clone())
    }

    /// dL/d(image), as one band.
    fn image_grad_bands(&self) -> Bands {
        Bands::single(self.plan.acts[0], self.image_grad.clone())
    }

    /// Number of values in the image (3 H W).
    fn image_len(&self) -> usize {
        self.plan.acts[0].len()
    }

    /// Reads the loss values of the last training step.
    fn read_losses(&self, ctx: &Context) -> Result<Losses, NetError> {
        let slots = ctx.read(&self.losses, self.plan.loss_slots())?;
        let slots: Vec<f64> = slots.iter().map(|&v| v as f64).collect();
        Ok(Losses::from_slots(&self.plan, &slots))
    }

    /// Reads dL/d(image) of the last training step.
    #[cfg(feature = "testing")]
    fn read_image_grad(&self, ctx: &Context) -> Result<Vec<f32>, NetError> {
        Ok(ctx.read(self.image_grad_buffer(), self.image_len())?)
    }

    /// Reads the normalized image.
    fn read_normalized_image(&self, ctx: &Context) -> Result<Vec<f32>, NetError> {
        Ok(ctx.read(&self.acts[0], self.image_len())?)
    }

    /// Reads the image as RGB in [0, 1] (denormalized and clamped on the GPU).
    fn read_rgb(&self, ctx: &Context) -> Result<Vec<f32>, NetError> {
        self.image_to_rgb.submit(ctx);
        Ok(ctx.read(&self.rgb, self.image_len())?)
    }

    /// Bytes of every buffer this executor allocated (weights, activations, scratch, gradients,
    /// masks, codes, targets, and its steps' own buffers), each counted once.
    fn allocated_bytes(&self) -> u64 {
        let size = |b: &wgpu::Buffer| b.size();
        let weights: u64 = self.convs.iter().map(|c| c.weight.size() + c.bias.size()).sum();
        let kept: u64 =
            self.acts.iter().zip(&self.plan.storage).filter(|(_, s)| **s == Storage::Kept).map(|(b, _)| b.size()).sum();
        let steps = self.forward.scratch_bytes() + self.capture_style.scratch_bytes() + self.train.scratch_bytes();
        let own: u64 = [&self.rgb, &self.image_grad, &self.losses]
            .into_iter()
            .chain(&self.scratch)
            .chain(self.masks.iter().chain(&self.codes).flatten())
            .chain(&self.gram_partials)
            .chain(&self.term_grad)
            .chain(self.content_targets.iter().chain(&self.style_grams))
            .chain(self.column_weights.iter().flatten())
            .chain(self.image_grams.iter().chain(&self.gram_grads))
            .chain(self.content_norms.iter().chain(&self.style_norms).flatten())
            .chain(self.w2.iter().map(|(_, means)| means))
            .chain(self.padded.iter().flat_map(|(image, output)| [image, output]))
            .map(size)
            .sum();
        let w2: u64 = self.w2.iter().map(|(buffers, _)| buffers.bytes()).sum();
        weights + kept + own + steps + w2
    }
}

/// Each style term's `ops::w2` buffers and style-means buffer with `StyleLoss::W2` (targets set by
/// `set_style` or `set_style_moments`), none with Gram losses. A masked term's buffers weight its
/// positions by its `column_weights` (the guided Gram's, `upload_column_weights`).
fn w2_buffers(ctx: &Context, plan: &Plan, column_weights: &[Option<wgpu::Buffer>]) -> Result<W2Terms, GpuError> {
    let whole: Vec<usize> = plan.style.iter().map(|term| plan.gram_shape(term.act).n).collect();
    let terms = w2_terms(ctx, plan, &whole)?;
    Ok(terms
        .into_iter()
        .zip(column_weights)
        .map(|((buffers, means), columns)| match columns {
            Some(columns) => (buffers.masked(columns.clone()), means),
            None => (buffers, means),
        })
        .collect())
}

/// Each style term's unmasked W2 buffers (its layer's N positions, moments summed over blocks of
/// at most `blocks[i]` of them) and style-means buffer with `StyleLoss::W2`, none with Gram
/// losses. The tiled executor's are the whole image's, summed over each tile's owned positions
/// (their column weights given with each block) and shared by every window.
pub(super) fn w2_terms(ctx: &Context, plan: &Plan, blocks: &[usize]) -> Result<W2Terms, GpuError> {
    if plan.losses.style_loss != super::StyleLoss::W2 {
        return Ok(Vec::new());
    }
    plan.style
        .iter()
        .zip(blocks)
        .map(|(term, &block)| {
            let s = plan.acts[term.act];
            let shape = w2::W2Shape { channels: s.channels, n: s.height * s.width };
            let buffers = w2::W2Buffers::with_blocks(ctx, shape, block, &w2::Target::empty(s.channels))?;
            Ok((buffers, ctx.buffer("w2 style means", s.channels)?))
        })
        .collect()
}

/// Uploads each convolution of the plan (`Buffers::convs`) after checking its widths.
fn upload_convs(
    ctx: &Context,
    plan: &Plan,
    specs: &[[BufferSpec; 2]],
    weights: &[ConvLayerWeights],
) -> Result<Vec<conv::GpuConvWeights>, NetError> {
    plan.conv_widths
        .iter()
        .zip(specs)
        .enumerate()
        .map(|(i, (&(cin, cout), [weight, bias]))| {
            let w = weights.get(i).filter(|w| (w.in_channels, w.out_channels) == (cin, cout));
            let Some(w) = w.filter(|w| (w.weight.len(), w.bias.len()) == (weight.len, bias.len)) else {
                return Err(NetError::WeightsMismatch(format!("convolution {i} widths differ from the plan")));
            };
            Ok(conv::GpuConvWeights::upload(ctx, &format!("conv{i}"), &w.weight, &w.bias, cout, cin)?)
        })
        .collect()
}

/// Uploads each masked style term's column weights T^2 / a (`Buffers::column_weights`).
fn upload_column_weights(
    ctx: &Context,
    plan: &Plan,
    specs: &[Option<BufferSpec>],
) -> Result<Vec<Option<wgpu::Buffer>>, NetError> {
    plan.style
        .iter()
        .zip(specs)
        .map(|(term, spec)| {
            let (Some(mask), Some(spec)) = (&term.mask, spec) else { return Ok(None) };
            let weights = mask.column_weights();
            debug_assert_eq!(weights.len(), spec.len);
            Ok(Some(ctx.upload(&spec.label, &weights)?))
        })
        .collect()
}

/// grad (=, or += when `accumulate`) strength * term_grad / (|term_grad|_1 + 1e-8), with the norm
/// and its reciprocal already on the GPU in `scalars` (two values): neural-style's `-normalize_gradients`.
#[allow(clippy::too_many_arguments)]
fn add_normalized(
    ctx: &Context,
    step: &mut Step,
    len: usize,
    term_grad: &wgpu::Buffer,
    scalars: &wgpu::Buffer,
    strength: f64,
    grad: &wgpu::Buffer,
    accumulate: bool,
) -> Result<(), NetError> {
    let strength = strength as f32;
    step.push(if accumulate {
        vector::axpy_scalar(ctx, len, strength, scalars, 1, term_grad, grad)?
    } else {
        vector::copy_scaled_scalar(ctx, len, strength, scalars, 1, term_grad, grad)?
    });
    Ok(())
}

/// neural-style's guard against a zero norm.
pub const NORMALIZE_EPS: f32 = 1e-8;
