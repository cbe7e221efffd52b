//! Which arithmetic the products (convolutions, Grams) use: f32 throughout, or f16-rounded
//! operands with f32 accumulation ("mixed"), on matrix units where the adapter has them and
//! emulated with the same rounding where it does not.

/// What the user asks for (`--precision`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// f32 operands and accumulation everywhere: the reference.
    F32,
    /// Every convolution and Gram product takes f16-rounded operands and accumulates in f32.
    Mixed,
    /// `Mixed` where the adapter has cooperative matrices (matrix units), else `F32`.
    #[default]
    Auto,
}

impl Precision {
    /// Parses `f32`, `mixed` or `auto`.
    pub fn parse(name: &str) -> Option<Self> {
        [Precision::F32, Precision::Mixed, Precision::Auto].into_iter().find(|p| p.name().eq_ignore_ascii_case(name))
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Mixed => "mixed",
            Precision::Auto => "auto",
        }
    }
}

/// What runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arithmetic {
    F32,
    /// f16-rounded operands, f32 accumulation, in the ordinary f32 kernels (round to nearest even
    /// done in the shader): for adapters without matrix units; slower than `F32`.
    MixedEmulated,
    /// f16 operands on the adapter's cooperative matrices (16x16x16 f16 -> f32).
    MixedMatrix,
}

impl Arithmetic {
    /// Whether products round their operands to f16.
    pub fn is_mixed(self) -> bool {
        self != Arithmetic::F32
    }

    /// `f32`, `mixed-emulated` or `mixed-matrix` (bench JSON).
    pub fn name(self) -> &'static str {
        match self {
            Arithmetic::F32 => "f32",
            Arithmetic::MixedEmulated => "mixed-emulated",
            Arithmetic::MixedMatrix => "mixed-matrix",
        }
    }
}

/// The arithmetic chosen for one adapter, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrecisionChoice {
    pub requested: Precision,
    pub arithmetic: Arithmetic,
    /// One phrase, e.g. `mixed (emulated: the adapter has no cooperative matrices)`.
    pub reason: String,
}

impl PrecisionChoice {
    /// Resolves `requested` for an adapter with (`matrix_units`) or without 16x16x16 f16 -> f32
    /// cooperative matrices.
    pub fn resolve(requested: Precision, matrix_units: bool) -> Self {
        let (arithmetic, reason) = match (requested, matrix_units) {
            (Precision::F32, _) => (Arithmetic::F32, "f32 (as asked)"),
            (Precision::Mixed, true) => (Arithmetic::MixedMatrix, "mixed f16/f32 on cooperative matrices (as asked)"),
            (Precision::Mixed, false) => (
                Arithmetic::MixedEmulated,
                "mixed f16/f32, emulated in f32 kernels (as asked; the adapter has no cooperative matrices, so this is slower than f32)",
            ),
            (Precision::Auto, true) => {
                (Arithmetic::MixedMatrix, "mixed f16/f32 on cooperative matrices (auto: the adapter has them)")
            }
            (Precision::Auto, false) => (Arithmetic::F32, "f32 (auto: the adapter has no cooperative matrices)"),
        };
        Self { requested, arithmetic, reason: reason.to_string() }
    }

    /// Mixed arithmetic emulated in the f32 kernels, whatever the adapter has (tests).
    pub fn emulated() -> Self {
        Self::resolve(Precision::Mixed, false)
    }

    /// A one-line warning for the user where the choice deserves one (mixed emulated).
    pub fn warning(&self) -> Option<String> {
        (self.arithmetic == Arithmetic::MixedEmulated).then(|| {
            "--precision mixed is emulated on this adapter (no cooperative matrices): same rounding as matrix units, slower than f32".to_string()
        })
    }
}

/// The cooperative-matrix shapes (M, N, K; f16 operands, f32 accumulator) the mixed kernels are
/// written for, in order of preference: `kernels/conv_coop.wgsl` and `gram_coop.wgsl` use 16x16x16.
/// A shape another adapter lists (8x8x8 on Apple GPUs, 16x8x16) needs kernels of its own first.
pub const KERNEL_MATRIX_SHAPES: [(u32, u32, u32); 1] = [(16, 16, 16)];

/// The shape the mixed kernels take from the configurations an adapter lists: the first of
/// `KERNEL_MATRIX_SHAPES` that it lists with f16 operands and an f32 accumulator.
pub fn matrix_shape(listed: &[wgpu::CooperativeMatrixProperties]) -> Option<(u32, u32, u32)> {
    KERNEL_MATRIX_SHAPES.into_iter().find(|&shape| {
        listed.iter().any(|p| {
            (p.m_size, p.n_size, p.k_size) == shape
                && p.ab_type == wgpu::CooperativeScalarType::F16
                && p.cr_type == wgpu::CooperativeScalarType::F32
        })
    })
}

/// One listed configuration as `stylize devices` prints it, e.g. `16x16x16 f16->f32`.
pub fn describe_matrix(p: &wgpu::CooperativeMatrixProperties) -> String {
    let name = |t: wgpu::CooperativeScalarType| format!("{t:?}").to_lowercase();
    let saturating = if p.saturating_accumulation { " (saturating)" } else { "" };
    format!("{}x{}x{} {}->{}{saturating}", p.m_size, p.n_size, p.k_size, name(p.ab_type), name(p.cr_type))
}

/// Whether `adapter` offers a cooperative-matrix shape the mixed kernels use (`matrix_shape`),
/// together with `enable f16;`.
pub fn has_matrix_units(adapter: &wgpu::Adapter) -> bool {
    let features = adapter.features();
    if !features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX | wgpu::Features::SHADER_F16) {
        return false;
    }
    matrix_shape(&adapter.cooperative_matrix_properties()).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_is_mixed_only_with_matrix_units() {
        assert_eq!(PrecisionChoice::resolve(Precision::Auto, true).arithmetic, Arithmetic::MixedMatrix);
        assert_eq!(PrecisionChoice::resolve(Precision::Auto, false).arithmetic, Arithmetic::F32);
        assert_eq!(PrecisionChoice::resolve(Precision::Mixed, false).arithmetic, Arithmetic::MixedEmulated);
        assert_eq!(PrecisionChoice::resolve(Precision::F32, true).arithmetic, Arithmetic::F32);
        assert!(PrecisionChoice::resolve(Precision::Mixed, false).warning().is_some());
        assert!(PrecisionChoice::resolve(Precision::Auto, false).warning().is_none());
        assert_eq!(Precision::parse("MIXED"), Some(Precision::Mixed));
        assert_eq!(Precision::parse("f16"), None);
        assert_eq!(Precision::default(), Precision::Auto);
    }

    fn config(
        m: u32,
        n: u32,
        k: u32,
        ab: wgpu::CooperativeScalarType,
        cr: wgpu::CooperativeScalarType,
    ) -> wgpu::CooperativeMatrixProperties {
        wgpu::CooperativeMatrixProperties {
            m_size: m,
            n_size: n,
            k_size: k,
            ab_type: ab,
            cr_type: cr,
            saturating_accumulation: false,
        }
    }

    #[test]
    fn the_kernels_take_a_listed_shape_they_are_written_for() {
        use wgpu::CooperativeScalarType::{F16, F32, I32};
        // What NVIDIA lists (among others): 16x16x16 and 16x8x16, f16 and f32 accumulators.
        let nvidia = [config(16, 8, 16, F16, F32), config(16, 16, 16, F16, F16), config(16, 16, 16, F16, F32)];
        assert_eq!(matrix_shape(&nvidia), Some((16, 16, 16)));
        // Apple's 8x8, an f16 accumulator only, integers only, nothing: none the kernels have.
        assert_eq!(matrix_shape(&[config(8, 8, 8, F16, F32)]), None);
        assert_eq!(matrix_shape(&[config(16, 16, 16, F16, F16)]), None);
        assert_eq!(matrix_shape(&[config(16, 16, 16, I32, I32)]), None);
        assert_eq!(matrix_shape(&[]), None);
        assert_eq!(describe_matrix(&nvidia[2]), "16x16x16 f16->f32");
        let saturating = wgpu::CooperativeMatrixProperties { saturating_accumulation: true, ..nvidia[0] };
        assert_eq!(describe_matrix(&saturating), "16x8x16 f16->f32 (saturating)");
    }
}
