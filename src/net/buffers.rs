//! Every GPU buffer an executor of a plan holds, listed by the plan: `Executor::new` allocates
//! from this list and `Plan::gpu_bytes` sums it, so what a plan reports is what its executor holds.

use super::plan::{LossTerm, Plan, Storage};
use crate::ops::reduce;

/// What a buffer holds: the groups `GpuBytes` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BufferKind {
    /// Convolution weights and biases.
    Weights,
    /// An activation with a buffer of its own (`Storage::Kept`).
    Kept,
    /// A shared scratch buffer: transient activations, then the backward's two gradients.
    Scratch,
    /// The bit mask of a fused ReLU or the arg-max codes of a max-pool, for the backward.
    MasksAndCodes,
    /// Everything else: the image gradient, the RGB image, targets, Grams, losses, reductions.
    Other,
}

/// One GPU buffer: the label it is allocated with, its values (f32, or u32 words for masks and
/// codes) and its group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BufferSpec {
    pub label: String,
    pub len: usize,
    pub kind: BufferKind,
}

impl BufferSpec {
    fn new(label: impl Into<String>, len: usize, kind: BufferKind) -> Self {
        Self { label: label.into(), len, kind }
    }

    fn other(label: impl Into<String>, len: usize) -> Self {
        Self::new(label, len, BufferKind::Other)
    }

    /// Bytes it takes on the GPU (`Context::buffer` allocates at least one value).
    pub fn bytes(&self) -> u64 {
        self.len.max(1) as u64 * 4
    }
}

/// The GPU buffers of an executor of one plan, by role (`Plan::buffers`). Per-node lists are
/// indexed like `Plan::nodes`, per-activation ones like `Plan::acts`, per-term ones like
/// `Plan::content` and `Plan::style`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Buffers {
    /// Per convolution of the plan: its weight and its bias, uploaded from the host weights.
    pub convs: Vec<[BufferSpec; 2]>,
    /// RGB in [0, 1], CHW: where images are uploaded and results read back.
    pub rgb: BufferSpec,
    /// `Plan::scratch`, one buffer each.
    pub scratch: Vec<BufferSpec>,
    /// Per activation: its own buffer when kept, None when it lives in a scratch buffer.
    pub acts: Vec<Option<BufferSpec>>,
    /// dL/d(image), a buffer of its own so that it outlives the next forward pass.
    pub image_grad: BufferSpec,
    /// Per node: the mask of a fused ReLU, the arg-max codes of a max-pool.
    pub masks: Vec<Option<BufferSpec>>,
    pub codes: Vec<Option<BufferSpec>>,
    /// Partial sums of every Gram forward, shared by them all; None without style terms.
    pub gram_partials: Option<BufferSpec>,
    /// Each term's own gradient under `--normalize-gradients`, one term after the other.
    pub term_grad: Option<BufferSpec>,
    /// Per content term: the features it compares against.
    pub content_targets: Vec<BufferSpec>,
    /// Per style term: the Gram of the style image.
    pub style_grams: Vec<BufferSpec>,
    /// One value per loss slot (`Plan::loss_slots`).
    pub losses: BufferSpec,
    /// Per style term: a masked term's column weights, uploaded from its mask.
    pub column_weights: Vec<Option<BufferSpec>>,
    /// Per style term: the Gram of the image being optimized, then the gradient with respect to it.
    pub image_grams: Vec<BufferSpec>,
    pub gram_grads: Vec<BufferSpec>,
    /// Per content then style term, under `--normalize-gradients`: its gradient's L1 norm and the
    /// reciprocal scale.
    pub content_norms: Vec<Option<BufferSpec>>,
    pub style_norms: Vec<Option<BufferSpec>>,
    /// Block sums of the reductions (losses, L1 norms) that take more than one pass, one entry
    /// per reduction for all its passes: the ops allocate these themselves while the training
    /// step is recorded and keep them in it.
    pub reductions: Vec<BufferSpec>,
    /// Under `Padding::Replicate`: the padded image (then its gradient) and the first
    /// convolution's padded output (then the gradient embedded in it); None otherwise.
    pub padded: Option<[BufferSpec; 2]>,
}

fn some(specs: &[Option<BufferSpec>]) -> impl Iterator<Item = &BufferSpec> {
    specs.iter().flatten()
}

impl Buffers {
    /// Every buffer of the list, each once.
    pub fn iter(&self) -> impl Iterator<Item = &BufferSpec> {
        self.convs
            .iter()
            .flatten()
            .chain([&self.rgb, &self.image_grad, &self.losses])
            .chain(&self.scratch)
            .chain(some(&self.acts))
            .chain(some(&self.masks))
            .chain(some(&self.codes))
            .chain(&self.gram_partials)
            .chain(&self.term_grad)
            .chain(&self.content_targets)
            .chain(&self.style_grams)
            .chain(some(&self.column_weights))
            .chain(&self.image_grams)
            .chain(&self.gram_grads)
            .chain(some(&self.content_norms))
            .chain(some(&self.style_norms))
            .chain(&self.reductions)
            .chain(self.padded.iter().flatten())
    }

    /// Bytes of the list by group.
    pub fn bytes(&self) -> GpuBytes {
        let mut bytes = GpuBytes::default();
        for spec in self.iter() {
            *match spec.kind {
                BufferKind::Weights => &mut bytes.weights,
                BufferKind::Kept => &mut bytes.kept,
                BufferKind::Scratch => &mut bytes.scratch,
                BufferKind::MasksAndCodes => &mut bytes.masks_and_codes,
                BufferKind::Other => &mut bytes.other,
            } += spec.bytes();
        }
        bytes
    }
}

/// Bytes of the GPU buffers an `Executor` of a plan allocates, by purpose (`Plan::gpu_bytes`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GpuBytes {
    /// Convolution weights and biases.
    pub weights: u64,
    /// Activations with a buffer of their own (`Storage::Kept`).
    pub kept: u64,
    /// The shared scratch buffers: transient activations, then the backward's two gradients.
    pub scratch: u64,
    /// Bit masks of the fused ReLUs and arg-max codes of the max-pools, for the backward.
    pub masks_and_codes: u64,
    /// The image gradient, the RGB buffer, content targets, Gram matrices and their scratch, loss
    /// slots and reductions, and the per-term gradients of `--normalize-gradients`.
    pub other: u64,
}

impl GpuBytes {
    pub fn total(&self) -> u64 {
        self.weights + self.kept + self.scratch + self.masks_and_codes + self.other
    }
}

impl Plan {
    /// Every GPU buffer an `Executor` of this plan holds (its own and its recorded steps').
    pub fn buffers(&self) -> Buffers {
        let image = self.acts[0].len();
        let normalize = self.losses.normalize_gradients;
        // Labelled by kind, layer and region: one label, one buffer (`SharedBuffers` finds them by it).
        let norm = |kind: &str, t: &LossTerm| {
            let region = t.mask.as_ref().map_or(String::new(), |m| format!(" region {}", m.region));
            normalize.then(|| BufferSpec::other(format!("gradient L1 norm {kind} {}{region}", t.layer), 2))
        };
        Buffers {
            convs: self.conv_buffers(),
            rgb: BufferSpec::other("rgb image", image),
            scratch: self
                .scratch
                .iter()
                .enumerate()
                .map(|(i, &len)| {
                    BufferSpec::new(format!("scratch {i} (activations, then gradients)"), len, BufferKind::Scratch)
                })
                .collect(),
            acts: self
                .acts
                .iter()
                .zip(&self.storage)
                .enumerate()
                .map(|(i, (shape, storage))| {
                    (*storage == Storage::Kept)
                        .then(|| BufferSpec::new(format!("activation {i}"), shape.len(), BufferKind::Kept))
                })
                .collect(),
            image_grad: BufferSpec::other("image gradient", image),
            masks: self.node_words("ReLU mask", |node| self.mask_words(node)),
            codes: self.node_words("max-pool codes", |node| self.codes_words(node)),
            gram_partials: (!self.style.is_empty())
                .then(|| BufferSpec::other("gram partials", self.gram_partials_len())),
            term_grad: normalize.then(|| BufferSpec::other("term gradient", self.term_gradient_len())),
            content_targets: self
                .content
                .iter()
                .map(|t| BufferSpec::other(format!("content target {}", t.layer), self.acts[t.act].len()))
                .collect(),
            style_grams: self.style_gram_buffers("style gram"),
            losses: BufferSpec::other("losses", self.loss_slots()),
            column_weights: self
                .style
                .iter()
                .map(|t| {
                    let label = |m: &super::TermMask| format!("mask weights {} region {}", t.layer, m.region);
                    t.mask.as_ref().map(|m| BufferSpec::other(label(m), self.gram_shape(t.act).n))
                })
                .collect(),
            image_grams: self.style_gram_buffers("target gram"),
            gram_grads: self.style_gram_buffers("gram gradient"),
            content_norms: self.content.iter().map(|t| norm("content", t)).collect(),
            style_norms: self.style.iter().map(|t| norm("style", t)).collect(),
            reductions: self.reduction_buffers(),
            padded: self.replicated_shapes().map(|(image, output)| {
                [BufferSpec::other("padded image", image.len()), BufferSpec::other("padded conv1_1", output.len())]
            }),
        }
    }

    /// Bytes of every buffer an `Executor` of this plan allocates (`Plan::buffers`, summed):
    /// checked against the executor's `allocated_bytes` by the tests.
    pub fn gpu_bytes(&self) -> GpuBytes {
        self.buffers().bytes()
    }

    fn conv_buffers(&self) -> Vec<[BufferSpec; 2]> {
        let spec =
            |i: usize, part: &str, len: usize| BufferSpec::new(format!("conv{i}.{part}"), len, BufferKind::Weights);
        self.conv_widths
            .iter()
            .enumerate()
            .map(|(i, &(cin, cout))| [spec(i, "weight", cout * cin * 9), spec(i, "bias", cout)])
            .collect()
    }

    fn node_words(&self, what: &str, words: impl Fn(&super::Node) -> Option<usize>) -> Vec<Option<BufferSpec>> {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, node)| {
                words(node).map(|len| BufferSpec::new(format!("{what} of node {i}"), len, BufferKind::MasksAndCodes))
            })
            .collect()
    }

    /// One C x C buffer per style term.
    fn style_gram_buffers(&self, what: &str) -> Vec<BufferSpec> {
        self.style
            .iter()
            .map(|t| {
                let label = match &t.mask {
                    Some(mask) => format!("{what} {} region {}", t.layer, mask.region),
                    None => format!("{what} {}", t.layer),
                };
                BufferSpec::other(label, self.gram_shape(t.act).gram_len())
            })
            .collect()
    }

    /// What the training step's reductions allocate: each loss over its features or Gram, each
    /// `--normalize-gradients` L1 norm over a term's gradient, the total variation over the image.
    /// A reduction of a single block needs no buffer.
    fn reduction_buffers(&self) -> Vec<BufferSpec> {
        let normalize = self.losses.normalize_gradients;
        let mut sums: Vec<(String, usize)> = Vec::new();
        for term in &self.content {
            let len = self.acts[term.act].len();
            sums.push((format!("content loss {}", term.layer), len));
            if normalize {
                sums.push((format!("gradient L1 norm {}", term.layer), len));
            }
        }
        for term in &self.style {
            sums.push((format!("style loss {}", term.layer), self.gram_shape(term.act).gram_len()));
            if normalize {
                sums.push((format!("gradient L1 norm {}", term.layer), self.acts[term.act].len()));
            }
        }
        if self.has_tv() {
            sums.push(("total variation".to_string(), self.acts[0].len()));
        }
        sums.into_iter()
            .map(|(what, len)| BufferSpec::other(format!("block sums of {what}"), reduce::scratch_len(len)))
            .filter(|spec| spec.len > 0)
            .collect()
    }
}
