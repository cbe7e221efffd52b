//! The whole method in f64 on the CPU, composed from the ops' references over the same `Plan` as
//! the GPU executor: features, targets, losses and the gradient with respect to the image.

use super::executor::NORMALIZE_EPS;
use super::plan::{ActShape, REPLICATED_BORDER};
use super::{ConvLayerWeights, Losses, Node, Plan};
use crate::ops::region::{self, Border};
use crate::ops::{conv, gram, loss, pool, relu, tv, w2};

/// The network in f64.
pub struct Reference {
    pub plan: Plan,
    weights: Vec<(Vec<f64>, Vec<f64>)>,
}

/// What the losses compare against: content features per content term, style Grams per style term.
#[derive(Clone, Debug)]
pub struct Targets {
    pub content: Vec<Vec<f64>>,
    pub style_grams: Vec<Vec<f64>>,
    /// With `StyleLoss::W2`: each style term's Gaussian (`ops::w2::Target`); empty otherwise.
    pub style_w2: Vec<w2::Target>,
}

impl Reference {
    pub fn new(plan: Plan, convs: &[ConvLayerWeights]) -> Self {
        let widen = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
        let weights = convs.iter().take(plan.conv_widths.len()).map(|c| (widen(&c.weight), widen(&c.bias))).collect();
        Self { plan, weights }
    }

    /// Every activation of the schedule for a normalized image (activation 0 is the image).
    pub fn forward(&self, image: &[f64]) -> Vec<Vec<f64>> {
        let mut acts = vec![image.to_vec()];
        for node in &self.plan.nodes {
            let x = &acts[node.input()];
            let y = match *node {
                Node::Conv { conv, input, output, relu: fused } => {
                    let (w, b) = &self.weights[conv];
                    let shape = self.plan.conv_shape(input, output);
                    let y = if self.plan.replicates(input) {
                        // The executor's composition: pad, the zero-padded conv, its interior.
                        let dims = self.plan.acts[input];
                        let padded = region::reference::pad(dims, REPLICATED_BORDER, Border::Replicate, x);
                        interior(conv::reference::forward(shape, &padded, w, b), self.plan.acts[output])
                    } else {
                        conv::reference::forward(shape, x, w, b)
                    };
                    if fused { relu::reference::forward(&y) } else { y }
                }
                Node::Relu { .. } => relu::reference::forward(x),
                Node::MaxPool { input, .. } => pool::reference::forward(self.plan.pool_shape(input), x),
                Node::AvgPool { input, .. } => pool::reference::avg_forward(self.plan.pool_shape(input), x),
            };
            acts.push(y);
        }
        acts
    }

    /// Content features of one image and style Grams of another, both normalized.
    pub fn targets(&self, content_image: &[f64], style_image: &[f64]) -> Targets {
        let content_acts = self.forward(content_image);
        let style_acts = self.forward(style_image);
        Targets {
            content: self.plan.content.iter().map(|t| content_acts[t.act].clone()).collect(),
            style_grams: self
                .plan
                .style
                .iter()
                .map(|t| gram::reference::forward(self.plan.gram_shape(t.act), &style_acts[t.act]))
                .collect(),
            style_w2: self.w2_targets(&style_acts),
        }
    }

    /// The W2 targets of a style image's activations (none with Gram losses).
    fn w2_targets(&self, style_acts: &[Vec<f64>]) -> Vec<w2::Target> {
        if self.plan.losses.style_loss != super::StyleLoss::W2 {
            return Vec::new();
        }
        let target = |t: &super::LossTerm| {
            let (mean, srm) = w2::reference::moments(&style_acts[t.act], self.plan.acts[t.act].channels);
            w2::Target::from_moments(&mean, &srm)
        };
        self.plan.style.iter().map(target).collect()
    }

    /// As `targets` with one style image per mask region (`LossLayers::masks`): each style term's
    /// target is the plain Gram (with W2: the plain moments' Gaussian) of its region's style image
    /// (of every term's, without masks: `styles[0]`).
    pub fn targets_per_region(&self, content_image: &[f64], styles: &[Vec<f64>]) -> Targets {
        let content_acts = self.forward(content_image);
        let style_acts: Vec<Vec<Vec<f64>>> = styles.iter().map(|s| self.forward(s)).collect();
        let region = |t: &super::LossTerm| t.mask.as_ref().map_or(0, |m| m.region);
        let style_w2 = if self.plan.losses.style_loss == super::StyleLoss::W2 {
            let target = |t: &super::LossTerm| {
                let features = &style_acts[region(t)][t.act];
                let (mean, srm) = w2::reference::moments(features, self.plan.acts[t.act].channels);
                w2::Target::from_moments(&mean, &srm)
            };
            self.plan.style.iter().map(target).collect()
        } else {
            Vec::new()
        };
        Targets {
            content: self.plan.content.iter().map(|t| content_acts[t.act].clone()).collect(),
            style_grams: self
                .plan
                .style
                .iter()
                .map(|t| gram::reference::forward(self.plan.gram_shape(t.act), &style_acts[region(t)][t.act]))
                .collect(),
            style_w2,
        }
    }

    /// A W2 term's loss and its gradient with respect to `features`, unscaled: at the weighted
    /// moments for a masked term (the guided Gram's column weights), the plain ones otherwise.
    fn w2_term(&self, term: &super::LossTerm, features: &[f64], target: &w2::Target) -> (f64, Vec<f64>) {
        let weights = self.w2_weights(term, features);
        (
            w2::reference::loss_weighted(features, &weights, target),
            w2::reference::backward_weighted(features, &weights, target),
        )
    }

    /// A W2 term's column weights: its mask's (`gram::mask_column_weights`), 1 without a mask.
    fn w2_weights(&self, term: &super::LossTerm, features: &[f64]) -> Vec<f64> {
        match &term.mask {
            Some(mask) => gram::mask_column_weights(&mask.values).1,
            None => vec![1.0; features.len() / self.plan.acts[term.act].channels],
        }
    }

    /// A style term's Gram of `features`: guided for a masked term (F diag(T^2) F^T / a), plain otherwise.
    fn term_gram(&self, term: &super::LossTerm, features: &[f64]) -> Vec<f64> {
        let shape = self.plan.gram_shape(term.act);
        match &term.mask {
            Some(mask) => gram::reference::forward_masked(shape, features, &mask.values),
            None => gram::reference::forward(shape, features),
        }
    }

    /// The losses at `image` and their total's gradient with respect to `image`.
    pub fn loss_and_grad(&self, image: &[f64], targets: &Targets) -> (Losses, Vec<f64>) {
        let plan = &self.plan;
        let acts = self.forward(image);
        let mut slots = Vec::new();
        let mut grads: Vec<Option<Vec<f64>>> = vec![None; acts.len()];
        let add_grad = |grads: &mut Vec<Option<Vec<f64>>>, act: usize, g: Vec<f64>| match &mut grads[act] {
            Some(existing) => existing.iter_mut().zip(&g).for_each(|(e, v)| *e += v),
            slot @ None => *slot = Some(g),
        };
        // The weight of a term, applied to its gradient: directly, or after neural-style's
        // division by the gradient's L1 norm.
        let weighted = |g: Vec<f64>, strength: f64| -> Vec<f64> {
            let factor = if plan.losses.normalize_gradients {
                strength / (g.iter().map(|v| v.abs()).sum::<f64>() + NORMALIZE_EPS as f64)
            } else {
                strength
            };
            g.into_iter().map(|v| v * factor).collect()
        };
        for (term, target) in plan.content.iter().zip(&targets.content) {
            slots.push(loss::reference::sq_diff(&acts[term.act], target, term.scale));
            let g = loss::reference::sq_diff_backward(&acts[term.act], target, term.scale);
            add_grad(&mut grads, term.act, weighted(g, plan.content_weight));
        }
        let strength = |term: &super::LossTerm| {
            if plan.losses.normalize_gradients { plan.style_weight * term.weight } else { plan.style_weight }
        };
        for (term, target) in plan.style.iter().zip(&targets.style_w2) {
            let (loss, grad) = self.w2_term(term, &acts[term.act], target);
            slots.push(term.scale * loss);
            let g = grad.into_iter().map(|v| term.scale * v).collect();
            add_grad(&mut grads, term.act, weighted(g, strength(term)));
        }
        let gram_terms = if targets.style_w2.is_empty() { plan.style.len() } else { 0 };
        for (term, style_gram) in plan.style.iter().zip(&targets.style_grams).take(gram_terms) {
            let shape = self.plan.gram_shape(term.act);
            let g = self.term_gram(term, &acts[term.act]);
            slots.push(loss::reference::sq_diff(&g, style_gram, term.scale));
            let grad_gram = loss::reference::sq_diff_backward(&g, style_gram, term.scale);
            let grad_features = match &term.mask {
                Some(mask) => gram::reference::backward_masked(shape, &acts[term.act], &mask.values, &grad_gram),
                None => gram::reference::backward(shape, &acts[term.act], &grad_gram),
            };
            add_grad(&mut grads, term.act, weighted(grad_features, strength(term)));
        }
        for node in plan.nodes.iter().rev() {
            let Some(grad_out) = grads[node.output()].take() else {
                continue;
            };
            let grad_in = self.node_backward(node, &acts, grad_out);
            add_grad(&mut grads, node.input(), grad_in);
        }
        if plan.has_tv() {
            slots.push(tv_loss(plan, image));
            add_grad(&mut grads, 0, tv_grad(plan, image));
        }
        let image_grad = grads[0].take().unwrap_or_else(|| vec![0.0; image.len()]);
        (Losses::from_slots(plan, &slots), image_grad)
    }

    /// The gradient with respect to the image from given gradients with respect to activations
    /// (None: zero), back through the network whose forward gave `acts` (`forward`). With the
    /// losses' gradients this is `loss_and_grad`'s backward; the tiled schedule injects its own.
    pub fn backward_from(&self, acts: &[Vec<f64>], mut grads: Vec<Option<Vec<f64>>>) -> Vec<f64> {
        assert_eq!(grads.len(), acts.len(), "one gradient (or None) per activation");
        for node in self.plan.nodes.iter().rev() {
            let Some(grad_out) = grads[node.output()].take() else {
                continue;
            };
            let grad_in = self.node_backward(node, acts, grad_out);
            match &mut grads[node.input()] {
                Some(existing) => existing.iter_mut().zip(&grad_in).for_each(|(e, v)| *e += v),
                slot @ None => *slot = Some(grad_in),
            }
        }
        grads[0].take().unwrap_or_else(|| vec![0.0; acts[0].len()])
    }

    /// The gradient with respect to `node`'s input from the one with respect to its output.
    fn node_backward(&self, node: &Node, acts: &[Vec<f64>], grad_out: Vec<f64>) -> Vec<f64> {
        match *node {
            Node::Conv { conv, input, output, relu: fused } => {
                let masked = if fused { relu::reference::backward(&acts[output], &grad_out) } else { grad_out };
                let shape = self.plan.conv_shape(input, output);
                if !self.plan.replicates(input) {
                    return conv::reference::backward_input(shape, &masked, &self.weights[conv].0);
                }
                let b = REPLICATED_BORDER;
                let embedded = region::reference::pad(self.plan.acts[output], b, Border::Zeros, &masked);
                let padded_grad = conv::reference::backward_input(shape, &embedded, &self.weights[conv].0);
                region::reference::fold_replicate(self.plan.acts[input], b, &padded_grad)
            }
            Node::Relu { input, .. } => relu::reference::backward(&acts[input], &grad_out),
            Node::MaxPool { input, .. } => {
                pool::reference::backward(self.plan.pool_shape(input), &acts[input], &grad_out)
            }
            Node::AvgPool { input, .. } => pool::reference::avg_backward(self.plan.pool_shape(input), &grad_out),
        }
    }

    /// The losses alone, without the backward pass (for finite differences).
    pub fn losses(&self, image: &[f64], targets: &Targets) -> Losses {
        let plan = &self.plan;
        let acts = self.forward(image);
        let content = plan
            .content
            .iter()
            .zip(&targets.content)
            .map(|(term, target)| loss::reference::sq_diff(&acts[term.act], target, term.scale));
        let style: Vec<f64> = if targets.style_w2.is_empty() {
            let style = plan.style.iter().zip(&targets.style_grams);
            style
                .map(|(term, style_gram)| {
                    loss::reference::sq_diff(&self.term_gram(term, &acts[term.act]), style_gram, term.scale)
                })
                .collect()
        } else {
            let style = plan.style.iter().zip(&targets.style_w2);
            let loss = |(term, target): (&super::LossTerm, &w2::Target)| {
                let features = &acts[term.act];
                term.scale * w2::reference::loss_weighted(features, &self.w2_weights(term, features), target)
            };
            style.map(loss).collect()
        };
        let mut slots: Vec<f64> = content.chain(style).collect();
        if plan.has_tv() {
            slots.push(tv_loss(plan, image));
        }
        Losses::from_slots(plan, &slots)
    }
}

/// The weighted total variation of the plan's form.
fn tv_loss(plan: &Plan, image: &[f64]) -> f64 {
    match plan.losses.tv_loss {
        super::TvLoss::Sum => tv::reference::forward(plan.tv_shape(), image, plan.tv_weight),
        super::TvLoss::NinePoint => {
            tv::nine_point::reference::forward(plan.tv_shape(), image, plan.tv_weight, &plan.tv_rgb_factors())
        }
    }
}

/// Its gradient with respect to the image.
fn tv_grad(plan: &Plan, image: &[f64]) -> Vec<f64> {
    match plan.losses.tv_loss {
        super::TvLoss::Sum => tv::reference::backward(plan.tv_shape(), image, plan.tv_weight),
        super::TvLoss::NinePoint => {
            tv::nine_point::reference::backward(plan.tv_shape(), image, plan.tv_weight, &plan.tv_rgb_factors())
        }
    }
}

/// The interior of a C x (H + 2b) x (W + 2b) tensor, `dims` = C x H x W, b = `REPLICATED_BORDER`.
fn interior(padded: Vec<f64>, dims: ActShape) -> Vec<f64> {
    let b = REPLICATED_BORDER;
    let from = region::Rect { y: b, x: b, height: dims.height, width: dims.width };
    region::reference::copy_rect(&padded, region::padded(dims, b), from, &vec![0.0; dims.len()], dims, (0, 0))
}
