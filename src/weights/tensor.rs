//! Element types, decoding of raw little-endian bytes, and strided gathering.

use super::error::Problem;

/// Element type of a stored tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dtype {
    F32,
    F64,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl Dtype {
    /// Bytes per element.
    pub(crate) fn size(self) -> usize {
        match self {
            Dtype::F64 | Dtype::I64 => 8,
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::F16 | Dtype::BF16 | Dtype::I16 => 2,
            Dtype::I8 | Dtype::U8 | Dtype::Bool => 1,
        }
    }

    /// The PyTorch name of the type, for messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "float32",
            Dtype::F64 => "float64",
            Dtype::F16 => "float16",
            Dtype::BF16 => "bfloat16",
            Dtype::I64 => "int64",
            Dtype::I32 => "int32",
            Dtype::I16 => "int16",
            Dtype::I8 => "int8",
            Dtype::U8 => "uint8",
            Dtype::Bool => "bool",
        }
    }

    /// The type of a `torch.<Name>Storage` class, if it is one.
    pub(crate) fn from_storage_class(name: &str) -> Option<Dtype> {
        Some(match name {
            "FloatStorage" => Dtype::F32,
            "DoubleStorage" => Dtype::F64,
            "HalfStorage" => Dtype::F16,
            "BFloat16Storage" => Dtype::BF16,
            "LongStorage" => Dtype::I64,
            "IntStorage" => Dtype::I32,
            "ShortStorage" => Dtype::I16,
            "CharStorage" => Dtype::I8,
            "ByteStorage" => Dtype::U8,
            "BoolStorage" => Dtype::Bool,
            _ => return None,
        })
    }
}

/// Decodes little-endian floating-point bytes to f32; integer types are refused naming `key`.
pub(crate) fn decode_f32(bytes: &[u8], dtype: Dtype, key: &str) -> Result<Vec<f32>, Problem> {
    let values = match dtype {
        Dtype::F32 => bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Dtype::F64 => bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
        Dtype::F16 => bytes.chunks_exact(2).map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]]))).collect(),
        Dtype::BF16 => {
            bytes.chunks_exact(2).map(|c| f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16)).collect()
        }
        other => {
            return Err(Problem::BadDtype { key: key.to_string(), dtype: other.name().to_string() });
        }
    };
    Ok(values)
}

/// IEEE half precision to single precision.
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let mant = u32::from(h & 0x3ff);
    let bits = match (exp, mant) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: value = m * 2^-24.
            let v = m as f32 * (1.0 / 16_777_216.0);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// Where a tensor's elements lie in its storage, checked against the storage length.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    /// Number of elements of the tensor.
    pub numel: usize,
    /// Number of storage elements from the tensor's first one to its last one, inclusive.
    pub span: usize,
}

/// Checks shape and stride and returns how many elements the tensor has and spans.
///
/// Overlapping strides (more elements than span, as from a zero stride) are refused so that
/// the output size is always bounded by data really present in the file.
pub(crate) fn layout(shape: &[usize], stride: &[usize], key: &str) -> Result<Layout, Problem> {
    let bad = |what: &str| Problem::Malformed(format!("{key}: {what}"));
    if shape.len() != stride.len() {
        return Err(bad("shape and stride differ in length"));
    }
    let numel = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or_else(|| bad("shape too large"))?;
    if numel == 0 {
        return Ok(Layout { numel, span: 0 });
    }
    let last = shape
        .iter()
        .zip(stride)
        .try_fold(0usize, |acc, (&d, &s)| acc.checked_add((d - 1).checked_mul(s)?))
        .ok_or_else(|| bad("strides too large"))?;
    let span = last + 1;
    if numel > span {
        return Err(bad("overlapping strides"));
    }
    Ok(Layout { numel, span })
}

/// Row-major strides of a shape.
pub(crate) fn row_major_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1].saturating_mul(shape[i + 1]);
    }
    strides
}

/// Column-major (Fortran) strides of a shape.
pub(crate) fn column_major_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1usize; shape.len()];
    for i in 1..shape.len() {
        strides[i] = strides[i - 1].saturating_mul(shape[i - 1]);
    }
    strides
}

/// Copies a strided tensor out of `src` (which starts at the tensor's first element) into
/// row-major order. `layout` must come from [`layout`] with the same shape and stride, and
/// `src` must hold at least `layout.span` elements.
pub(crate) fn gather(src: &[f32], shape: &[usize], stride: &[usize], layout: &Layout) -> Vec<f32> {
    if layout.numel == 0 {
        return Vec::new();
    }
    if stride == row_major_strides(shape).as_slice() {
        return src[..layout.numel].to_vec();
    }
    let mut out = Vec::with_capacity(layout.numel);
    let mut index = vec![0usize; shape.len()];
    for _ in 0..layout.numel {
        let at: usize = index.iter().zip(stride).map(|(i, s)| i * s).sum();
        out.push(src.get(at).copied().unwrap_or(f32::NAN));
        for axis in (0..shape.len()).rev() {
            index[axis] += 1;
            if index[axis] < shape[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gather_follows_strides() {
        // A 2x3 tensor stored transposed (column-major): storage [a00 a10 a01 a11 a02 a12].
        let storage = [0.0, 3.0, 1.0, 4.0, 2.0, 5.0];
        let (shape, stride) = ([2, 3], [1, 2]);
        let layout = layout(&shape, &stride, "t").unwrap();
        assert_eq!((layout.numel, layout.span), (6, 6));
        assert_eq!(gather(&storage, &shape, &stride, &layout), vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        // Every other element.
        let layout = super::layout(&[3], &[2], "t").unwrap();
        assert_eq!(layout.span, 5);
        assert_eq!(gather(&storage, &[3], &[2], &layout), vec![0.0, 1.0, 2.0]);
    }

    #[test]
    fn layouts_that_overlap_or_overflow_are_refused() {
        assert!(layout(&[1 << 40], &[0], "t").is_err());
        assert!(layout(&[usize::MAX, 2], &[1, 1], "t").is_err());
        assert!(layout(&[2, 2], &[usize::MAX, 1], "t").is_err());
        assert!(layout(&[2], &[1, 1], "t").is_err());
        assert_eq!(layout(&[0, 5], &[5, 1], "t").unwrap().span, 0);
        assert_eq!(layout(&[], &[], "t").unwrap().numel, 1);
    }

    #[test]
    fn half_and_bfloat16_decode() {
        let halves: Vec<u8> =
            [0x3c00u16, 0xc000, 0x0001, 0x7c00, 0x0000].iter().flat_map(|h| h.to_le_bytes()).collect();
        let v = decode_f32(&halves, Dtype::F16, "h").unwrap();
        assert_eq!(&v[..2], &[1.0, -2.0]);
        assert_eq!(v[2], 2f32.powi(-24));
        assert_eq!(v[3], f32::INFINITY);
        assert_eq!(v[4], 0.0);
        let bf: Vec<u8> = 0x3f80u16.to_le_bytes().to_vec();
        assert_eq!(decode_f32(&bf, Dtype::BF16, "b").unwrap(), vec![1.0]);
        let err = decode_f32(&[0; 8], Dtype::I64, "n").unwrap_err();
        assert_eq!(err.to_string(), "n holds int64 values, expected float32");
    }
}
