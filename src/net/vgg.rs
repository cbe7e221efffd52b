//! VGG-19 `features` up to relu5_1, as torchvision builds it, described as data, and the host-side
//! weights of one of its convolutions. Pure data: the weight loaders (`crate::weights`) read it
//! as well as the network, so it names no other module.

/// One 3x3 convolution's weights on the host, as a weights file holds them and the executor
/// uploads them: `[out, in, 3, 3]` row-major and `[out]`.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvLayerWeights {
    pub in_channels: usize,
    pub out_channels: usize,
    /// Weights `[out, in, 3, 3]`, row-major.
    pub weight: Vec<f32>,
    /// Biases `[out]`.
    pub bias: Vec<f32>,
}

/// What one entry of `features` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerKind {
    /// 3x3 convolution, padding 1, with bias.
    Conv,
    Relu,
    /// 2x2 max-pool, stride 2.
    MaxPool,
}

/// One entry of the layer table: its torchvision index in `features` and the name the method uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerDef {
    pub index: usize,
    pub name: &'static str,
    pub kind: LayerKind,
}

const fn conv(index: usize, name: &'static str) -> LayerDef {
    LayerDef { index, name, kind: LayerKind::Conv }
}
const fn relu(index: usize, name: &'static str) -> LayerDef {
    LayerDef { index, name, kind: LayerKind::Relu }
}
const fn pool(index: usize, name: &'static str) -> LayerDef {
    LayerDef { index, name, kind: LayerKind::MaxPool }
}

/// torchvision's `vgg19().features[0..=29]`: everything the method reads, through relu5_1.
pub const VGG19: [LayerDef; 30] = [
    conv(0, "conv1_1"),
    relu(1, "relu1_1"),
    conv(2, "conv1_2"),
    relu(3, "relu1_2"),
    pool(4, "pool1"),
    conv(5, "conv2_1"),
    relu(6, "relu2_1"),
    conv(7, "conv2_2"),
    relu(8, "relu2_2"),
    pool(9, "pool2"),
    conv(10, "conv3_1"),
    relu(11, "relu3_1"),
    conv(12, "conv3_2"),
    relu(13, "relu3_2"),
    conv(14, "conv3_3"),
    relu(15, "relu3_3"),
    conv(16, "conv3_4"),
    relu(17, "relu3_4"),
    pool(18, "pool3"),
    conv(19, "conv4_1"),
    relu(20, "relu4_1"),
    conv(21, "conv4_2"),
    relu(22, "relu4_2"),
    conv(23, "conv4_3"),
    relu(24, "relu4_3"),
    conv(25, "conv4_4"),
    relu(26, "relu4_4"),
    pool(27, "pool4"),
    conv(28, "conv5_1"),
    relu(29, "relu5_1"),
];

/// torchvision indices in `features` of the table's convolutions, in order (`features.{i}.weight`).
pub const VGG19_CONV_INDICES: [usize; VGG19_WIDTHS.len()] = conv_indices();

/// The `Conv` entries of `VGG19`; fails to compile if their number is not `VGG19_WIDTHS.len()`.
const fn conv_indices() -> [usize; VGG19_WIDTHS.len()] {
    let mut indices = [0; VGG19_WIDTHS.len()];
    let (mut layer, mut conv) = (0, 0);
    while layer < VGG19.len() {
        if matches!(VGG19[layer].kind, LayerKind::Conv) {
            indices[conv] = VGG19[layer].index;
            conv += 1;
        }
        layer += 1;
    }
    assert!(conv == indices.len(), "VGG19_WIDTHS has one width per convolution of VGG19");
    indices
}

/// Output widths of VGG-19's convolutions, in order.
pub const VGG19_WIDTHS: [usize; 13] = [64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512];

/// The method's style layers and their weights (after the ReLU, as the original's in-place ReLU makes them).
pub const DEFAULT_STYLE_LAYERS: [(&str, f64); 5] =
    [("relu1_1", 1.0), ("relu2_1", 0.75), ("relu3_1", 0.2), ("relu4_1", 0.2), ("relu5_1", 0.2)];

/// The method's content layer.
pub const DEFAULT_CONTENT_LAYER: &str = "relu4_2";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv_indices_are_torchvisions() {
        assert_eq!(VGG19_CONV_INDICES, [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28]);
        assert!(VGG19.iter().all(|l| l.index == VGG19.iter().position(|m| m == l).unwrap()));
    }
}
