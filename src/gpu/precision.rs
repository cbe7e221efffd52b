//! Which arithmetic the products (convolutions, Grams) use: f32 throughout, or f16-rounded
//! operands with f32 accumulation ("mixed"), on matrix units where the adapter has them and
//! emulated with the same rounding where it does not.

use super::context::AdapterClass;

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
    /// f16 operands on the adapter's cooperative matrices (f16 -> f32, in the shape
    /// `AdapterSummary::matrix_shape` names).
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

/// How much slower a step ran on a CPU adapter's cooperative matrices than in f32, which is why
/// `auto` keeps CPU adapters on f32: `stylize bench` on Mesa 26.1.6's lavapipe (8x8x8, AVX2),
/// 6.2x and 5.8x at 64 px, 6.3x and 6.7x at 128 px in two rounds (BENCHMARKS.md, "Matrix units
/// on Mesa 26"). The matrix
/// kernels there are LLVM's scalar lowering of `coopMultiplyAdd` plus the staging barriers; the
/// f32 CPU kernels have neither.
pub const CPU_MATRIX_SLOWDOWN: &str = "6x";

/// The arithmetic chosen for one adapter, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrecisionChoice {
    pub requested: Precision,
    pub arithmetic: Arithmetic,
    /// One phrase, e.g. `mixed (emulated: the adapter has no cooperative matrices)`.
    pub reason: String,
}

impl PrecisionChoice {
    /// Resolves `requested` for an adapter whose cooperative matrices the mixed kernels use in
    /// `matrix` shape (`adapter_matrix_shape`), or that has none they can use. `auto` follows
    /// the measurements: mixed on a GPU's matrix units, f32 on a CPU adapter's
    /// (`CPU_MATRIX_SLOWDOWN`).
    pub fn resolve(requested: Precision, matrix: Option<MatrixShape>, class: AdapterClass) -> Self {
        let (arithmetic, reason) = match (requested, matrix) {
            (Precision::F32, _) => (Arithmetic::F32, "f32 (as asked)".to_string()),
            (Precision::Mixed, Some(shape)) => {
                (Arithmetic::MixedMatrix, format!("mixed f16/f32 on {} cooperative matrices (as asked)", shape.name()))
            }
            (Precision::Mixed, None) => (
                Arithmetic::MixedEmulated,
                "mixed f16/f32, emulated in f32 kernels (as asked; the adapter has no cooperative matrices, so this is slower than f32)".to_string(),
            ),
            (Precision::Auto, Some(shape)) if class == AdapterClass::Cpu => (
                Arithmetic::F32,
                format!(
                    "f32 (auto: on a CPU adapter its {} cooperative matrices measured {CPU_MATRIX_SLOWDOWN} slower than f32; --precision mixed runs them)",
                    shape.name()
                ),
            ),
            (Precision::Auto, Some(shape)) => (
                Arithmetic::MixedMatrix,
                format!("mixed f16/f32 on {} cooperative matrices (auto: the adapter has them)", shape.name()),
            ),
            (Precision::Auto, None) => (Arithmetic::F32, "f32 (auto: the adapter has no cooperative matrices)".to_string()),
        };
        Self { requested, arithmetic, reason }
    }

    /// Mixed arithmetic emulated in the f32 kernels, whatever the adapter has (tests).
    pub fn emulated() -> Self {
        Self::resolve(Precision::Mixed, None, AdapterClass::Gpu)
    }

    /// A one-line warning for the user where the choice deserves one (mixed emulated).
    pub fn warning(&self) -> Option<String> {
        (self.arithmetic == Arithmetic::MixedEmulated).then(|| {
            "--precision mixed is emulated on this adapter (no cooperative matrices): same rounding as matrix units, slower than f32".to_string()
        })
    }
}

/// A cooperative-matrix shape the mixed kernels are written for: M = N = K = `side`, f16 operands,
/// an f32 accumulator. WGSL makes a shape a type, so each has a prelude of its own
/// (`kernels/coop_16x16.wgsl`, `coop_8x8.wgsl`: the matrix types and their side) that the ops put
/// before the one source of each kernel (`ops::coop_shader`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatrixShape {
    /// 16x16x16: NVIDIA, AMD RDNA3, Intel Arc (through `VK_KHR_cooperative_matrix`).
    Side16,
    /// 8x8x8: Mesa's lavapipe on AVX2 CPUs, Apple GPUs' simdgroup matrices.
    Side8,
}

/// The shapes the mixed kernels have, largest first: `matrix_shape` takes the first one usable.
pub const KERNEL_MATRIX_SHAPES: [MatrixShape; 2] = [MatrixShape::Side16, MatrixShape::Side8];

/// Invocations in one workgroup of the cooperative-matrix kernels (`kernels/coop_tile.wgsl`).
pub const COOP_WORKGROUP: u32 = 32;

impl MatrixShape {
    pub fn side(self) -> u32 {
        match self {
            MatrixShape::Side16 => 16,
            MatrixShape::Side8 => 8,
        }
    }

    /// `16x16x16` or `8x8x8`.
    pub fn name(self) -> &'static str {
        match self {
            MatrixShape::Side16 => "16x16x16",
            MatrixShape::Side8 => "8x8x8",
        }
    }

    /// Squares of 2 x 2 matrices (quads) in one 32 x 32 tile: what the subgroups of a workgroup share out.
    pub fn quads(self) -> u32 {
        let across = COOP_WORKGROUP / (2 * self.side());
        across * across
    }

    /// Whether the kernels run this shape with subgroups of `min..=max` invocations: a workgroup
    /// of 32 must be whole subgroups (a subgroup at most 32 wide; `max` above 32, as AMD's 32/64,
    /// relies on the driver running a 32-invocation workgroup as one 32-wide subgroup), and must
    /// have no more subgroups than the tile has quads, so that every subgroup owns its own
    /// accumulators and none repeats another's.
    pub fn fits_subgroups(self, min: u32, _max: u32) -> bool {
        (1..=COOP_WORKGROUP).contains(&min)
            && COOP_WORKGROUP.is_multiple_of(min)
            && COOP_WORKGROUP / min <= self.quads()
    }

    fn listed_in(self, listed: &[wgpu::CooperativeMatrixProperties]) -> bool {
        let side = self.side();
        listed.iter().any(|p| {
            (p.m_size, p.n_size, p.k_size) == (side, side, side)
                && p.ab_type == wgpu::CooperativeScalarType::F16
                && p.cr_type == wgpu::CooperativeScalarType::F32
        })
    }
}

/// The shape the mixed kernels take on an adapter that lists `listed` and has subgroups of
/// `subgroups` = (min, max) invocations: the largest of `KERNEL_MATRIX_SHAPES` that it lists with
/// f16 operands and an f32 accumulator and that fits its subgroups.
pub fn matrix_shape(listed: &[wgpu::CooperativeMatrixProperties], subgroups: (u32, u32)) -> Option<MatrixShape> {
    KERNEL_MATRIX_SHAPES
        .into_iter()
        .find(|shape| shape.listed_in(listed) && shape.fits_subgroups(subgroups.0, subgroups.1))
}

/// One listed configuration as `stylize devices` prints it, e.g. `16x16x16 f16->f32`.
pub fn describe_matrix(p: &wgpu::CooperativeMatrixProperties) -> String {
    let name = |t: wgpu::CooperativeScalarType| format!("{t:?}").to_lowercase();
    let saturating = if p.saturating_accumulation { " (saturating)" } else { "" };
    format!("{}x{}x{} {}->{}{saturating}", p.m_size, p.n_size, p.k_size, name(p.ab_type), name(p.cr_type))
}

/// The features the cooperative-matrix kernels need besides a listed shape: the matrices, f16,
/// and subgroups (each subgroup finds its own quads from `subgroup_id`).
pub const MATRIX_FEATURES: wgpu::Features =
    wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX.union(wgpu::Features::SHADER_F16).union(wgpu::Features::SUBGROUP);

/// The shape the mixed kernels use on `adapter` (`matrix_shape`), where it also has every feature
/// of `MATRIX_FEATURES`; `None`: no matrix units the kernels can use.
pub fn adapter_matrix_shape(adapter: &wgpu::Adapter) -> Option<MatrixShape> {
    if !adapter.features().contains(MATRIX_FEATURES) {
        return None;
    }
    let info = adapter.get_info();
    matrix_shape(&adapter.cooperative_matrix_properties(), (info.subgroup_min_size, info.subgroup_max_size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_is_mixed_only_on_a_gpus_matrix_units() {
        let side16 = Some(MatrixShape::Side16);
        assert_eq!(
            PrecisionChoice::resolve(Precision::Auto, side16, AdapterClass::Gpu).arithmetic,
            Arithmetic::MixedMatrix
        );
        assert_eq!(PrecisionChoice::resolve(Precision::Auto, None, AdapterClass::Gpu).arithmetic, Arithmetic::F32);
        assert_eq!(
            PrecisionChoice::resolve(Precision::Mixed, None, AdapterClass::Gpu).arithmetic,
            Arithmetic::MixedEmulated
        );
        assert_eq!(PrecisionChoice::resolve(Precision::F32, side16, AdapterClass::Gpu).arithmetic, Arithmetic::F32);
        assert!(PrecisionChoice::resolve(Precision::Mixed, None, AdapterClass::Gpu).warning().is_some());
        assert!(PrecisionChoice::resolve(Precision::Auto, None, AdapterClass::Gpu).warning().is_none());
        let on_8x8 = PrecisionChoice::resolve(Precision::Mixed, Some(MatrixShape::Side8), AdapterClass::Gpu);
        assert!(on_8x8.reason.contains("8x8x8 cooperative matrices"), "{}", on_8x8.reason);
        // On a CPU adapter `auto` stays f32 even with matrix units (they measured slower there);
        // asked for, mixed still runs on them.
        let cpu_auto = PrecisionChoice::resolve(Precision::Auto, Some(MatrixShape::Side8), AdapterClass::Cpu);
        assert_eq!(cpu_auto.arithmetic, Arithmetic::F32);
        assert!(cpu_auto.reason.contains("CPU adapter") && cpu_auto.reason.contains("slower"), "{}", cpu_auto.reason);
        let cpu_mixed = PrecisionChoice::resolve(Precision::Mixed, Some(MatrixShape::Side8), AdapterClass::Cpu);
        assert_eq!(cpu_mixed.arithmetic, Arithmetic::MixedMatrix);
        assert_eq!(PrecisionChoice::resolve(Precision::Auto, None, AdapterClass::Cpu).arithmetic, Arithmetic::F32);
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
    fn the_kernels_take_the_largest_listed_shape_that_fits_the_subgroups() {
        use wgpu::CooperativeScalarType::{F16, F32, I32};
        // What NVIDIA lists (among others): 16x16x16 and 16x8x16, f16 and f32 accumulators; 32-wide subgroups.
        let nvidia = [config(16, 8, 16, F16, F32), config(16, 16, 16, F16, F16), config(16, 16, 16, F16, F32)];
        assert_eq!(matrix_shape(&nvidia, (32, 32)), Some(MatrixShape::Side16));
        // Mesa 26's lavapipe on AVX2: 8x8x8 with f16 and f32 accumulators, 8-wide subgroups (4 per
        // workgroup, one per quad of the 32 x 32 tile).
        let lavapipe = [config(8, 8, 8, F16, F16), config(8, 8, 8, F16, F32)];
        assert_eq!(matrix_shape(&lavapipe, (8, 8)), Some(MatrixShape::Side8));
        // Apple-like: 8x8 with 32-wide subgroups (one subgroup takes the 4 quads in turn).
        assert_eq!(matrix_shape(&lavapipe, (32, 32)), Some(MatrixShape::Side8));
        // Both listed: the larger; 16x16 with 8-wide subgroups would leave 3 of 4 subgroups
        // without a quad, so 8x8 is taken there instead.
        let both = [config(8, 8, 8, F16, F32), config(16, 16, 16, F16, F32)];
        assert_eq!(matrix_shape(&both, (32, 32)), Some(MatrixShape::Side16));
        assert_eq!(matrix_shape(&both, (8, 8)), Some(MatrixShape::Side8));
        assert_eq!(matrix_shape(&nvidia, (8, 8)), None);
        // Subgroups wider than a workgroup (64 only), 4-wide ones (8 subgroups for 4 quads).
        assert_eq!(matrix_shape(&both, (64, 64)), None);
        assert_eq!(matrix_shape(&lavapipe, (4, 4)), None);
        // AMD RDNA's 32..64 takes 16x16 (a 32-invocation workgroup runs as one wave32 subgroup).
        assert_eq!(matrix_shape(&both, (32, 64)), Some(MatrixShape::Side16));
        // An f16 accumulator only, integers only, another shape only, nothing: none the kernels have.
        assert_eq!(matrix_shape(&[config(16, 16, 16, F16, F16)], (32, 32)), None);
        assert_eq!(matrix_shape(&[config(16, 16, 16, I32, I32)], (32, 32)), None);
        assert_eq!(matrix_shape(&[config(16, 8, 16, F16, F32)], (32, 32)), None);
        assert_eq!(matrix_shape(&[], (32, 32)), None);
        assert_eq!(describe_matrix(&nvidia[2]), "16x16x16 f16->f32");
        let saturating = wgpu::CooperativeMatrixProperties { saturating_accumulation: true, ..nvidia[0] };
        assert_eq!(describe_matrix(&saturating), "16x8x16 f16->f32 (saturating)");
        assert_eq!((MatrixShape::Side16.quads(), MatrixShape::Side8.quads()), (1, 4));
    }
}
