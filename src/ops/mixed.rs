//! Mixed precision: f16 rounding (round to nearest even, as matrix units convert) of the
//! products' operands, with a power-of-two scale per operand chosen on the GPU from its largest
//! magnitude so that nothing overflows or flushes in f16 (`range.wgsl`), and the exact CPU
//! counterparts the f64 references use.
//!
//! The shaders round by bit manipulation (`round_f16` in conv.wgsl and gram.wgsl), not with
//! `pack2x16float`: WGSL leaves that builtin's rounding direction and its result outside f16's
//! range to the implementation, and the emulation must round exactly as `round_f16` here does.

use bytemuck::{Pod, Zeroable};

use crate::gpu::{Context, GpuError, Kernel, ShaderSource, Step};

pub const SHADER: ShaderSource = ShaderSource { name: "range", source: include_str!("../../kernels/range.wgsl") };

/// The scaled operand's largest magnitude lands in [2^TARGET, 2^(TARGET + 1)): an octave below
/// f16's largest finite value (65504), which leaves room for the Gram backward's sum of two
/// gradients, with 29 octaves of normal and subnormal f16 values below it.
pub const TARGET_EXPONENT: i32 = 14;
const THREADS: usize = 256;
const PER_THREAD: usize = 16;

/// `x` rounded to the nearest f16 value (ties to even), returned as the f32 holding it:
/// magnitudes from 65520 up become infinite, below 2^-25 (and 2^-25 itself) zero, subnormal f16
/// values are kept; NaN and infinities pass through.
pub fn round_f16(x: f32) -> f32 {
    let bits = x.to_bits();
    let sign = bits & 0x8000_0000;
    let magnitude = bits & 0x7fff_ffff;
    if magnitude >= 0x7f80_0000 {
        return x;
    }
    if magnitude >= 0x477f_f000 {
        // 65520 = 65504 + half an f16 step: ties go to the even neighbour, 2^16, out of range.
        return f32::from_bits(sign | 0x7f80_0000);
    }
    if magnitude >= 0x3880_0000 {
        // Normal f16 (from 2^-14): keep 10 of f32's 23 mantissa bits, ties to even; a carry
        // into the exponent is the correct rounding up to the next binade.
        let lsb = (magnitude >> 13) & 1;
        return f32::from_bits(sign | ((magnitude + 0x0fff + lsb) & !0x1fff));
    }
    if magnitude <= 0x3300_0000 {
        // Up to 2^-25: half the smallest subnormal or less, rounds to (even) zero.
        return f32::from_bits(sign);
    }
    // Subnormal f16: a count of 2^-24 units. The value is mantissa * 2^(exponent - 150).
    let exponent = magnitude >> 23;
    let mantissa = (magnitude & 0x007f_ffff) | 0x0080_0000;
    let shift = 126 - exponent;
    let mut units = mantissa >> shift;
    let rest = mantissa & ((1 << shift) - 1);
    let half = 1 << (shift - 1);
    if rest > half || (rest == half && units & 1 == 1) {
        units += 1;
    }
    f32::from_bits(sign | (units as f32 * f32::from_bits(0x3380_0000)).to_bits())
}

/// The biased f32 exponent of the largest |value| (0 for all zeros, 255 with a NaN or infinity):
/// what `range.wgsl` writes.
pub fn max_biased_exponent(values: &[f32]) -> u32 {
    values.iter().map(|v| (v.to_bits() >> 23) & 0xff).max().unwrap_or(0)
}

/// The power of two a product divides an operand by before rounding it (and multiplies its
/// accumulated result by after), from the operand's `max_biased_exponent`; `range_scale` in
/// the shaders.
pub fn scale_exponent(biased: u32) -> i32 {
    (biased as i32 - 127 - TARGET_EXPONENT).clamp(-126, 126)
}

/// Each value divided by 2^exponent, rounded to f16, multiplied back, in f64: an operand as a
/// mixed product sees it (scaling by a power of two is exact, so the f64 product of these
/// values equals the kernel's scaled product unscaled, up to the f32 accumulation).
pub fn round_scaled(values: &[f32], exponent: i32) -> Vec<f64> {
    let down = 2f64.powi(-exponent);
    let up = 2f64.powi(exponent);
    values.iter().map(|&v| round_f16((v as f64 * down) as f32) as f64 * up).collect()
}

/// `round_scaled` with the exponent `range.wgsl` would choose for `values`.
pub fn round_operand(values: &[f32]) -> Vec<f64> {
    round_scaled(values, scale_exponent(max_biased_exponent(values)))
}

/// The range words (2: an operand's and, for the Gram backward, a second one's) every mixed
/// product shares: each product's range kernels run right before it (`Context::shared_words`).
pub fn range_buffer(ctx: &Context) -> Result<wgpu::Buffer, GpuError> {
    ctx.shared_words()
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    groups: u32,
    len: u32,
    slot: u32,
    _pad: u32,
}

/// Kernels that set `range[slot]` to the largest biased exponent of |x[0 .. len]| (two dispatches:
/// a clear, then an atomic max over the exponents), with no readback.
pub fn range(ctx: &Context, len: usize, x: &wgpu::Buffer, range: &wgpu::Buffer, slot: usize) -> Result<Step, GpuError> {
    let params = Params { groups: 0, len: len as u32, slot: slot as u32, _pad: 0 };
    let mut step = Step::new();
    step.push(Kernel::with_bindings(ctx, SHADER, "range_clear", bytemuck::bytes_of(&params), &[(2, range)], 1)?);
    let groups = len.div_ceil(THREADS * PER_THREAD).max(1) as u32;
    step.push(Kernel::new(ctx, SHADER, "range_max_exponent", bytemuck::bytes_of(&params), &[x, range], groups)?);
    Ok(step)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The f32 value of f16 bit pattern `h`, decoded from the definition of binary16.
    fn decode_f16(h: u16) -> f32 {
        let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
        let exponent = ((h >> 10) & 0x1f) as i32;
        let fraction = (h & 0x3ff) as f64;
        let magnitude = match exponent {
            0 => fraction * 2f64.powi(-24),
            31 if fraction == 0.0 => f64::INFINITY,
            31 => f64::NAN,
            e => (1.0 + fraction / 1024.0) * 2f64.powi(e - 15),
        };
        (sign * magnitude) as f32
    }

    #[test]
    fn known_values() {
        let cases: [(f32, f32); 16] = [
            (1.0, 1.0),
            (65504.0, 65504.0),
            (65519.996, 65504.0),
            (65520.0, f32::INFINITY),
            (-70000.0, f32::NEG_INFINITY),
            (1.0 + 2f32.powi(-11), 1.0),                                   // tie, even below
            (1.0 + 3.0 * 2f32.powi(-11), 1.0 + 2f32.powi(-9)),             // tie, even above
            (1.0 + 2f32.powi(-11) + 2f32.powi(-20), 1.0 + 2f32.powi(-10)), // just above the tie
            (2f32.powi(-24), 2f32.powi(-24)),                              // smallest subnormal
            (2f32.powi(-25), 0.0),                                         // tie with zero: even
            (1.5 * 2f32.powi(-25), 2f32.powi(-24)),
            (3.0 * 2f32.powi(-25), 2.0 * 2f32.powi(-24)), // tie between 1 and 2 units
            (5.0 * 2f32.powi(-25), 2.0 * 2f32.powi(-24)), // tie between 2 and 3 units
            (2f32.powi(-14) - 2f32.powi(-26), 2f32.powi(-14)), // subnormal rounds up to normal
            (1e-30, 0.0),
            (0.1, 0.099975586),
        ];
        for (x, expected) in cases {
            assert_eq!(round_f16(x).to_bits(), expected.to_bits(), "round_f16({x:e})");
            assert_eq!(round_f16(-x).to_bits(), (-expected).to_bits(), "round_f16({:e})", -x);
        }
        assert!(round_f16(f32::NAN).is_nan());
        assert_eq!(round_f16(-0.0).to_bits(), (-0.0f32).to_bits());
    }

    /// Every finite f16 value is kept, every midpoint between neighbours goes to the one with an
    /// even last bit, and the f32 values just either side of a midpoint go to the nearer one.
    #[test]
    fn exhaustive_over_f16() {
        let positives: Vec<f32> = (0u16..0x7c00).map(decode_f16).collect();
        for (i, &v) in positives.iter().enumerate() {
            assert_eq!(round_f16(v), v, "f16 value {v:e} is kept");
            let next = if i + 1 < positives.len() { positives[i + 1] as f64 } else { 65536.0 };
            let mid = ((v as f64 + next) / 2.0) as f32;
            let even = if i % 2 == 0 { v } else { next as f32 };
            let even = if even == 65536.0 { f32::INFINITY } else { even };
            let next_f32 = if next == 65536.0 { f32::INFINITY } else { next as f32 };
            assert_eq!(round_f16(mid), even, "midpoint {mid:e} ties to even");
            assert_eq!(round_f16(f32::from_bits(mid.to_bits() - 1)), v, "below the midpoint {mid:e}");
            assert_eq!(round_f16(f32::from_bits(mid.to_bits() + 1)), next_f32, "above the midpoint {mid:e}");
        }
    }

    #[test]
    fn scale_puts_the_largest_magnitude_an_octave_below_f16_max() {
        for max in [1e-9f32, 3e-5, 1.0, 1234.5, 1e5, 3e30] {
            let e = scale_exponent(max_biased_exponent(&[0.5 * max, -max]));
            let scaled = max as f64 * 2f64.powi(-e);
            assert!((16384.0..32768.0).contains(&scaled), "{max:e} scaled by 2^{}: {scaled}", -e);
        }
        assert_eq!(max_biased_exponent(&[0.0, -0.0]), 0);
        assert_eq!(max_biased_exponent(&[1.0, f32::NAN]), 255);
        assert_eq!(scale_exponent(0), -126);
        // A gradient around 1e-9 keeps 11 significant bits through the rounding.
        let tiny: Vec<f32> = (1..100).map(|i| i as f32 * 1.37e-11).collect();
        for (r, &v) in round_operand(&tiny).iter().zip(&tiny) {
            assert!((r - v as f64).abs() <= v as f64 * 2f64.powi(-11), "{v:e} -> {r:e}");
        }
    }
}
