//! Arrays too large for one buffer binding (the image and the optimizer's state of a tiled run,
//! the content features of the whole image): a C x H x W array stored as bands of whole rows,
//! band `b` holding rows `[r_b, r_{b+1})` of every channel as a C x rows x W array of its own,
//! each at most `Context::band_limit` bytes. Element-wise work runs band by band (the same rows
//! make the same split, so two arrays of one shape pair up band for band); rectangles are cut
//! out of (or written into) the bands they cross; host reads and writes gather and scatter the
//! rows. An array that fits one band is one plain buffer, bit for bit what it was before bands.

use std::ops::Range;

use super::ActShape;
use super::region::{Rect, copy_rect};
use crate::gpu::{Context, GpuError, Kernel, Step};

/// One band: rows `rows` of the whole array, in a buffer of its own of shape `shape`.
#[derive(Clone, Debug)]
pub struct Band {
    pub buffer: wgpu::Buffer,
    pub rows: Range<usize>,
    /// channels x rows.len() x width.
    pub shape: ActShape,
}

/// A C x H x W array of f32 in bands of whole rows (see the module documentation).
#[derive(Clone, Debug)]
pub struct Bands {
    shape: ActShape,
    bands: Vec<Band>,
}

/// The row ranges of `shape` in bands of at most `max_bytes` (every band as tall as allowed, the
/// last one what remains); an error when one row is already larger.
pub fn split_rows(what: &str, shape: ActShape, max_bytes: u64) -> Result<Vec<Range<usize>>, GpuError> {
    let row_bytes = (shape.channels * shape.width) as u64 * 4;
    if row_bytes > max_bytes {
        return Err(GpuError::TooLarge { what: format!("one row of {what}"), needed: row_bytes, limit: max_bytes });
    }
    let per_band = ((max_bytes / row_bytes.max(1)) as usize).clamp(1, shape.height.max(1));
    Ok((0..shape.height.max(1)).step_by(per_band).map(|start| start..(start + per_band).min(shape.height)).collect())
}

impl Bands {
    /// An array of `shape` in bands of at most `ctx.band_limit()` bytes (contents unspecified).
    pub fn new(ctx: &Context, label: &str, shape: ActShape) -> Result<Self, GpuError> {
        let rows = split_rows(label, shape, ctx.band_limit())?;
        Self::with_rows(ctx, label, shape, &rows)
    }

    /// As `new`, filled with zeros.
    pub fn zeros(ctx: &Context, label: &str, shape: ActShape) -> Result<Self, GpuError> {
        Ok(Self::new(ctx, label, shape)?.zeroed(ctx))
    }

    /// A new array split as `self` is (contents unspecified), so that the two pair up band for band.
    pub fn like(&self, ctx: &Context, label: &str) -> Result<Self, GpuError> {
        let rows: Vec<Range<usize>> = self.bands.iter().map(|b| b.rows.clone()).collect();
        Self::with_rows(ctx, label, self.shape, &rows)
    }

    /// As `like`, filled with zeros.
    pub fn zeros_like(&self, ctx: &Context, label: &str) -> Result<Self, GpuError> {
        Ok(self.like(ctx, label)?.zeroed(ctx))
    }

    fn zeroed(self, ctx: &Context) -> Self {
        for band in &self.bands {
            ctx.write(&band.buffer, &vec![0.0; band.shape.len()]);
        }
        self
    }

    fn with_rows(ctx: &Context, label: &str, shape: ActShape, rows: &[Range<usize>]) -> Result<Self, GpuError> {
        let bands = rows
            .iter()
            .enumerate()
            .map(|(i, rows)| {
                let band_shape = ActShape { height: rows.len(), ..shape };
                let name = if rows.len() == shape.height { label.to_string() } else { format!("{label} (band {i})") };
                Ok(Band { buffer: ctx.buffer(&name, band_shape.len())?, rows: rows.clone(), shape: band_shape })
            })
            .collect::<Result<_, GpuError>>()?;
        Ok(Self { shape, bands })
    }

    /// One band: an existing buffer holding all of `shape`.
    pub fn single(shape: ActShape, buffer: wgpu::Buffer) -> Self {
        Self { shape, bands: vec![Band { buffer, rows: 0..shape.height, shape }] }
    }

    /// One band: an existing buffer of `len` values with no shape of its own (an optimizer's vector).
    pub fn flat(len: usize, buffer: wgpu::Buffer) -> Self {
        Self::single(ActShape { channels: 1, height: 1, width: len }, buffer)
    }

    /// The whole array's shape.
    pub fn shape(&self) -> ActShape {
        self.shape
    }

    /// Values of the whole array.
    pub fn len(&self) -> usize {
        self.shape.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shape.is_empty()
    }

    pub fn bands(&self) -> &[Band] {
        &self.bands
    }

    /// Whether `other` is split into the same rows (so the two pair up band for band).
    pub fn same_split(&self, other: &Bands) -> bool {
        self.shape == other.shape && self.bands.iter().zip(&other.bands).all(|(a, b)| a.rows == b.rows)
    }

    /// Bytes of GPU memory it holds.
    pub fn bytes(&self) -> u64 {
        self.bands.iter().map(|b| b.buffer.size()).sum()
    }

    /// Writes the whole array from `values` (C x H x W, row-major).
    pub fn write(&self, ctx: &Context, values: &[f32]) {
        debug_assert_eq!(values.len(), self.len());
        if let [band] = self.bands.as_slice() {
            return ctx.write(&band.buffer, values);
        }
        let (height, width) = (self.shape.height, self.shape.width);
        for band in &self.bands {
            let mut gathered = Vec::with_capacity(band.shape.len());
            for c in 0..self.shape.channels {
                let start = (c * height + band.rows.start) * width;
                gathered.extend_from_slice(&values[start..start + band.rows.len() * width]);
            }
            ctx.write(&band.buffer, &gathered);
        }
    }

    /// Reads the whole array back (C x H x W, row-major), waiting for all work before it.
    pub fn read(&self, ctx: &Context) -> Result<Vec<f32>, GpuError> {
        if let [band] = self.bands.as_slice() {
            return ctx.read(&band.buffer, band.shape.len());
        }
        let (height, width) = (self.shape.height, self.shape.width);
        let mut values = vec![0.0; self.len()];
        for band in &self.bands {
            let part = ctx.read(&band.buffer, band.shape.len())?;
            let plane = band.rows.len() * width;
            for c in 0..self.shape.channels {
                let start = (c * height + band.rows.start) * width;
                values[start..start + plane].copy_from_slice(&part[c * plane..(c + 1) * plane]);
            }
        }
        Ok(values)
    }

    /// Rows `rows` of the whole array, clipped to each band they cross: the band and the rows
    /// within it, and the first of those rows counted from `rows.start`.
    fn crossing(&self, rows: Range<usize>) -> impl Iterator<Item = (&Band, Range<usize>, usize)> {
        self.bands.iter().filter_map(move |band| {
            let (start, end) = (rows.start.max(band.rows.start), rows.end.min(band.rows.end));
            (start < end).then(|| (band, start - band.rows.start..end - band.rows.start, start - rows.start))
        })
    }
}

/// Appends the copy of rectangle `from` of the banded `src` into `dst` at `to` (as `copy_rect`:
/// one kernel per band the rectangle crosses).
pub fn copy_rect_from_bands(
    ctx: &Context,
    step: &mut Step,
    src: &Bands,
    from: Rect,
    dst: &wgpu::Buffer,
    dst_dims: ActShape,
    to: (usize, usize),
) -> Result<(), GpuError> {
    check_rect(src.shape, from)?;
    for (band, rows, skipped) in src.crossing(from.y..from.y + from.height) {
        let part = Rect { y: rows.start, height: rows.len(), ..from };
        step.push(copy_rect(ctx, &band.buffer, band.shape, part, dst, dst_dims, (to.0 + skipped, to.1))?);
    }
    Ok(())
}

/// Appends the copy of rectangle `from` of `src` into the banded `dst` at `to` (one kernel per
/// band the landing rectangle crosses).
pub fn copy_rect_into_bands(
    ctx: &Context,
    step: &mut Step,
    src: &wgpu::Buffer,
    src_dims: ActShape,
    from: Rect,
    dst: &Bands,
    to: (usize, usize),
) -> Result<(), GpuError> {
    check_rect(dst.shape, Rect { y: to.0, x: to.1, ..from })?;
    for (band, rows, skipped) in dst.crossing(to.0..to.0 + from.height) {
        let part = Rect { y: from.y + skipped, height: rows.len(), ..from };
        step.push(copy_rect(ctx, src, src_dims, part, &band.buffer, band.shape, (rows.start, to.1))?);
    }
    Ok(())
}

fn check_rect(dims: ActShape, rect: Rect) -> Result<(), GpuError> {
    if rect.y + rect.height > dims.height || rect.x + rect.width > dims.width {
        return Err(GpuError::Device(format!("banded copy: {rect:?} does not fit {dims:?}")));
    }
    Ok(())
}

/// An error naming `what` unless every one of `arrays` (at least one) is split as the first is,
/// so that they pair up band for band.
pub fn check_split(what: &str, arrays: &[&Bands]) -> Result<(), GpuError> {
    let first = arrays.first().ok_or_else(|| GpuError::Device(format!("{what}: no arrays")))?;
    if let Some(other) = arrays.iter().find(|a| !first.same_split(a)) {
        return Err(GpuError::Device(format!(
            "{what}: arrays split differently ({:?} in {} bands, {:?} in {})",
            first.shape,
            first.bands.len(),
            other.shape,
            other.bands.len()
        )));
    }
    Ok(())
}

/// One kernel per band of `arrays` (which must be split alike): `kernel(len, buffers)` with the
/// band's number of values and each array's buffer of that band, in the order given. Returns
/// each kernel's index in `step`.
pub fn each_band(
    step: &mut Step,
    arrays: &[&Bands],
    kernel: impl Fn(usize, &[&wgpu::Buffer]) -> Result<Kernel, GpuError>,
) -> Result<Vec<usize>, GpuError> {
    check_split("each_band", arrays)?;
    let first = arrays[0];
    (0..first.bands.len())
        .map(|b| {
            let buffers: Vec<&wgpu::Buffer> = arrays.iter().map(|a| &a.bands[b].buffer).collect();
            Ok(step.push(kernel(first.bands[b].shape.len(), &buffers)?))
        })
        .collect()
}
