//! The network on the GPU: activations and gradients allocated once, the forward pass, the losses
//! and the backward pass to the image recorded once into a `Step`. Where each activation lives
//! (a buffer of its own or a shared scratch buffer) is the plan's decision (`Plan::storage`).

use super::{ConvLayerWeights, Losses, NetError, Node, Plan, Storage};
use crate::gpu::{Context, Step};
use crate::ops::{conv, gram, loss, normalize, pool, relu, tv, vector};

/// Buffers and recorded steps of one network at one image size.
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
    losses: wgpu::Buffer,
    rgb_to_image: Step,
    image_to_rgb: Step,
    forward: Step,
    capture_style: Step,
    train: Step,
}

impl Executor {
    /// Uploads the weights and records every step for `plan`.
    pub fn new(ctx: &Context, plan: Plan, weights: &[ConvLayerWeights]) -> Result<Self, NetError> {
        plan.check_fits(ctx.limits.max_storage_buffer_binding_size.min(ctx.limits.max_buffer_size))?;
        let convs = plan
            .conv_widths
            .iter()
            .enumerate()
            .map(|(i, &(cin, cout))| {
                let w = &weights[i];
                if (w.in_channels, w.out_channels) != (cin, cout) {
                    return Err(NetError::WeightsMismatch(format!("convolution {i} widths differ from the plan")));
                }
                Ok(conv::GpuConvWeights::upload(ctx, &format!("conv{i}"), &w.weight, &w.bias, cout, cin)?)
            })
            .collect::<Result<Vec<_>, NetError>>()?;
        let image_len = plan.acts[0].len();
        let plane = image_len / 3;
        let rgb = ctx.buffer("rgb image", image_len)?;
        let scratch = plan
            .scratch
            .iter()
            .enumerate()
            .map(|(i, &len)| ctx.buffer(&format!("scratch {i} (activations, then gradients)"), len))
            .collect::<Result<Vec<_>, _>>()?;
        let acts = plan
            .acts
            .iter()
            .zip(&plan.storage)
            .enumerate()
            .map(|(i, (s, storage))| match *storage {
                Storage::Kept => ctx.buffer(&format!("activation {i}"), s.len()),
                Storage::Scratch(slot) => Ok(scratch[slot].clone()),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let image_grad = ctx.buffer("image gradient", image_len)?;
        let words = |what: &str, words: Option<usize>, i: usize| {
            words.map(|len| ctx.buffer(&format!("{what} of node {i}"), len)).transpose()
        };
        let masks = plan
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| words("ReLU mask", plan.mask_words(n), i))
            .collect::<Result<Vec<_>, _>>()?;
        let codes = plan
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| words("max-pool codes", plan.codes_words(n), i))
            .collect::<Result<Vec<_>, _>>()?;
        let gram_partials =
            (!plan.style.is_empty()).then(|| ctx.buffer("gram partials", plan.gram_partials_len())).transpose()?;
        let term_grad = plan
            .losses
            .normalize_gradients
            .then(|| ctx.buffer("term gradient", plan.term_gradient_len()))
            .transpose()?;
        let gram_buffer = |t: &super::LossTerm, what: &str| {
            let c = plan.acts[t.act].channels;
            ctx.buffer(&format!("{what} {}", t.layer), c * c)
        };
        let content_targets = plan
            .content
            .iter()
            .map(|t| ctx.buffer(&format!("content target {}", t.layer), plan.acts[t.act].len()))
            .collect::<Result<Vec<_>, _>>()?;
        let style_grams = plan.style.iter().map(|t| gram_buffer(t, "style gram")).collect::<Result<Vec<_>, _>>()?;
        let losses = ctx.buffer("losses", plan.loss_slots())?;
        let column_weights = plan
            .style
            .iter()
            .map(|t| {
                t.mask
                    .as_ref()
                    .map(|m| {
                        let weights: Vec<f32> =
                            gram::mask_column_weights(&m.values).1.into_iter().map(|w| w as f32).collect();
                        ctx.upload(&format!("mask weights {} region {}", t.layer, m.region), &weights)
                    })
                    .transpose()
            })
            .collect::<Result<Vec<_>, _>>()?;

        let mut rgb_to_image = Step::new();
        rgb_to_image.push(normalize::normalize(ctx, plane, &rgb, &acts[0])?);
        let mut image_to_rgb = Step::new();
        image_to_rgb.push(normalize::denormalize_clamp(ctx, plane, &acts[0], &rgb)?);

        let mut executor = Self {
            forward: Step::new(),
            capture_style: Step::new(),
            train: Step::new(),
            plan,
            convs,
            rgb,
            acts,
            scratch,
            image_grad,
            masks,
            codes,
            content_targets,
            style_grams,
            gram_partials,
            term_grad,
            column_weights,
            losses,
            rgb_to_image,
            image_to_rgb,
        };
        // One shared scratch, sized for the largest split-K convolution, serves every layer.
        let split_scratch = executor
            .plan
            .nodes
            .iter()
            .filter_map(|node| match *node {
                Node::Conv { input, output, .. } => {
                    Some(conv::scratch_floats(ctx, executor.plan.conv_shape(input, output)))
                }
                _ => None,
            })
            .max()
            .unwrap_or(0);
        if split_scratch > 0 {
            ctx.shared_scratch(split_scratch)?;
        }
        executor.forward = executor.record_forward(ctx, false)?;
        executor.capture_style = executor.record_style_capture(ctx)?;
        executor.train = executor.record_training(ctx)?;
        Ok(executor)
    }

    /// The forward pass; for `training`, also the fused ReLUs' masks the backward reads (the
    /// max-pools write their arg-max codes either way).
    fn record_forward(&self, ctx: &Context, training: bool) -> Result<Step, NetError> {
        let mut step = Step::new();
        for (i, node) in self.plan.nodes.iter().enumerate() {
            let (x, y) = (&self.acts[node.input()], &self.acts[node.output()]);
            let node_step = match *node {
                Node::Conv { conv, input, output, relu: fused } => {
                    conv::forward(ctx, self.plan.conv_shape(input, output), x, &self.convs[conv], y, fused)?
                }
                Node::Relu { input, .. } => Step::single(relu::forward(ctx, self.plan.acts[input].len(), x, y)?),
                Node::MaxPool { input, .. } => {
                    let codes = self.codes[i].as_ref().expect("the plan gives every max-pool codes");
                    Step::single(pool::forward(ctx, self.plan.pool_shape(input), x, y, codes)?)
                }
                Node::AvgPool { input, .. } => Step::single(pool::avg_forward(ctx, self.plan.pool_shape(input), x, y)?),
            };
            step.extend(node_step);
            // Packed right after the conv, before a later node may overwrite a transient output.
            if let (true, Some(mask)) = (training, &self.masks[i]) {
                step.push(relu::pack_mask(ctx, self.plan.acts[node.output()].len(), y, mask)?);
            }
        }
        Ok(step)
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
        Ok(gram::forward_masked_with_partials(ctx, shape, &self.acts[act], weights, partials, gram)?)
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
            Some(weights) => {
                Step::single(gram::backward_masked(ctx, shape, &self.acts[act], weights, grad_gram, grad, accumulate)?)
            }
            None => gram::backward(ctx, shape, &self.acts[act], grad_gram, grad, accumulate)?,
        })
    }

    fn record_style_capture(&self, ctx: &Context) -> Result<Step, NetError> {
        let mut step = Step::new();
        for (term, style_gram) in self.plan.style.iter().zip(&self.style_grams) {
            step.extend(self.gram_forward(ctx, term.act, style_gram)?);
        }
        Ok(step)
    }

    /// Forward, every loss value into its slot, then the backward pass to the image. Gradients
    /// ping-pong between the first two scratch buffers (the forward's transient activations are
    /// dead by then: losses read kept features, the backward masks and codes) and the last lands
    /// in the image gradient's own buffer; a loss's gradient is added where its features are read.
    fn record_training(&self, ctx: &Context) -> Result<Step, NetError> {
        let plan = &self.plan;
        debug_assert!(
            plan.content.iter().chain(&plan.style).all(|t| plan.storage[t.act] == Storage::Kept),
            "losses read kept features"
        );
        let grads = [&self.scratch[0], &self.scratch[1]];
        let mut step = self.record_forward(ctx, true)?;
        let mut target_grams = Vec::new();
        let slots_before_style = plan.content.len();
        for (slot, (term, target)) in plan.content.iter().zip(&self.content_targets).enumerate() {
            let len = plan.acts[term.act].len();
            loss::sq_diff_forward(ctx, &mut step, len, &self.acts[term.act], target, &self.losses, slot, term.scale)?;
        }
        for (i, (term, style_gram)) in plan.style.iter().zip(&self.style_grams).enumerate() {
            let shape = self.plan.gram_shape(term.act);
            let target_gram = ctx.buffer(&format!("target gram {}", term.layer), shape.gram_len())?;
            step.extend(self.term_gram_forward(ctx, i, &target_gram)?);
            let slot = slots_before_style + i;
            loss::sq_diff_forward(
                ctx,
                &mut step,
                shape.gram_len(),
                &target_gram,
                style_gram,
                &self.losses,
                slot,
                term.scale,
            )?;
            target_grams.push(target_gram);
        }
        if plan.has_tv() {
            let slot = slots_before_style + plan.style.len();
            tv::forward(ctx, &mut step, plan.tv_shape(), &self.acts[0], &self.losses, slot, plan.tv_weight)?;
        }

        // `current` holds dL/d(output of the node being walked); `valid` says whether anything
        // has been written to it yet (the deepest loss writes, the others add).
        let mut current = 0usize;
        let mut valid = false;
        let normalize = plan.losses.normalize_gradients;
        for (i, node) in plan.nodes.iter().enumerate().rev() {
            let out = node.output();
            for (term, target) in plan.content.iter().zip(&self.content_targets).filter(|(t, _)| t.act == out) {
                let len = plan.acts[out].len();
                if normalize {
                    let term_grad = self.term_grad.as_ref().expect("allocated with normalize_gradients");
                    step.push(loss::sq_diff_backward(ctx, len, &self.acts[out], target, term_grad, term.scale, false)?);
                    add_normalized(ctx, &mut step, len, term_grad, plan.content_weight, grads[current], valid)?;
                } else {
                    let scale = term.scale * plan.content_weight;
                    step.push(loss::sq_diff_backward(ctx, len, &self.acts[out], target, grads[current], scale, valid)?);
                }
                valid = true;
            }
            for (index, ((term, style_gram), target_gram)) in plan
                .style
                .iter()
                .zip(&self.style_grams)
                .zip(&target_grams)
                .enumerate()
                .filter(|(_, ((t, _), _))| t.act == out)
            {
                let shape = self.plan.gram_shape(out);
                let grad_gram = ctx.buffer(&format!("gram gradient {}", term.layer), shape.gram_len())?;
                // Normalized terms take their weights after the division by the L1 norm.
                let scale = if normalize { term.scale } else { term.scale * plan.style_weight };
                step.push(loss::sq_diff_backward(
                    ctx,
                    shape.gram_len(),
                    target_gram,
                    style_gram,
                    &grad_gram,
                    scale,
                    false,
                )?);
                if normalize {
                    let len = plan.acts[out].len();
                    let term_grad = self.term_grad.as_ref().expect("allocated with normalize_gradients");
                    step.extend(self.term_gram_backward(ctx, index, &grad_gram, term_grad, false)?);
                    let strength = plan.style_weight * term.weight;
                    add_normalized(ctx, &mut step, len, term_grad, strength, grads[current], valid)?;
                } else {
                    step.extend(self.term_gram_backward(ctx, index, &grad_gram, grads[current], valid)?);
                }
                step.keep(grad_gram);
                valid = true;
            }
            if !valid {
                continue;
            }
            let other = 1 - current;
            // The gradient with respect to the image goes to its own buffer.
            let grad_input = if node.input() == 0 { &self.image_grad } else { grads[other] };
            match *node {
                Node::Conv { conv, input, output, relu: fused } => {
                    let shape = plan.conv_shape(input, output);
                    // A fused ReLU's backward (mask by its output > 0) happens inside the conv's
                    // loads, from the mask bits the forward packed.
                    let mask = if fused { self.masks[i].as_ref() } else { None };
                    debug_assert_eq!(fused, mask.is_some(), "the plan gives every fused ReLU a mask");
                    step.extend(conv::backward_input(
                        ctx,
                        shape,
                        grads[current],
                        &self.convs[conv],
                        grad_input,
                        false,
                        mask,
                    )?);
                }
                Node::Relu { input, .. } => {
                    // The input is kept (`Plan::storage`); it is positive exactly where the output is.
                    debug_assert_eq!(plan.storage[input], Storage::Kept);
                    let len = plan.acts[input].len();
                    step.push(relu::backward(ctx, len, &self.acts[input], grads[current], grad_input)?);
                }
                Node::MaxPool { input, .. } => {
                    let codes = self.codes[i].as_ref().expect("the plan gives every max-pool codes");
                    step.push(pool::backward(ctx, plan.pool_shape(input), codes, grads[current], grad_input)?);
                }
                Node::AvgPool { input, .. } => {
                    step.push(pool::avg_backward(ctx, plan.pool_shape(input), grads[current], grad_input)?);
                }
            }
            current = other;
        }
        // The total variation reads the image itself: its gradient joins after the backward pass.
        if plan.has_tv() {
            step.push(tv::backward(ctx, plan.tv_shape(), &self.acts[0], &self.image_grad, plan.tv_weight, valid)?);
        }
        for target_gram in target_grams {
            step.keep(target_gram);
        }
        Ok(step)
    }

    /// Uploads an RGB image in [0, 1] (CHW) and normalizes it into activation 0.
    pub fn set_image(&self, ctx: &Context, rgb: &[f32]) -> Result<(), NetError> {
        self.check_image_len(rgb.len())?;
        ctx.write(&self.rgb, rgb);
        self.rgb_to_image.run(ctx)?;
        Ok(())
    }

    /// Writes an already normalized image into activation 0 (tests and resumed runs).
    pub fn set_normalized_image(&self, ctx: &Context, image: &[f32]) -> Result<(), NetError> {
        self.check_image_len(image.len())?;
        ctx.write(&self.acts[0], image);
        Ok(())
    }

    fn check_image_len(&self, len: usize) -> Result<(), NetError> {
        let expected = self.plan.acts[0].len();
        if len != expected {
            let s = self.plan.acts[0];
            return Err(NetError::BadSize(format!(
                "image has {len} values, the network was built for 3x{}x{} = {expected}",
                s.height, s.width
            )));
        }
        Ok(())
    }

    /// Runs the forward pass on `rgb` and keeps its features at the content layers as targets.
    pub fn set_content(&self, ctx: &Context, rgb: &[f32]) -> Result<(), NetError> {
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
    pub fn set_style(&self, ctx: &Context, rgb: &[f32]) -> Result<(), NetError> {
        self.set_image(ctx, rgb)?;
        self.forward.submit(ctx);
        self.capture_style.run(ctx)?;
        Ok(())
    }

    /// The Gram matrices of `rgb` at the style layers (row-major C x C, unnormalized), in the order
    /// of `plan.style`. Replaces this executor's own style targets with them.
    pub fn style_grams(&self, ctx: &Context, rgb: &[f32]) -> Result<Vec<Vec<f32>>, NetError> {
        self.set_style(ctx, rgb)?;
        self.read_style_grams(ctx)
    }

    /// The current style targets, in the order of `plan.style`.
    pub fn read_style_grams(&self, ctx: &Context) -> Result<Vec<Vec<f32>>, NetError> {
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
    pub fn set_style_grams(&self, ctx: &Context, grams: &[Vec<f32>]) -> Result<(), NetError> {
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

    /// The recorded training step: forward, losses, backward to the image. Callers append their
    /// optimizer's kernels so that one submit does everything.
    pub fn training_step(&mut self) -> &mut Step {
        &mut self.train
    }

    /// The normalized image being optimized.
    pub fn image_buffer(&self) -> &wgpu::Buffer {
        &self.acts[0]
    }

    /// dL/d(image) after a training step (a buffer of its own: the next step's forward pass leaves it be).
    pub fn image_grad_buffer(&self) -> &wgpu::Buffer {
        &self.image_grad
    }

    /// Number of values in the image (3 H W).
    pub fn image_len(&self) -> usize {
        self.plan.acts[0].len()
    }

    /// Reads the loss values of the last training step.
    pub fn read_losses(&self, ctx: &Context) -> Result<Losses, NetError> {
        let slots = ctx.read(&self.losses, self.plan.loss_slots())?;
        let slots: Vec<f64> = slots.iter().map(|&v| v as f64).collect();
        Ok(Losses::from_slots(&self.plan, &slots))
    }

    /// Reads dL/d(image) of the last training step.
    pub fn read_image_grad(&self, ctx: &Context) -> Result<Vec<f32>, NetError> {
        Ok(ctx.read(self.image_grad_buffer(), self.image_len())?)
    }

    /// Reads the normalized image.
    pub fn read_normalized_image(&self, ctx: &Context) -> Result<Vec<f32>, NetError> {
        Ok(ctx.read(&self.acts[0], self.image_len())?)
    }

    /// Reads the image as RGB in [0, 1] (denormalized and clamped on the GPU).
    pub fn read_rgb(&self, ctx: &Context) -> Result<Vec<f32>, NetError> {
        self.image_to_rgb.submit(ctx);
        Ok(ctx.read(&self.rgb, self.image_len())?)
    }

    /// Bytes of every buffer this executor allocated (weights, activations, scratch, gradients,
    /// masks, codes, targets, and its steps' own buffers), each counted once.
    pub fn allocated_bytes(&self) -> u64 {
        let size = |b: &wgpu::Buffer| b.size();
        let weights: u64 = self.convs.iter().map(|c| c.weight.size() + c.bias.size()).sum();
        let kept: u64 =
            self.acts.iter().zip(&self.plan.storage).filter(|(_, s)| **s == Storage::Kept).map(|(b, _)| b.size()).sum();
        let scratch: u64 = self.scratch.iter().map(size).sum();
        let masks: u64 = self.masks.iter().chain(&self.codes).flatten().map(size).sum();
        let targets: u64 = self.content_targets.iter().chain(&self.style_grams).map(size).sum();
        let steps = self.forward.scratch_bytes() + self.capture_style.scratch_bytes() + self.train.scratch_bytes();
        let own: u64 = [&self.rgb, &self.image_grad, &self.losses]
            .into_iter()
            .chain(&self.gram_partials)
            .chain(&self.term_grad)
            .chain(self.column_weights.iter().flatten())
            .map(size)
            .sum();
        weights + kept + scratch + masks + targets + steps + own
    }
}

/// grad (=, or += when `accumulate`) strength * term_grad / (|term_grad|_1 + 1e-8), with the norm
/// and its reciprocal kept on the GPU: neural-style's `-normalize_gradients`.
fn add_normalized(
    ctx: &Context,
    step: &mut Step,
    len: usize,
    term_grad: &wgpu::Buffer,
    strength: f64,
    grad: &wgpu::Buffer,
    accumulate: bool,
) -> Result<(), NetError> {
    let scalars = step.keep(ctx.buffer("gradient L1 norm", 2)?).clone();
    vector::abs_sum(ctx, step, len, term_grad, &scalars, 0)?;
    step.push(vector::scalar_reciprocal(ctx, &scalars, 1, 0, NORMALIZE_EPS)?);
    let strength = strength as f32;
    step.push(if accumulate {
        vector::axpy_scalar(ctx, len, strength, &scalars, 1, term_grad, grad)?
    } else {
        vector::copy_scaled_scalar(ctx, len, strength, &scalars, 1, term_grad, grad)?
    });
    Ok(())
}

/// neural-style's guard against a zero norm.
pub const NORMALIZE_EPS: f32 = 1e-8;
