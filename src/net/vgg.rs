//! The networks a run can use (`Model`: VGG-19 and VGG-16, torchvision's and the Caffe
//! conversions), each `features` up to relu5_1 as torchvision builds it, described as data, and
//! the host-side weights of one convolution. Pure data: the weight loaders (`crate::weights`) read
//! it as well as the network, so it names nothing above `ops` (whose `Preprocess` it names).

use crate::ops::normalize::Preprocess;

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

/// torchvision's `vgg16().features[0..=25]` (configuration D: three convolutions in blocks 3 and
/// 4), through relu5_1. neural-style-pt's Caffe VGG-16 has the same `features`.
pub const VGG16: [LayerDef; 26] = [
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
    pool(16, "pool3"),
    conv(17, "conv4_1"),
    relu(18, "relu4_1"),
    conv(19, "conv4_2"),
    relu(20, "relu4_2"),
    conv(21, "conv4_3"),
    relu(22, "relu4_3"),
    pool(23, "pool4"),
    conv(24, "conv5_1"),
    relu(25, "relu5_1"),
];

/// torchvision indices in `features` of the table's convolutions, in order (`features.{i}.weight`).
pub const VGG19_CONV_INDICES: [usize; VGG19_WIDTHS.len()] = conv_indices(&VGG19);
/// The same for VGG-16.
pub const VGG16_CONV_INDICES: [usize; VGG16_WIDTHS.len()] = conv_indices(&VGG16);

/// The `Conv` entries of `table`; fails to compile if their number is not `N` (the widths').
const fn conv_indices<const N: usize>(table: &[LayerDef]) -> [usize; N] {
    let mut indices = [0; N];
    let (mut layer, mut conv) = (0, 0);
    while layer < table.len() {
        if matches!(table[layer].kind, LayerKind::Conv) {
            indices[conv] = table[layer].index;
            conv += 1;
        }
        layer += 1;
    }
    assert!(conv == N, "a widths table has one width per convolution of its layer table");
    indices
}

/// Output widths of VGG-19's convolutions, in order.
pub const VGG19_WIDTHS: [usize; 13] = [64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512];
/// Output widths of VGG-16's convolutions, in order.
pub const VGG16_WIDTHS: [usize; 11] = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512];

/// A network a run can use (`--model`): its layer table, the widths and `features` indices of its
/// convolutions, how an image becomes its input, and its weights file (the manifest entry of the
/// same name).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Model {
    /// torchvision's VGG-19 (`vgg19-dcbb9e9d.pth`), RGB in [0, 1] with ImageNet's mean and std:
    /// the method's network.
    #[default]
    Vgg19,
    /// torchvision's VGG-16 (`vgg16-397923af.pth`), preprocessed as VGG-19.
    Vgg16,
    /// The original Caffe VGG-19 (Simonyan & Zisserman) converted to PyTorch's layout, as
    /// jcjohnson/neural-style and neural-style-pt use it (`vgg19-d01eb7cb.pth`): BGR x 255 minus
    /// the mean pixel.
    Vgg19Caffe,
    /// The Caffe VGG-16 likewise (`vgg16-00b39a1b.pth`).
    Vgg16Caffe,
}

impl Model {
    /// Every model, the default first.
    pub const ALL: [Model; 4] = [Model::Vgg19, Model::Vgg16, Model::Vgg19Caffe, Model::Vgg16Caffe];

    /// The name `--model` takes, which is also its manifest entry's.
    pub fn name(self) -> &'static str {
        match self {
            Model::Vgg19 => "vgg19",
            Model::Vgg16 => "vgg16",
            Model::Vgg19Caffe => "vgg19-caffe",
            Model::Vgg16Caffe => "vgg16-caffe",
        }
    }

    /// The model named `name` (as `name()` writes it), if any.
    pub fn from_name(name: &str) -> Option<Model> {
        Model::ALL.into_iter().find(|m| m.name() == name)
    }

    /// One line on what it is, for `stylize models` and `--help`.
    pub fn description(self) -> &'static str {
        match self {
            Model::Vgg19 => "torchvision's VGG-19, RGB in [0, 1] with ImageNet's mean and std (the method's)",
            Model::Vgg16 => "torchvision's VGG-16, preprocessed as vgg19",
            Model::Vgg19Caffe => "the Caffe VGG-19 of jcjohnson/neural-style, BGR x 255 minus the mean pixel",
            Model::Vgg16Caffe => "the Caffe VGG-16 of jcjohnson/neural-style, preprocessed as vgg19-caffe",
        }
    }

    /// Its layers, through relu5_1.
    pub fn layers(self) -> &'static [LayerDef] {
        match self.architecture() {
            Architecture::Vgg19 => &VGG19,
            Architecture::Vgg16 => &VGG16,
        }
    }

    /// Output widths of its convolutions, in order (a file's own widths may be smaller: test networks).
    pub fn widths(self) -> &'static [usize] {
        match self.architecture() {
            Architecture::Vgg19 => &VGG19_WIDTHS,
            Architecture::Vgg16 => &VGG16_WIDTHS,
        }
    }

    /// `features` indices of its convolutions, in order.
    pub fn conv_indices(self) -> &'static [usize] {
        match self.architecture() {
            Architecture::Vgg19 => &VGG19_CONV_INDICES,
            Architecture::Vgg16 => &VGG16_CONV_INDICES,
        }
    }

    /// How an RGB image in [0, 1] becomes the network's input (and back).
    pub fn preprocess(self) -> Preprocess {
        match self {
            Model::Vgg19 | Model::Vgg16 => Preprocess::TORCHVISION,
            Model::Vgg19Caffe | Model::Vgg16Caffe => Preprocess::CAFFE,
        }
    }

    /// Whether `other` has the same layers and convolutions (the weights of one load as the
    /// other's: only the preprocessing and the file's numbers differ).
    pub fn same_layers(self, other: Model) -> bool {
        self.architecture() == other.architecture()
    }

    fn architecture(self) -> Architecture {
        match self {
            Model::Vgg19 | Model::Vgg19Caffe => Architecture::Vgg19,
            Model::Vgg16 | Model::Vgg16Caffe => Architecture::Vgg16,
        }
    }
}

impl std::fmt::Display for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The layer tables there are: the Caffe conversions share torchvision's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Architecture {
    Vgg19,
    Vgg16,
}

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
        assert_eq!(VGG16_CONV_INDICES, [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24]);
        for table in [&VGG19[..], &VGG16[..]] {
            assert!(table.iter().all(|l| l.index == table.iter().position(|m| m == l).unwrap()));
        }
    }

    /// torchvision's `make_layers` over its configurations 'D' (VGG-16) and 'E' (VGG-19), with
    /// neural-style's names (convB_I, reluB_I, poolB), cut after relu5_1: the tables above are
    /// exactly what it builds, index by index.
    #[test]
    fn tables_are_what_torchvisions_make_layers_builds() {
        const M: usize = 0;
        let cfg_d = [64, 64, M, 128, 128, M, 256, 256, 256, M, 512, 512, 512, M, 512, 512, 512, M];
        let cfg_e = [64, 64, M, 128, 128, M, 256, 256, 256, 256, M, 512, 512, 512, 512, M, 512, 512, 512, 512, M];
        let make_layers = |cfg: &[usize]| {
            let (mut layers, mut widths, mut block, mut within) = (Vec::new(), Vec::new(), 1, 1);
            for &v in cfg {
                if v == M {
                    layers.push((format!("pool{block}"), LayerKind::MaxPool));
                    (block, within) = (block + 1, 1);
                } else {
                    layers.push((format!("conv{block}_{within}"), LayerKind::Conv));
                    layers.push((format!("relu{block}_{within}"), LayerKind::Relu));
                    widths.push(v);
                    within += 1;
                }
            }
            let last = layers.iter().position(|(n, _)| n == "relu5_1").unwrap();
            layers.truncate(last + 1);
            widths.truncate(layers.iter().filter(|(_, k)| *k == LayerKind::Conv).count());
            (layers, widths)
        };
        for (model, cfg) in [(Model::Vgg16, &cfg_d[..]), (Model::Vgg19, &cfg_e[..])] {
            let (layers, widths) = make_layers(cfg);
            let table: Vec<(String, LayerKind)> = model.layers().iter().map(|l| (l.name.to_string(), l.kind)).collect();
            assert_eq!(table, layers, "{model}");
            assert_eq!(model.widths(), &widths[..], "{model}");
            let convs: Vec<usize> =
                model.layers().iter().filter(|l| l.kind == LayerKind::Conv).map(|l| l.index).collect();
            assert_eq!(model.conv_indices(), &convs[..], "{model}");
        }
    }

    #[test]
    fn models_by_name_and_their_tables() {
        for model in Model::ALL {
            assert_eq!(Model::from_name(model.name()), Some(model));
            assert!(model.layers().iter().any(|l| l.name == DEFAULT_CONTENT_LAYER), "{model}");
            for (layer, _) in DEFAULT_STYLE_LAYERS {
                assert!(model.layers().iter().any(|l| l.name == layer), "{model} {layer}");
            }
        }
        assert_eq!(Model::from_name("vgg19_caffe"), None);
        assert_eq!(Model::default(), Model::Vgg19);
        assert!(Model::Vgg19.same_layers(Model::Vgg19Caffe) && !Model::Vgg19.same_layers(Model::Vgg16));
        assert_eq!(Model::Vgg16Caffe.preprocess(), Preprocess::CAFFE);
        assert_eq!(Model::Vgg16.preprocess(), Preprocess::TORCHVISION);
    }
}
