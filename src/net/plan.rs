//! Turns a layer table, the weights' widths, an image size and the loss layers into a schedule of
//! nodes over numbered activations. Shared by the GPU executor and the f64 reference, so that
//! both run exactly the same graph.

use super::NetError;
use super::vgg::{LayerDef, LayerKind};

/// Channels, height and width of one activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActShape {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl ActShape {
    pub fn len(&self) -> usize {
        self.channels * self.height * self.width
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One step of the forward schedule. Activation 0 is the (normalized) image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Node {
    /// Convolution `conv` (index into the weights) from `input` to `output`; with `relu` the ReLU
    /// that follows it is fused and `output` holds the post-ReLU value.
    Conv {
        conv: usize,
        input: usize,
        output: usize,
        relu: bool,
    },
    Relu {
        input: usize,
        output: usize,
    },
    MaxPool {
        input: usize,
        output: usize,
    },
    /// 2x2 average pool, stride 2 (`--pooling avg`, in place of every max pool).
    AvgPool {
        input: usize,
        output: usize,
    },
}

/// The kind of the network's 2x2 pools: VGG's max pools (the original) or average pools, which
/// Gatys et al. report give slightly smoother results.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Pooling {
    #[default]
    Max,
    Avg,
}

impl Node {
    pub fn input(&self) -> usize {
        match *self {
            Node::Conv { input, .. }
            | Node::Relu { input, .. }
            | Node::MaxPool { input, .. }
            | Node::AvgPool { input, .. } => input,
        }
    }
    pub fn output(&self) -> usize {
        match *self {
            Node::Conv { output, .. }
            | Node::Relu { output, .. }
            | Node::MaxPool { output, .. }
            | Node::AvgPool { output, .. } => output,
        }
    }
}

/// Which features the losses read and how they are weighted.
#[derive(Clone, Debug, PartialEq)]
pub struct LossLayers {
    /// Layers whose features the content loss compares (`relu4_2` after the ReLU, `conv4_2` before it).
    pub content: Vec<String>,
    /// Style layers with their weights w_l.
    pub style: Vec<(String, f64)>,
    /// alpha
    pub content_weight: f64,
    /// beta
    pub style_weight: f64,
    /// Weight of the total-variation term on the normalized image (0: none, the original).
    pub tv_weight: f64,
    /// The network's pooling (max in the original).
    pub pooling: Pooling,
    /// neural-style's `-normalize_gradients`: each term's gradient with respect to its features
    /// is divided by its L1 norm (+ 1e-8) before its weight is applied (off in the original).
    pub normalize_gradients: bool,
}

impl Default for LossLayers {
    fn default() -> Self {
        Self {
            content: vec![super::vgg::DEFAULT_CONTENT_LAYER.to_string()],
            style: super::vgg::DEFAULT_STYLE_LAYERS.iter().map(|&(n, w)| (n.to_string(), w)).collect(),
            content_weight: 1.0,
            style_weight: 1e6,
            tv_weight: 0.0,
            normalize_gradients: false,
            pooling: Pooling::Max,
        }
    }
}

/// A loss term: the activation it reads and its scale on sum((F - target)^2).
#[derive(Clone, Debug, PartialEq)]
pub struct LossTerm {
    pub layer: String,
    pub act: usize,
    /// Turns the sum of squares into the term's value (1/len for content, w/(C^2 C H W) for style).
    pub scale: f64,
    /// The term's weight (w_l for style layers, 1 for content layers), already inside `scale`.
    pub weight: f64,
}

/// The resolved schedule.
#[derive(Clone, Debug)]
pub struct Plan {
    pub nodes: Vec<Node>,
    pub acts: Vec<ActShape>,
    pub content: Vec<LossTerm>,
    pub style: Vec<LossTerm>,
    pub content_weight: f64,
    pub style_weight: f64,
    /// Scale of the total-variation term (`ops::tv`) on activation 0; 0: no term, no loss slot.
    pub tv_weight: f64,
    /// (in_channels, out_channels) of each convolution the schedule uses.
    pub conv_widths: Vec<(usize, usize)>,
    /// The layer table (cut after the deepest layer a loss reads) and the loss layers it was built from.
    pub layers: Vec<LayerDef>,
    pub losses: LossLayers,
}

impl Plan {
    /// `widths` are (in, out) channels of the table's convolutions in order; the table is cut
    /// after the deepest layer a loss reads.
    pub fn new(
        layers: &[LayerDef],
        widths: &[(usize, usize)],
        height: usize,
        width: usize,
        losses: &LossLayers,
    ) -> Result<Self, NetError> {
        if height == 0 || width == 0 {
            return Err(NetError::BadSize(format!("image of {width}x{height} pixels")));
        }
        let wanted: Vec<&str> =
            losses.content.iter().chain(losses.style.iter().map(|(n, _)| n)).map(String::as_str).collect();
        if wanted.is_empty() {
            return Err(NetError::UnknownLayer("no content or style layer was given".into()));
        }
        for name in &wanted {
            if !layers.iter().any(|l| l.name == *name) {
                let known: Vec<&str> = layers.iter().map(|l| l.name).filter(|n| !n.starts_with("pool")).collect();
                return Err(NetError::UnknownLayer(format!("unknown layer {name} (known: {})", known.join(", "))));
            }
        }
        let last = layers.iter().rposition(|l| wanted.contains(&l.name)).expect("checked above");
        let layers = &layers[..=last];

        let mut acts = vec![ActShape { channels: 3, height, width }];
        let mut names: Vec<(&str, usize)> = Vec::new();
        let mut nodes = Vec::new();
        let mut conv_widths = Vec::new();
        let mut i = 0;
        while i < layers.len() {
            let layer = layers[i];
            let input = acts.len() - 1;
            let shape = acts[input];
            match layer.kind {
                LayerKind::Conv => {
                    let conv = conv_widths.len();
                    let &(cin, cout) = widths.get(conv).ok_or_else(|| {
                        NetError::WeightsMismatch(format!("the weights have no convolution for {}", layer.name))
                    })?;
                    if cin != shape.channels {
                        return Err(NetError::WeightsMismatch(format!(
                            "{} takes {cin} channels but receives {}",
                            layer.name, shape.channels
                        )));
                    }
                    conv_widths.push((cin, cout));
                    // Fuse the ReLU unless the pre-activation value is read by a loss.
                    let next_is_relu = layers.get(i + 1).is_some_and(|l| l.kind == LayerKind::Relu);
                    let fuse = next_is_relu && !wanted.contains(&layer.name);
                    acts.push(ActShape { channels: cout, ..shape });
                    let output = acts.len() - 1;
                    nodes.push(Node::Conv { conv, input, output, relu: fuse });
                    names.push((layer.name, output));
                    if fuse {
                        names.push((layers[i + 1].name, output));
                        i += 1;
                    }
                }
                LayerKind::Relu => {
                    acts.push(shape);
                    nodes.push(Node::Relu { input, output: acts.len() - 1 });
                    names.push((layer.name, acts.len() - 1));
                }
                LayerKind::MaxPool => {
                    if shape.height < 2 || shape.width < 2 {
                        return Err(NetError::BadSize(format!(
                            "image of {width}x{height} pixels is too small: {} would pool a {}x{} map",
                            layer.name, shape.width, shape.height
                        )));
                    }
                    acts.push(ActShape { channels: shape.channels, height: shape.height / 2, width: shape.width / 2 });
                    let output = acts.len() - 1;
                    nodes.push(match losses.pooling {
                        Pooling::Max => Node::MaxPool { input, output },
                        Pooling::Avg => Node::AvgPool { input, output },
                    });
                    names.push((layer.name, acts.len() - 1));
                }
            }
            i += 1;
        }
        let act_of = |name: &str| names.iter().rev().find(|(n, _)| *n == name).map(|&(_, a)| a).expect("resolved");
        let content = losses
            .content
            .iter()
            .map(|name| {
                let act = act_of(name);
                LossTerm { layer: name.clone(), act, scale: 1.0 / acts[act].len() as f64, weight: 1.0 }
            })
            .collect();
        let style = losses
            .style
            .iter()
            .map(|(name, weight)| {
                let act = act_of(name);
                let s = acts[act];
                LossTerm {
                    layer: name.clone(),
                    act,
                    scale: crate::ops::loss::style_scale(*weight, s.channels, s.height, s.width),
                    weight: *weight,
                }
            })
            .collect();
        Ok(Self {
            nodes,
            acts,
            content,
            style,
            content_weight: losses.content_weight,
            style_weight: losses.style_weight,
            tv_weight: losses.tv_weight,
            conv_widths,
            layers: layers.to_vec(),
            losses: losses.clone(),
        })
    }

    /// The convolution from activation `input` to activation `output`.
    pub fn conv_shape(&self, input: usize, output: usize) -> crate::ops::conv::ConvShape {
        let (i, o) = (self.acts[input], self.acts[output]);
        crate::ops::conv::ConvShape {
            in_channels: i.channels,
            out_channels: o.channels,
            height: i.height,
            width: i.width,
        }
    }

    /// The pooling layer that reads activation `input`.
    pub fn pool_shape(&self, input: usize) -> crate::ops::pool::PoolShape {
        let s = self.acts[input];
        crate::ops::pool::PoolShape { channels: s.channels, height: s.height, width: s.width }
    }

    /// The Gram matrix of activation `act`.
    pub fn gram_shape(&self, act: usize) -> crate::ops::gram::GramShape {
        let s = self.acts[act];
        crate::ops::gram::GramShape { channels: s.channels, n: s.height * s.width }
    }

    /// `u32` words of the ReLU mask that `node`'s backward reads: Some for a convolution with a fused ReLU.
    pub fn mask_words(&self, node: &Node) -> Option<usize> {
        match *node {
            Node::Conv { output, relu: true, .. } => Some(crate::ops::relu::mask_words(self.acts[output].len())),
            _ => None,
        }
    }

    /// `u32` words of the arg-max codes that `node`'s backward reads: Some for a max-pool.
    pub fn codes_words(&self, node: &Node) -> Option<usize> {
        match *node {
            Node::MaxPool { input, .. } => Some(crate::ops::pool::codes_words(self.pool_shape(input))),
            _ => None,
        }
    }

    /// Bytes of the largest single buffer the executor will allocate (an activation, a
    /// gradient or a Gram partial-sum buffer), and what it holds.
    pub fn largest_buffer(&self) -> (u64, String) {
        let mut largest = (0u64, String::new());
        for (i, act) in self.acts.iter().enumerate() {
            let bytes = act.len() as u64 * 4;
            if bytes > largest.0 {
                largest = (bytes, format!("activation {i} ({}x{}x{})", act.channels, act.height, act.width));
            }
        }
        for term in &self.style {
            let shape = self.gram_shape(term.act);
            let bytes = (shape.splits() * shape.gram_len()) as u64 * 4;
            if bytes > largest.0 {
                largest = (bytes, format!("Gram partial sums of {}", term.layer));
            }
        }
        largest
    }

    /// Refuses a plan whose largest buffer exceeds `limit` bytes (what the adapter can bind),
    /// naming the largest image size with the same aspect ratio that would fit.
    pub fn check_fits(&self, limit: u64) -> Result<(), NetError> {
        let (needed, what) = self.largest_buffer();
        if needed <= limit {
            return Ok(());
        }
        let image = self.acts[0];
        let longer = image.height.max(image.width);
        let (mut lo, mut hi) = (0usize, longer);
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if self.resized(mid).is_ok_and(|p| p.largest_buffer().0 <= limit) { lo = mid } else { hi = mid - 1 }
        }
        Err(NetError::TooLarge {
            width: image.width,
            height: image.height,
            needed_mib: needed.div_ceil(1 << 20),
            what,
            limit_mib: limit >> 20,
            largest_side: lo,
        })
    }

    /// The same network and losses for an image whose longer side is `side` (aspect kept).
    pub fn resized(&self, side: usize) -> Result<Plan, NetError> {
        let image = self.acts[0];
        let scale = side as f64 / image.height.max(image.width) as f64;
        let scaled = |v: usize| ((v as f64 * scale).round() as usize).max(1);
        Plan::new(&self.layers, &self.conv_widths, scaled(image.height), scaled(image.width), &self.losses)
    }

    /// Slot of each loss term in the loss buffer: content terms first, then style terms, then
    /// the total variation when it has a weight.
    pub fn loss_slots(&self) -> usize {
        self.content.len() + self.style.len() + usize::from(self.has_tv())
    }

    /// Whether the total-variation term is part of the loss.
    pub fn has_tv(&self) -> bool {
        self.tv_weight > 0.0
    }

    /// The shape the total-variation term sees: the image, activation 0.
    pub fn tv_shape(&self) -> crate::ops::tv::TvShape {
        let s = self.acts[0];
        crate::ops::tv::TvShape { channels: s.channels, height: s.height, width: s.width }
    }

    /// Floating-point operations of one forward pass plus the backward to the image (convolutions
    /// and Gram products; elementwise work is negligible beside them).
    pub fn flops_per_step(&self) -> u64 {
        let mut flops = 0u64;
        for node in &self.nodes {
            if let Node::Conv { input, output, .. } = *node {
                let per_pass = 2 * self.acts[output].len() as u64 * self.acts[input].channels as u64 * 9;
                // The first convolution's backward is needed too: the image is what we optimize.
                flops += 2 * per_pass;
            }
        }
        for term in &self.style {
            let s = self.acts[term.act];
            let gram = 2 * (s.channels * s.channels * s.height * s.width) as u64;
            flops += 2 * gram;
        }
        flops
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::vgg::{VGG19, VGG19_WIDTHS};

    fn vgg_plan(height: usize, width: usize) -> Plan {
        let mut widths = Vec::new();
        let mut cin = 3;
        for w in VGG19_WIDTHS {
            widths.push((cin, w));
            cin = w;
        }
        Plan::new(&VGG19, &widths, height, width, &LossLayers::default()).unwrap()
    }

    #[test]
    fn too_large_plans_name_the_largest_size_that_fits() {
        let limit = 128 << 20;
        let plan = vgg_plan(800, 1200);
        let Err(NetError::TooLarge { largest_side, needed_mib, limit_mib, .. }) = plan.check_fits(limit) else {
            panic!("1200x800 needs 64 x 1200 x 800 x 4 bytes = 234 MiB in one buffer");
        };
        assert_eq!((needed_mib, limit_mib), (235, 128));
        assert!(plan.resized(largest_side).unwrap().check_fits(limit).is_ok());
        assert!(plan.resized(largest_side + 1).unwrap().check_fits(limit).is_err());
        assert!(vgg_plan(300, 400).check_fits(limit).is_ok());
        let message = plan.check_fits(limit).unwrap_err().to_string();
        assert!(message.contains("1200x800") && message.contains(&format!("--size {largest_side}")), "{message}");
    }
}
