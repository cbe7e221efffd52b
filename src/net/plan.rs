//! Turns a layer table, the weights' widths, an image size and the loss layers into a schedule of
//! nodes over numbered activations. Shared by the GPU executor and the f64 reference, so that
//! both run exactly the same graph.

use super::NetError;
use super::vgg::{LayerDef, LayerKind};
pub use crate::ops::ActShape;

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

/// Where an activation lives on the GPU: decided by `Plan::new`, followed by the executor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// A buffer of its own, valid from the forward pass to the next one: the image, every feature a
    /// loss reads, and every input a backward reads as f32 (a separate ReLU's).
    Kept,
    /// Shared scratch buffer `n` of `Plan::scratch`: valid only until a later node of the forward pass
    /// overwrites it. The backward reads none of these (a fused ReLU's backward reads its mask
    /// bits, a max-pool's its arg-max codes) and ping-pongs its gradients in scratch 0 and 1.
    Scratch(usize),
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
    /// Spatial control (Gatys et al. 2017, `--mask`): one mask per style region, the image's
    /// height x width values in [0, 1] (white: that region's style applies). Empty: none (the
    /// original). With masks every style layer has one guided-Gram term per region (`TermMask`).
    pub masks: Vec<Vec<f32>>,
    /// How the RGB image becomes activation 0 (`Model::preprocess`: torchvision's ImageNet
    /// statistics in the original).
    pub input: crate::ops::normalize::Preprocess,
    /// Whether the Grams are divided by C H W before they are compared (neural-style's
    /// `StyleLoss`) or compared as they are (the original).
    pub gram_norm: GramNorm,
    /// What a style term compares: Gram matrices (the original) or the features' Gaussians by
    /// the Wasserstein-2 distance (`ops::w2`).
    pub style_loss: StyleLoss,
    /// The total variation's form: neural-style's sum of squares on the normalized image (the
    /// `tv` kernels) or crowsonkb's nine-point stencil on the RGB image (`tv::nine_point`).
    pub tv_loss: TvLoss,
    /// How the first convolution pads the image: with zeros (torchvision's VGG, the original) or
    /// by replicating its edges (crowsonkb's tool, against edge artifacts).
    pub padding: Padding,
}

/// The first convolution's padding (`--padding`); the later ones always pad with zeros.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Padding {
    #[default]
    Zeros,
    /// PyTorch's `padding_mode='replicate'`: the executor pads the image by one replicated pixel
    /// (`ops::region::pad`), runs the ordinary zero-padded convolution over the padded image and
    /// keeps the interior of its output, whose every tap reads the padded image, never a zero;
    /// the backward folds the border's gradient back onto the edge pixels.
    Replicate,
}

/// The form of the total-variation term (`--tv-loss`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TvLoss {
    /// jcjohnson/neural-style's: `tv_weight * sum((dx)^2 + (dy)^2)` over the normalized image.
    #[default]
    Sum,
    /// crowsonkb/style-transfer-pytorch's nine-point stencil with replicated edges, on the RGB
    /// image in [0, 1]: `tv_weight * 2 * (mean dx^2 / 3 + mean dy^2 / 3 + mean diagonals^2 / 12)`.
    NinePoint,
}

/// A style term's distance between the image's and the style's features at its layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StyleLoss {
    /// The original: the squared difference of Gram matrices (scaled as `GramNorm` says).
    #[default]
    Gram,
    /// crowsonkb's: the 2-Wasserstein distance between Gaussians fitted to the features
    /// (`ops::w2`), w L per layer.
    W2,
}

/// How a style term compares the Gram G of the image's features (C x H W) with the style's A.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GramNorm {
    /// The original: G = F F^T unnormalized, the term w mean((G - A)^2) / (C H W).
    #[default]
    None,
    /// jcjohnson/neural-style's `StyleLoss`: both Grams divided by C H W (its `nElement`) before
    /// the mean squared difference, so the term is w mean((G - A)^2) / (C H W)^2.
    Chw,
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
            masks: Vec::new(),
            input: crate::ops::normalize::Preprocess::TORCHVISION,
            gram_norm: GramNorm::None,
            style_loss: StyleLoss::Gram,
            tv_loss: TvLoss::Sum,
            padding: Padding::Zeros,
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
    /// A masked style term's region and mask at its layer; None: a plain term.
    pub mask: Option<TermMask>,
}

/// The mask of one style region at one layer: the image-size mask average-pooled 2x2 (floor) at
/// every pool before the layer, whatever the network's pooling.
#[derive(Clone, Debug, PartialEq)]
pub struct TermMask {
    /// Index of the region (its style image and mask) in `LossLayers::masks`.
    pub region: usize,
    /// a = sum_p T(p)^2 / N, already inside the term's `scale` (never 0: such terms are left out).
    pub coverage: f64,
    /// T at the layer, H x W values.
    pub values: Vec<f64>,
}

impl TermMask {
    /// The guided Gram's column weights T^2 / a over the layer (`gram::mask_column_weights`), as
    /// the GPU takes them.
    pub fn column_weights(&self) -> Vec<f32> {
        crate::ops::gram::mask_column_weights(&self.values).1.into_iter().map(|w| w as f32).collect()
    }

    /// The octave of those weights (`gram::weight_exponent`), which a mixed forward scales by.
    pub fn weight_exponent(&self) -> i32 {
        crate::ops::gram::weight_exponent(&self.column_weights())
    }
}

/// 2x2 average pool with stride 2 of one H x W plane (floor: a last odd row or column is dropped),
/// as the network's pools shrink its maps.
pub fn pool_mask(values: &[f64], height: usize, width: usize) -> Vec<f64> {
    let (h, w) = (height / 2, width / 2);
    let at = |y: usize, x: usize| values[y * width + x];
    (0..h * w)
        .map(|i| {
            let (y, x) = (2 * (i / w), 2 * (i % w));
            (at(y, x) + at(y, x + 1) + at(y + 1, x) + at(y + 1, x + 1)) / 4.0
        })
        .collect()
}

/// The border a replicate-padded first convolution adds to the image: one pixel, a 3x3 kernel's reach.
pub const REPLICATED_BORDER: usize = 1;

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
    /// Where each activation lives (see `Storage`).
    pub storage: Vec<Storage>,
    /// Values of each shared scratch buffer; there are at least two, each large enough for any
    /// gradient (`Plan::gradient_len`).
    pub scratch: Vec<usize>,
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
        let wanted = wanted_layers(layers, losses)?;
        let last = layers.iter().rposition(|l| wanted.contains(&l.name)).expect("checked by wanted_layers");
        let layers = &layers[..=last];
        if let Some(mask) = losses.masks.iter().find(|m| m.len() != height * width) {
            return Err(NetError::BadSize(format!(
                "a style mask has {} values, the image {width}x{height} pixels",
                mask.len()
            )));
        }
        let schedule = Schedule::build(layers, widths, &wanted, ActShape { channels: 3, height, width }, losses)?;
        let content = schedule.content_terms(losses);
        let style = schedule.style_terms(losses);
        let Schedule { nodes, acts, conv_widths, .. } = schedule;
        let (storage, scratch) = assign_storage(&nodes, &acts, content.iter().chain(&style).map(|t: &LossTerm| t.act));
        Ok(Self {
            storage,
            scratch,
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

    /// The convolution from activation `input` to activation `output`: over the padded image
    /// for a first convolution with replicate padding (`replicates`).
    pub fn conv_shape(&self, input: usize, output: usize) -> crate::ops::conv::ConvShape {
        let (i, o) = (self.acts[input], self.acts[output]);
        let border = if self.replicates(input) { 2 * REPLICATED_BORDER } else { 0 };
        crate::ops::conv::ConvShape {
            in_channels: i.channels,
            out_channels: o.channels,
            height: i.height + border,
            width: i.width + border,
        }
    }

    /// Whether the convolution reading activation `input` pads it by replicating its edges: the
    /// first one (reading the image) under `Padding::Replicate`.
    pub fn replicates(&self, input: usize) -> bool {
        input == 0 && self.losses.padding == Padding::Replicate
    }

    /// The padded image and the padded output of the first convolution under
    /// `Padding::Replicate` (None otherwise).
    pub fn replicated_shapes(&self) -> Option<(ActShape, ActShape)> {
        self.nodes.iter().find_map(|node| match *node {
            Node::Conv { input, output, .. } if self.replicates(input) => Some((
                crate::ops::region::padded(self.acts[input], REPLICATED_BORDER),
                crate::ops::region::padded(self.acts[output], REPLICATED_BORDER),
            )),
            _ => None,
        })
    }

    /// The pooling layer that reads activation `input`.
    pub fn pool_shape(&self, input: usize) -> ActShape {
        self.acts[input]
    }

    /// The Gram matrix of activation `act`.
    pub fn gram_shape(&self, act: usize) -> crate::ops::gram::GramShape {
        let s = self.acts[act];
        crate::ops::gram::GramShape { channels: s.channels, n: s.height * s.width }
    }

    /// Values of each gradient the backward pass holds in a scratch buffer: the largest activation
    /// after the image (whose gradient has a buffer of its own).
    pub fn gradient_len(&self) -> usize {
        self.acts[1..].iter().map(ActShape::len).max().unwrap_or(0).max(1)
    }

    /// `u32` words of the ReLU mask that `node`'s backward reads: Some for a convolution with a fused ReLU.
    pub fn mask_words(&self, node: &Node) -> Option<usize> {
        match *node {
            Node::Conv { input, output, relu: true, .. } => {
                Some(crate::ops::relu::mask_words(self.conv_shape(input, output).output_len()))
            }
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

    /// Values of the Gram partial-sum buffer the style terms share (0 without style terms).
    pub fn gram_partials_len(&self) -> usize {
        self.style.iter().map(|t| self.gram_shape(t.act).partials_len()).max().unwrap_or(0)
    }

    /// Values of the buffer `--normalize-gradients` holds each term's own gradient in, one term
    /// after the other (0 without it).
    pub fn term_gradient_len(&self) -> usize {
        if !self.losses.normalize_gradients {
            return 0;
        }
        self.content.iter().chain(&self.style).map(|t| self.acts[t.act].len()).max().unwrap_or(0)
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
            let bytes = shape.partials_len() as u64 * 4;
            if bytes > largest.0 {
                largest = (bytes, format!("Gram partial sums of {}", term.layer));
            }
        }
        largest
    }

    /// An error unless `len` is the number of values of this plan's image (3 H W).
    pub fn check_image_len(&self, len: usize) -> Result<(), NetError> {
        let (expected, s) = (self.acts[0].len(), self.acts[0]);
        if len != expected {
            return Err(NetError::BadSize(format!(
                "image has {len} values, the network was built for 3x{}x{} = {expected}",
                s.height, s.width
            )));
        }
        Ok(())
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
        let (height, width) = (scaled(image.height), scaled(image.width));
        // Masks follow by nearest neighbour (only the sizes matter to `check_fits`).
        let masks = self
            .losses
            .masks
            .iter()
            .map(|m| {
                (0..height * width)
                    .map(|i| m[(i / width) * image.height / height * image.width + (i % width) * image.width / width])
                    .collect()
            })
            .collect();
        let losses = LossLayers { masks, ..self.losses.clone() };
        Plan::new(&self.layers, &self.conv_widths, height, width, &losses)
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
    pub fn tv_shape(&self) -> ActShape {
        self.acts[0]
    }

    /// The nine-point TV's per-channel factors: it is on RGB in [0, 1], and a difference of the
    /// normalized image is one of RGB times `scale / std_c`, so each channel's squares are
    /// divided by that squared.
    pub fn tv_rgb_factors(&self) -> Vec<f64> {
        let input = &self.losses.input;
        (0..self.acts[0].channels).map(|c| (input.std[c.min(2)] / input.scale).powi(2)).collect()
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

/// The layers the losses read, each checked against the table.
fn wanted_layers<'a>(layers: &[LayerDef], losses: &'a LossLayers) -> Result<Vec<&'a str>, NetError> {
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
    Ok(wanted)
}

/// The forward schedule as `Plan::new` builds it from the layer table, one layer after another,
/// with what the loss terms need to find their activations and masks.
struct Schedule<'a> {
    nodes: Vec<Node>,
    acts: Vec<ActShape>,
    conv_widths: Vec<(usize, usize)>,
    /// Layer names and the activation each ends in (a fused ReLU's is its convolution's).
    names: Vec<(&'a str, usize)>,
    /// Pools passed before each activation.
    depth: Vec<usize>,
    /// Each region's mask at each pooling depth (index: pools passed), built as pools appear.
    masks_by_depth: Vec<Vec<Vec<f64>>>,
}

impl<'a> Schedule<'a> {
    fn build(
        layers: &'a [LayerDef],
        widths: &[(usize, usize)],
        wanted: &[&str],
        image: ActShape,
        losses: &LossLayers,
    ) -> Result<Self, NetError> {
        let region_masks = losses.masks.iter().map(|m| m.iter().map(|&v| v as f64).collect()).collect();
        let mut schedule = Self {
            nodes: Vec::new(),
            acts: vec![image],
            conv_widths: Vec::new(),
            names: Vec::new(),
            depth: vec![0],
            masks_by_depth: vec![region_masks],
        };
        let mut i = 0;
        while i < layers.len() {
            let layer = &layers[i];
            match layer.kind {
                LayerKind::Conv => {
                    // Fuse the ReLU unless the pre-activation value is read by a loss.
                    let next_is_relu = layers.get(i + 1).is_some_and(|l| l.kind == LayerKind::Relu);
                    let fused_relu = (next_is_relu && !wanted.contains(&layer.name)).then(|| &layers[i + 1]);
                    schedule.push_conv(layer, fused_relu, widths)?;
                    i += usize::from(fused_relu.is_some());
                }
                LayerKind::Relu => schedule.push_relu(layer),
                LayerKind::MaxPool => schedule.push_pool(layer, losses.pooling, image)?,
            }
            i += 1;
        }
        Ok(schedule)
    }

    /// Appends `output` = the new last activation, of `shape`, `pools` deeper than the previous one.
    fn push_act(&mut self, shape: ActShape, pools: usize) -> usize {
        let input = self.acts.len() - 1;
        self.acts.push(shape);
        self.depth.push(self.depth[input] + pools);
        self.acts.len() - 1
    }

    fn push_conv(
        &mut self,
        layer: &'a LayerDef,
        fused_relu: Option<&'a LayerDef>,
        widths: &[(usize, usize)],
    ) -> Result<(), NetError> {
        let input = self.acts.len() - 1;
        let shape = self.acts[input];
        let conv = self.conv_widths.len();
        let &(cin, cout) = widths
            .get(conv)
            .ok_or_else(|| NetError::WeightsMismatch(format!("the weights have no convolution for {}", layer.name)))?;
        if cin != shape.channels {
            return Err(NetError::WeightsMismatch(format!(
                "{} takes {cin} channels but receives {}",
                layer.name, shape.channels
            )));
        }
        self.conv_widths.push((cin, cout));
        let output = self.push_act(ActShape { channels: cout, ..shape }, 0);
        self.nodes.push(Node::Conv { conv, input, output, relu: fused_relu.is_some() });
        self.names.push((layer.name, output));
        if let Some(relu) = fused_relu {
            self.names.push((relu.name, output));
        }
        Ok(())
    }

    fn push_relu(&mut self, layer: &'a LayerDef) {
        let input = self.acts.len() - 1;
        let output = self.push_act(self.acts[input], 0);
        self.nodes.push(Node::Relu { input, output });
        self.names.push((layer.name, output));
    }

    /// A 2x2 pool of the kind `pooling`; the region masks are average-pooled once per depth.
    fn push_pool(&mut self, layer: &'a LayerDef, pooling: Pooling, image: ActShape) -> Result<(), NetError> {
        let input = self.acts.len() - 1;
        let shape = self.acts[input];
        if shape.height < 2 || shape.width < 2 {
            return Err(NetError::BadSize(format!(
                "image of {}x{} pixels is too small: {} would pool a {}x{} map",
                image.width, image.height, layer.name, shape.width, shape.height
            )));
        }
        let pooled = ActShape { channels: shape.channels, height: shape.out_height(), width: shape.out_width() };
        let output = self.push_act(pooled, 1);
        if self.masks_by_depth.len() == self.depth[input] + 1 {
            let deepest = self.masks_by_depth.last().expect("the image's masks");
            let pooled = deepest.iter().map(|m| pool_mask(m, shape.height, shape.width)).collect();
            self.masks_by_depth.push(pooled);
        }
        self.nodes.push(match pooling {
            Pooling::Max => Node::MaxPool { input, output },
            Pooling::Avg => Node::AvgPool { input, output },
        });
        self.names.push((layer.name, output));
        Ok(())
    }

    /// The activation a layer name ends in (the last one of that name).
    fn act_of(&self, name: &str) -> usize {
        self.names.iter().rev().find(|(n, _)| *n == name).map(|&(_, a)| a).expect("resolved by wanted_layers")
    }

    fn content_terms(&self, losses: &LossLayers) -> Vec<LossTerm> {
        losses
            .content
            .iter()
            .map(|name| {
                let act = self.act_of(name);
                LossTerm { layer: name.clone(), act, scale: 1.0 / self.acts[act].len() as f64, weight: 1.0, mask: None }
            })
            .collect()
    }

    /// One term per style layer, or with masks one guided-Gram term per region, scaled by its
    /// coverage; a region that covers nothing at a layer adds nothing there.
    fn style_terms(&self, losses: &LossLayers) -> Vec<LossTerm> {
        let mut style: Vec<LossTerm> = Vec::new();
        for (name, weight) in &losses.style {
            let act = self.act_of(name);
            let s = self.acts[act];
            let gram_scale = || {
                crate::ops::loss::style_scale(*weight, s.channels, s.height, s.width)
                    / match losses.gram_norm {
                        GramNorm::None => 1.0,
                        GramNorm::Chw => s.len() as f64,
                    }
            };
            let term = LossTerm {
                layer: name.clone(),
                act,
                scale: match losses.style_loss {
                    StyleLoss::Gram => gram_scale(),
                    // The distance itself, weighted: w_l L_l.
                    StyleLoss::W2 => *weight,
                },
                weight: *weight,
                mask: None,
            };
            if losses.masks.is_empty() {
                style.push(term);
                continue;
            }
            for (region, values) in self.masks_by_depth[self.depth[act]].iter().enumerate() {
                let (coverage, _) = crate::ops::gram::mask_column_weights(values);
                if coverage > 0.0 {
                    let mask = Some(TermMask { region, coverage, values: values.clone() });
                    style.push(LossTerm { scale: coverage * term.scale, mask, ..term.clone() });
                }
            }
        }
        style
    }
}

/// Which activations keep a buffer of their own and which share scratch buffers, and how large each
/// scratch buffer is. Kept: the image, every activation a loss reads, and the input of every
/// separate ReLU (its backward masks by it). Every other activation is transient: it goes to a
/// scratch buffer whose previous occupant no later node reads, never the one the node reads from.
/// The first two scratch buffers also hold the backward's gradients.
fn assign_storage(
    nodes: &[Node],
    acts: &[ActShape],
    loss_acts: impl Iterator<Item = usize>,
) -> (Vec<Storage>, Vec<usize>) {
    let mut kept = vec![false; acts.len()];
    kept[0] = true;
    for act in loss_acts {
        kept[act] = true;
    }
    for node in nodes {
        if let Node::Relu { input, .. } = *node {
            kept[input] = true;
        }
    }
    // The last node that reads each activation (None: no node does).
    let mut last_read = vec![None; acts.len()];
    for (k, node) in nodes.iter().enumerate() {
        last_read[node.input()] = Some(k);
    }
    let mut storage = vec![Storage::Kept; acts.len()];
    // Per scratch buffer: its size and the last node that reads what it holds now.
    let mut slots: Vec<(usize, Option<usize>)> = Vec::new();
    for (k, node) in nodes.iter().enumerate() {
        let out = node.output();
        if kept[out] {
            continue;
        }
        let free = |&(_, busy_until): &(usize, Option<usize>)| busy_until.is_none_or(|last| last < k);
        let slot = match slots.iter().position(free) {
            Some(slot) => slot,
            None => {
                slots.push((0, None));
                slots.len() - 1
            }
        };
        slots[slot] = (slots[slot].0.max(acts[out].len()), last_read[out]);
        storage[out] = Storage::Scratch(slot);
    }
    let gradient = acts[1..].iter().map(ActShape::len).max().unwrap_or(0).max(1);
    let mut scratch: Vec<usize> = slots.into_iter().map(|(len, _)| len).collect();
    scratch.resize(scratch.len().max(2), 0);
    for len in &mut scratch[..2] {
        *len = (*len).max(gradient);
    }
    (storage, scratch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::vgg::{VGG19, VGG19_WIDTHS};

    fn vgg_plan(height: usize, width: usize) -> Plan {
        Plan::new(&VGG19, &vgg_widths(), height, width, &LossLayers::default()).unwrap()
    }

    fn vgg_widths() -> Vec<(usize, usize)> {
        let mut widths = Vec::new();
        let mut cin = 3;
        for w in VGG19_WIDTHS {
            widths.push((cin, w));
            cin = w;
        }
        widths
    }

    /// Replays the forward pass over the plan's storage: every node reads an activation its buffer
    /// still holds and never writes the buffer it reads; the scratch buffers fit what they hold
    /// and the two gradients; every loss reads a kept activation, every separate ReLU a kept input.
    fn check_storage(plan: &Plan) {
        let what = format!("{:?} at {:?}", plan.losses, plan.acts[0]);
        assert_eq!(plan.storage.len(), plan.acts.len());
        assert_eq!(plan.storage[0], Storage::Kept, "{what}: the image is kept");
        for term in plan.content.iter().chain(&plan.style) {
            assert_eq!(plan.storage[term.act], Storage::Kept, "{what}: {} is read by a loss", term.layer);
        }
        assert!(plan.scratch.len() >= 2 && plan.scratch[..2].iter().all(|&len| len >= plan.gradient_len()));
        // What each scratch buffer holds while the forward pass runs.
        let mut holds: Vec<Option<usize>> = vec![None; plan.scratch.len()];
        for node in &plan.nodes {
            let (input, output) = (node.input(), node.output());
            if let Storage::Scratch(slot) = plan.storage[input] {
                assert_eq!(holds[slot], Some(input), "{what}: {node:?} reads an overwritten activation");
            }
            if let Node::Relu { input, .. } = *node {
                assert_eq!(plan.storage[input], Storage::Kept, "{what}: the ReLU backward reads {input}");
            }
            if let Storage::Scratch(slot) = plan.storage[output] {
                assert_ne!(plan.storage[input], Storage::Scratch(slot), "{what}: {node:?} reads and writes one buffer");
                assert!(plan.scratch[slot] >= plan.acts[output].len());
                holds[slot] = Some(output);
            }
        }
    }

    #[test]
    fn storage_keeps_what_losses_and_backward_read_and_shares_the_rest() {
        let widths = vgg_widths();
        let plan = vgg_plan(512, 512);
        check_storage(&plan);
        // VGG-19 to relu5_1: the image and the six loss layers keep their buffers; the other eleven
        // activations (relu1_2, pool1, relu2_2, pool2, relu3_2..3_4, pool3, relu4_3, relu4_4, pool4)
        // alternate between two scratch buffers, the larger of which is relu1_2's size.
        let kept: Vec<usize> = (0..plan.acts.len()).filter(|&a| plan.storage[a] == Storage::Kept).collect();
        let mut expected: Vec<usize> = plan.content.iter().chain(&plan.style).map(|t| t.act).collect();
        expected.push(0);
        expected.sort();
        assert_eq!(kept, expected);
        assert_eq!(plan.scratch, vec![64 * 512 * 512; 2]);
        let transient = plan.nodes.iter().filter(|n| matches!(plan.storage[n.output()], Storage::Scratch(_))).count();
        assert_eq!(transient, 11);
        // Masks for the 13 fused convolutions up to conv5_1, codes for the 4 pools.
        assert_eq!(plan.nodes.iter().filter_map(|n| plan.mask_words(n)).count(), 13);
        assert_eq!(plan.nodes.iter().filter_map(|n| plan.codes_words(n)).count(), 4);

        let custom = |content: &str, style: &[&str], pooling: Pooling| LossLayers {
            content: vec![content.to_string()],
            style: style.iter().map(|s| (s.to_string(), 1.0)).collect(),
            pooling,
            ..LossLayers::default()
        };
        for (losses, (h, w)) in [
            (custom("conv4_2", &["relu1_1", "relu3_1"], Pooling::Max), (37, 29)),
            (custom("relu2_2", &["conv1_1", "pool1", "conv3_3"], Pooling::Avg), (24, 31)),
            (custom("relu1_1", &["relu1_1"], Pooling::Max), (9, 9)),
            (custom("pool3", &[], Pooling::Max), (16, 18)),
        ] {
            let plan = Plan::new(&VGG19, &widths, h, w, &losses).unwrap();
            check_storage(&plan);
            for node in &plan.nodes {
                assert_eq!(plan.codes_words(node).is_some(), matches!(node, Node::MaxPool { .. }));
                assert_eq!(plan.mask_words(node).is_some(), matches!(node, Node::Conv { relu: true, .. }));
            }
        }
        // A pre-ReLU content layer: conv4_2 keeps its output for the loss and the separate ReLU.
        let plan = Plan::new(&VGG19, &widths, 64, 64, &custom("conv4_2", &["relu5_1"], Pooling::Max)).unwrap();
        let relu = plan.nodes.iter().find(|n| matches!(n, Node::Relu { .. })).unwrap();
        assert_eq!(relu.input(), plan.content[0].act);
        assert!(matches!(plan.storage[relu.output()], Storage::Scratch(_)));
        assert_eq!(plan.mask_words(&plan.nodes[plan.nodes.iter().position(|n| n == relu).unwrap() - 1]), None);
    }

    /// The GPU memory of the default method at 512 x 512 (every buffer the executor allocates, as
    /// the plan counts them; the GPU tests check that count against the executor's buffers), plus
    /// Adam's two moments: at most 60 % of PyTorch's 714.4 MiB, and under a bound close to what it is,
    /// so that it cannot grow unnoticed.
    #[test]
    fn vgg19_at_512_stays_within_its_memory_bound() {
        let plan = vgg_plan(512, 512);
        let bytes = plan.gpu_bytes();
        let adam = 2 * 4 * plan.acts[0].len() as u64;
        let mib = (bytes.total() + adam) as f64 / (1u64 << 20) as f64;
        assert!(mib <= 360.0, "{mib:.1} MiB: {bytes:?}");
        assert!(mib <= 0.6 * 714.4);
        // Where it goes: weights, kept features (the image, relu1_1..5_1, relu4_2), the two shared
        // scratch buffers of 64 MiB, masks and codes, the rest.
        let part = |b: u64| b as f64 / (1u64 << 20) as f64;
        assert!((part(bytes.kept) - 133.0).abs() < 0.1, "{bytes:?}");
        assert_eq!(part(bytes.scratch), 128.0);
        assert!(part(bytes.masks_and_codes) < 12.0, "{bytes:?}");
    }

    /// Masks shrink with every pool by a 2x2 average (floor), whatever the pooling; each style
    /// layer gets one term per region that covers something there, scaled by its coverage.
    #[test]
    fn masks_are_average_pooled_at_every_pool() {
        assert_eq!(pool_mask(&[1.0, 0.0, 1.0, 7.0, 0.0, 0.0, 1.0, 7.0, 9.0, 9.0, 9.0, 9.0], 3, 4), vec![0.25, 4.0]);
        let (h, w) = (37, 29);
        let left: Vec<f32> = (0..h * w).map(|i| if i % w < 10 { 1.0 } else { 0.0 }).collect();
        // White only in the last row, which the first pool drops (37 is odd).
        let last_row: Vec<f32> = (0..h * w).map(|i| if i / w == h - 1 { 1.0 } else { 0.0 }).collect();
        for pooling in [Pooling::Max, Pooling::Avg] {
            let losses = LossLayers { masks: vec![left.clone(), last_row.clone()], pooling, ..LossLayers::default() };
            let plan = Plan::new(&VGG19, &vgg_widths(), h, w, &losses).unwrap();
            let unmasked =
                Plan::new(&VGG19, &vgg_widths(), h, w, &LossLayers { pooling, ..LossLayers::default() }).unwrap();
            // relu1_1 for both regions, relu2_1..relu5_1 for the left one only.
            let terms: Vec<(&str, usize)> =
                plan.style.iter().map(|t| (t.layer.as_str(), t.mask.as_ref().unwrap().region)).collect();
            assert_eq!(
                terms,
                [("relu1_1", 0), ("relu1_1", 1), ("relu2_1", 0), ("relu3_1", 0), ("relu4_1", 0), ("relu5_1", 0)]
            );
            let mut expected: Vec<f64> = left.iter().map(|&v| v as f64).collect();
            let (mut mh, mut mw) = (h, w);
            for term in plan.style.iter().filter(|t| t.mask.as_ref().unwrap().region == 0) {
                let s = plan.acts[term.act];
                while (mh, mw) != (s.height, s.width) {
                    expected = pool_mask(&expected, mh, mw);
                    (mh, mw) = (mh / 2, mw / 2);
                }
                let mask = term.mask.as_ref().unwrap();
                assert_eq!(mask.values, expected, "{}", term.layer);
                let coverage = expected.iter().map(|v| v * v).sum::<f64>() / expected.len() as f64;
                assert!((mask.coverage - coverage).abs() < 1e-15 && coverage > 0.0);
                let plain = unmasked.style.iter().find(|t| t.layer == term.layer).unwrap();
                assert!((term.scale - coverage * plain.scale).abs() <= 1e-15 * plain.scale);
            }
        }
        // `resized` (for `check_fits`) resamples the masks to the new size.
        let plan = Plan::new(&VGG19, &vgg_widths(), h, w, &LossLayers { masks: vec![left], ..LossLayers::default() });
        let small = plan.unwrap().resized(32).unwrap();
        let (sh, sw) = (small.acts[0].height, small.acts[0].width);
        assert_eq!((sh, sw), (32, 25));
        let row: Vec<f32> = small.losses.masks[0][..sw].to_vec();
        assert_eq!(row, (0..sw).map(|x| if x * w / sw < 10 { 1.0 } else { 0.0 }).collect::<Vec<f32>>());
        let bad = LossLayers { masks: vec![vec![1.0; 10]], ..LossLayers::default() };
        assert!(matches!(Plan::new(&VGG19, &vgg_widths(), h, w, &bad), Err(NetError::BadSize(_))));
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
