//! Checkpoints: everything a run needs to continue exactly (`Options::checkpoint`, `--resume`).
//!
//! The file format and the state it holds, below the optimization loop: this module knows images,
//! weights and the optimizers' snapshots, never `transfer` or `Options`; `transfer` fills a
//! [`TransferSnapshot`] and reports a [`CheckpointError`], and `pipeline` decides what enters the
//! [`Fingerprint`] and when a checkpoint is written (`pipeline::checkpointing`).
//!
//! A checkpoint holds the optimizer's variable (the normalized image) and the optimizer's whole
//! state bit for bit as the GPU held them (Adam's moments and step count; L-BFGS's direction,
//! previous gradient, history pairs, scalars and host-side counters), the iterate average, the
//! non-finite guard's last finite image, the scale index, the step within the scale, the steps
//! over every scale, and a [`Fingerprint`] of what shapes the numbers. A run resumed from it
//! takes exactly the steps the interrupted run would have taken.
//!
//! # Format (version 1; integers little-endian)
//!
//! ```text
//! magic    8 bytes  "STYLCKPT"
//! version  u32      1
//! length   u64      bytes of the body
//! body     length bytes:
//!   fingerprint  u32 n, then n x (key str, value str)        str  = u32 bytes + UTF-8
//!   scale u32, scales u32, total steps u64
//!   width u32, height u32, steps done in the scale u64
//!   image f32s, verified image f32s, verified step opt u64, non-finite flag u32
//!                                                            f32s = u64 count + count x 4 bytes
//!                                                            opt  = u8 0 | u8 1 + value
//!   average      opt (updates u64, average f32s)
//!   optimizer    u8 0 (Adam): steps u64, exp_avg f32s, exp_avg_sq f32s
//!                u8 1 (L-BFGS): n_iter u64, t f64, h_diag f64, last g'd opt f64, scalars f32s,
//!                  direction f32s, previous gradient f32s, u32 n x (s f32s, y f32s),
//!                  u32 n x active slot u32, candidate slot opt u32
//! sha256   32 bytes over everything before it
//! ```
//!
//! A file is read whole, its length, magic, version and checksum checked, and its body parsed
//! completely (every length bounded by the bytes left) before any of it is used.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::image_io::Image;
use crate::net::ConvLayerWeights;
use crate::optim::{AdamSnapshot, LbfgsSnapshot};

pub const MAGIC: &[u8; 8] = b"STYLCKPT";
pub const VERSION: u32 = 1;
/// Magic, version and body length.
const HEADER: usize = 8 + 4 + 8;
const CHECKSUM: usize = 32;

/// Why a checkpoint could not be written, read or used; one line naming the file.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint {}: cannot read: {source}", .path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("checkpoint {}: cannot write: {source}", .path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("checkpoint {}: {problem}; it is not used", .path.display())]
    Corrupt { path: PathBuf, problem: String },
    #[error("checkpoint {} was made with {option} {saved}, this run has {current}", .path.display())]
    OtherOption { path: PathBuf, option: String, saved: String, current: String },
    #[error("checkpoint {}: the {what} differs from the one it was made with", .path.display())]
    OtherInput { path: PathBuf, what: String },
    #[error("checkpoint {} is at step {step} of scale {scale}, beyond --iterations {iterations}", .path.display())]
    Beyond { path: PathBuf, step: u64, scale: usize, iterations: usize },
}

/// What shapes the numbers of a run: a SHA-256 of each input (content, styles, masks, initial image,
/// network weights, as decoded) and every option that changes a value, by its flag name. Not
/// `iterations` (the total may grow on resume), outputs, frequencies, the seed (it acts through
/// the initial image and the weights, both hashed) or the GPU chosen. Which options enter is
/// `pipeline::checkpointing`'s list; this module only hashes, stores and compares the entries.
#[derive(Clone, Debug, PartialEq)]
pub struct Fingerprint {
    pub entries: Vec<(String, String)>,
}

/// Keys of hashed inputs (the others are flag names).
const INPUTS: [&str; 5] = ["content image", "style images", "initial image", "network weights", "mask images"];

/// SHA-256 of each input (content, styles, initial image, weights, masks) under its `INPUTS` key.
fn input_hashes(
    content: &Image,
    styles: &[Image],
    masks: &[Image],
    init: &Image,
    weights: &[ConvLayerWeights],
) -> Vec<(String, String)> {
    let image_hash = |hasher: &mut Sha256, image: &Image| {
        hasher.update(image.width.to_le_bytes());
        hasher.update(image.height.to_le_bytes());
        hasher.update(bytemuck::cast_slice::<f32, u8>(&image.data));
    };
    let hex = |hasher: Sha256| hasher.finalize().iter().map(|b| format!("{b:02x}")).collect::<String>();
    let one = |image: &Image| {
        let mut h = Sha256::new();
        image_hash(&mut h, image);
        hex(h)
    };
    let mut all_styles = Sha256::new();
    all_styles.update((styles.len() as u64).to_le_bytes());
    styles.iter().for_each(|s| image_hash(&mut all_styles, s));
    let mut all_masks = Sha256::new();
    all_masks.update((masks.len() as u64).to_le_bytes());
    masks.iter().for_each(|m| image_hash(&mut all_masks, m));
    let mut net = Sha256::new();
    for layer in weights {
        net.update((layer.in_channels as u64).to_le_bytes());
        net.update((layer.out_channels as u64).to_le_bytes());
        net.update(bytemuck::cast_slice::<f32, u8>(&layer.weight));
        net.update(bytemuck::cast_slice::<f32, u8>(&layer.bias));
    }
    vec![
        (INPUTS[0].into(), one(content)),
        (INPUTS[1].into(), hex(all_styles)),
        (INPUTS[2].into(), one(init)),
        (INPUTS[3].into(), hex(net)),
        (INPUTS[4].into(), hex(all_masks)),
    ]
}

impl Fingerprint {
    /// The inputs' hashes and `options`: the values that shape the result, as text, by the key
    /// they are checked under (a flag name; the keys are part of the file format). Which options
    /// those are is the run's business (`pipeline`), not the format's.
    pub fn of(
        content: &Image,
        styles: &[Image],
        masks: &[Image],
        init: &Image,
        weights: &[ConvLayerWeights],
        options: Vec<(String, String)>,
    ) -> Self {
        let mut entries = input_hashes(content, styles, masks, init, weights);
        entries.extend(options);
        Self { entries }
    }
    pub fn check(&self, saved: &Fingerprint, path: &Path) -> Result<(), CheckpointError> {
        for (key, value) in &self.entries {
            let old = saved.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
            if old == Some(value.as_str()) {
                continue;
            }
            if INPUTS.contains(&key.as_str()) {
                return Err(CheckpointError::OtherInput { path: path.into(), what: key.clone() });
            }
            return Err(CheckpointError::OtherOption {
                path: path.into(),
                option: key.clone(),
                saved: old.unwrap_or("no value").to_string(),
                current: value.clone(),
            });
        }
        if let Some((key, _)) = saved.entries.iter().find(|(k, _)| !self.entries.iter().any(|(own, _)| own == k)) {
            return Err(CheckpointError::Corrupt {
                path: path.into(),
                problem: format!("it records {key}, which this version of stylize does not know"),
            });
        }
        Ok(())
    }
}

/// Everything a `StyleTransfer` needs to continue exactly where `StyleTransfer::state` was
/// taken; every buffer bit for bit as the GPU held it.
#[derive(Clone, Debug, PartialEq)]
pub struct TransferSnapshot {
    pub width: u32,
    pub height: u32,
    /// Steps taken (the next step's number).
    pub steps_done: u64,
    /// The optimizer's variable: the normalized image.
    pub image: Vec<f32>,
    /// The non-finite guard: the last image whose loss was checked finite, its step, and the
    /// first step flagged non-finite (`check::CLEAN` if none).
    pub verified_image: Vec<f32>,
    pub verified_step: Option<u64>,
    pub non_finite_flag: u32,
    /// The iterate average (`average_decay > 0`): updates counted and the raw average.
    pub average: Option<(u64, Vec<f32>)>,
    pub optimizer: OptimizerSnapshot,
}

/// The optimizer part of a [`TransferSnapshot`].
#[derive(Clone, Debug, PartialEq)]
pub enum OptimizerSnapshot {
    Adam(AdamSnapshot),
    Lbfgs(Box<LbfgsSnapshot>),
}

/// One checkpoint: where the run was and its whole state.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub fingerprint: Fingerprint,
    /// The scale being run (from 0) and the number of scales.
    pub scale: usize,
    pub scales: usize,
    /// Steps taken over every scale (those of this scale included).
    pub total_steps: u64,
    /// The scale's transfer; `state.steps_done` is the step within the scale.
    pub state: TransferSnapshot,
}

impl Checkpoint {
    /// The file's bytes (see the module documentation).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut body = Writer::default();
        body.u32(self.fingerprint.entries.len() as u32);
        for (key, value) in &self.fingerprint.entries {
            body.str(key);
            body.str(value);
        }
        body.u32(self.scale as u32);
        body.u32(self.scales as u32);
        body.u64(self.total_steps);
        let s = &self.state;
        body.u32(s.width);
        body.u32(s.height);
        body.u64(s.steps_done);
        body.f32s(&s.image);
        body.f32s(&s.verified_image);
        body.opt(s.verified_step, Writer::u64);
        body.u32(s.non_finite_flag);
        body.opt(s.average.as_ref(), |w, (updates, values)| {
            w.u64(*updates);
            w.f32s(values);
        });
        match &s.optimizer {
            OptimizerSnapshot::Adam(adam) => {
                body.u8(0);
                body.u64(adam.steps_taken);
                body.f32s(&adam.exp_avg);
                body.f32s(&adam.exp_avg_sq);
            }
            OptimizerSnapshot::Lbfgs(l) => {
                body.u8(1);
                body.u64(l.n_iter);
                body.f64(l.t);
                body.f64(l.h_diag);
                body.opt(l.last_gtd, Writer::f64);
                body.f32s(&l.scalars);
                body.f32s(&l.direction);
                body.f32s(&l.prev_grad);
                body.u32(l.pairs.len() as u32);
                for (s, y) in &l.pairs {
                    body.f32s(s);
                    body.f32s(y);
                }
                body.u32(l.order.len() as u32);
                l.order.iter().for_each(|&i| body.u32(i as u32));
                body.opt(l.candidate, |w, i| w.u32(i as u32));
            }
        }
        let mut file = Vec::with_capacity(HEADER + body.0.len() + CHECKSUM);
        file.extend_from_slice(MAGIC);
        file.extend_from_slice(&VERSION.to_le_bytes());
        file.extend_from_slice(&(body.0.len() as u64).to_le_bytes());
        file.extend_from_slice(&body.0);
        let digest = Sha256::digest(&file);
        file.extend_from_slice(&digest);
        file
    }

    /// Parses a whole file; `Err` names the problem (truncated, damaged, not a checkpoint...).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let head = &bytes[..bytes.len().min(MAGIC.len())];
        if !MAGIC.starts_with(head) {
            return Err("not a stylize checkpoint (no STYLCKPT header)".into());
        }
        if bytes.len() < HEADER + CHECKSUM {
            return Err(format!("truncated: {} bytes, shorter than any checkpoint", bytes.len()));
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if version != VERSION {
            return Err(format!("format version {version}, this stylize reads version {VERSION}"));
        }
        let declared = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
        let expected = (HEADER + CHECKSUM) as u128 + declared as u128;
        if bytes.len() as u128 != expected {
            let how = if (bytes.len() as u128) < expected { "truncated" } else { "trailing bytes" };
            return Err(format!("{how}: {} bytes, its header declares {expected}", bytes.len()));
        }
        let (content, checksum) = bytes.split_at(bytes.len() - CHECKSUM);
        if Sha256::digest(content).as_slice() != checksum {
            return Err("checksum mismatch: the file is damaged".into());
        }
        let mut r = Reader { bytes: &content[HEADER..], pos: 0 };
        let checkpoint = Self::parse(&mut r)?;
        if r.pos != r.bytes.len() {
            return Err(format!("{} unexplained bytes after the state", r.bytes.len() - r.pos));
        }
        Ok(checkpoint)
    }

    fn parse(r: &mut Reader<'_>) -> Result<Self, String> {
        let entries = (0..r.count(8)?).map(|_| Ok((r.str()?, r.str()?))).collect::<Result<_, String>>()?;
        let (scale, scales, total_steps) = (r.u32()? as usize, r.u32()? as usize, r.u64()?);
        if scale >= scales {
            return Err(format!("scale {scale} of {scales}"));
        }
        let (width, height, steps_done) = (r.u32()?, r.u32()?, r.u64()?);
        let image = r.f32s()?;
        let verified_image = r.f32s()?;
        let verified_step = r.opt(Reader::u64)?;
        let non_finite_flag = r.u32()?;
        let average = r.opt(|r| Ok((r.u64()?, r.f32s()?)))?;
        let optimizer = match r.u8()? {
            0 => OptimizerSnapshot::Adam(AdamSnapshot {
                steps_taken: r.u64()?,
                exp_avg: r.f32s()?,
                exp_avg_sq: r.f32s()?,
            }),
            1 => OptimizerSnapshot::Lbfgs(Box::new(LbfgsSnapshot {
                n_iter: r.u64()?,
                t: r.f64()?,
                h_diag: r.f64()?,
                last_gtd: r.opt(Reader::f64)?,
                scalars: r.f32s()?,
                direction: r.f32s()?,
                prev_grad: r.f32s()?,
                pairs: (0..r.count(16)?).map(|_| Ok((r.f32s()?, r.f32s()?))).collect::<Result<_, String>>()?,
                order: (0..r.count(4)?).map(|_| Ok(r.u32()? as usize)).collect::<Result<_, String>>()?,
                candidate: r.opt(|r| Ok(r.u32()? as usize))?,
            })),
            other => return Err(format!("unknown optimizer tag {other}")),
        };
        if steps_done > total_steps {
            return Err(format!("step {steps_done} of the scale, {total_steps} in all"));
        }
        let state = TransferSnapshot {
            width,
            height,
            steps_done,
            image,
            verified_image,
            verified_step,
            non_finite_flag,
            average,
            optimizer,
        };
        Ok(Self { fingerprint: Fingerprint { entries }, scale, scales, total_steps, state })
    }

    /// Writes the checkpoint atomically (a temp file beside `path`, fsynced, renamed over it).
    pub fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        crate::image_io::write_atomically(path, &self.to_bytes())
            .map_err(|source| CheckpointError::Write { path: path.into(), source })
    }

    /// Reads and checks a checkpoint file (not yet against a run: see [`Fingerprint::check`]).
    pub fn load(path: &Path) -> Result<Self, CheckpointError> {
        let bytes = std::fs::read(path).map_err(|source| CheckpointError::Read { path: path.into(), source })?;
        Self::from_bytes(&bytes).map_err(|problem| CheckpointError::Corrupt { path: path.into(), problem })
    }
}

#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn f64(&mut self, v: f64) {
        self.0.extend_from_slice(&v.to_bits().to_le_bytes());
    }
    fn str(&mut self, v: &str) {
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v.as_bytes());
    }
    fn f32s(&mut self, v: &[f32]) {
        self.u64(v.len() as u64);
        self.0.reserve(4 * v.len());
        v.iter().for_each(|x| self.0.extend_from_slice(&x.to_bits().to_le_bytes()));
    }
    fn opt<T>(&mut self, v: Option<T>, put: impl FnOnce(&mut Self, T)) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                put(self, v);
            }
        }
    }
}

/// Reads the body; every length is checked against the bytes left before anything is allocated.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.bytes.len() - self.pos {
            return Err(format!("a field at byte {} runs past the end of the body", HEADER + self.pos));
        }
        self.pos += n;
        Ok(&self.bytes[self.pos - n..self.pos])
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn f64(&mut self) -> Result<f64, String> {
        Ok(f64::from_bits(self.u64()?))
    }
    /// A u32 count of items of at least `min_bytes` each, bounded by the bytes left.
    fn count(&mut self, min_bytes: usize) -> Result<usize, String> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_bytes) > self.bytes.len() - self.pos {
            return Err(format!("{n} items declared at byte {}, more than the body holds", HEADER + self.pos - 4));
        }
        Ok(n)
    }
    fn str(&mut self) -> Result<String, String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "a key or value is not UTF-8".to_string())
    }
    fn f32s(&mut self) -> Result<Vec<f32>, String> {
        let n = self.u64()?;
        let bytes = self.take(usize::try_from(n.saturating_mul(4)).unwrap_or(usize::MAX))?;
        Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect())
    }
    fn opt<T>(&mut self, get: impl FnOnce(&mut Self) -> Result<T, String>) -> Result<Option<T>, String> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(get(self)?)),
            other => Err(format!("option tag {other} at byte {}", HEADER + self.pos - 1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::rng::Rng::new(seed);
        (0..n).map(|_| rng.normal() as f32).collect()
    }

    fn fingerprint(style_weight: f64) -> Fingerprint {
        let image = Image::new(3, 2, values(18, 1));
        let weights = [ConvLayerWeights { in_channels: 3, out_channels: 2, weight: values(54, 2), bias: values(2, 3) }];
        let options = vec![("--style-weight".to_string(), style_weight.to_string())];
        Fingerprint::of(&image, std::slice::from_ref(&image), &[], &image, &weights, options)
    }

    fn sample(lbfgs: bool) -> Checkpoint {
        let n = 18;
        let optimizer = if lbfgs {
            OptimizerSnapshot::Lbfgs(Box::new(LbfgsSnapshot {
                n_iter: 4,
                t: 0.5,
                h_diag: 0.25,
                last_gtd: Some(-3.0),
                scalars: values(20, 4),
                direction: values(n, 5),
                prev_grad: values(n, 6),
                pairs: vec![(values(n, 7), values(n, 8)), (values(n, 9), values(n, 10))],
                order: vec![1],
                candidate: Some(0),
            }))
        } else {
            OptimizerSnapshot::Adam(AdamSnapshot { steps_taken: 3, exp_avg: values(n, 4), exp_avg_sq: values(n, 5) })
        };
        let mut image = values(n, 11);
        image[3] = f32::from_bits(0x7fc0_1234); // a NaN payload survives too
        Checkpoint {
            fingerprint: fingerprint(1e6),
            scale: 1,
            scales: 2,
            total_steps: 9,
            state: TransferSnapshot {
                width: 3,
                height: 2,
                steps_done: 3,
                image,
                verified_image: values(n, 12),
                verified_step: Some(2),
                non_finite_flag: crate::ops::check::CLEAN,
                average: Some((3, values(n, 13))),
                optimizer,
            },
        }
    }

    fn bits(c: &Checkpoint) -> Vec<u32> {
        c.state.image.iter().map(|v| v.to_bits()).collect()
    }

    #[test]
    fn a_checkpoint_reads_back_bit_for_bit() {
        for lbfgs in [false, true] {
            let saved = sample(lbfgs);
            let read = Checkpoint::from_bytes(&saved.to_bytes()).unwrap();
            assert_eq!(bits(&read), bits(&saved));
            assert_eq!(format!("{read:?}"), format!("{saved:?}"));
        }
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_refused() {
        for lbfgs in [false, true] {
            let bytes = sample(lbfgs).to_bytes();
            for len in 0..bytes.len() {
                let err = Checkpoint::from_bytes(&bytes[..len]).unwrap_err();
                assert!(err.contains("truncated"), "{len} bytes: {err}");
            }
            for i in 0..bytes.len() {
                let mut damaged = bytes.clone();
                damaged[i] ^= 0x10;
                assert!(Checkpoint::from_bytes(&damaged).is_err(), "byte {i} flipped was accepted");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(Checkpoint::from_bytes(&longer).unwrap_err().contains("trailing"));
        }
    }

    /// Re-seals `bytes` with a body length and checksum that match, as a crafted file would.
    fn reseal(mut bytes: Vec<u8>) -> Vec<u8> {
        bytes.truncate(bytes.len() - CHECKSUM);
        let body = (bytes.len() - HEADER) as u64;
        bytes[12..20].copy_from_slice(&body.to_le_bytes());
        let digest = Sha256::digest(&bytes);
        bytes.extend_from_slice(&digest);
        bytes
    }

    #[test]
    fn a_crafted_body_with_a_valid_checksum_never_panics() {
        let mut rng = crate::rng::Rng::new(5);
        for lbfgs in [false, true] {
            let good = sample(lbfgs).to_bytes();
            for round in 0..3000 {
                let mut bytes = good.clone();
                let body = HEADER..bytes.len() - CHECKSUM;
                for _ in 0..1 + round % 4 {
                    let at = body.start + (rng.uniform() * body.len() as f64) as usize % body.len();
                    bytes[at] = (rng.uniform() * 256.0) as u8;
                }
                if round % 5 == 0 {
                    let cut = body.start + (rng.uniform() * body.len() as f64) as usize % body.len();
                    bytes.drain(cut..body.end);
                    bytes = reseal(bytes);
                } else {
                    bytes = reseal(bytes);
                }
                let _ = Checkpoint::from_bytes(&bytes);
            }
            let cut = reseal(good[..good.len() - CHECKSUM - 10].iter().copied().chain([0; CHECKSUM]).collect());
            assert!(Checkpoint::from_bytes(&cut).unwrap_err().contains("runs past the end"));
        }
    }

    #[test]
    fn the_header_is_checked_before_the_checksum() {
        let mut bytes = sample(false).to_bytes();
        assert!(Checkpoint::from_bytes(b"PNG\x89 not a checkpoint at all, no").unwrap_err().contains("not a stylize"));
        bytes[8] = 2;
        assert!(Checkpoint::from_bytes(&bytes).unwrap_err().contains("version 2"));
    }

    #[test]
    fn a_body_declaring_more_than_it_holds_is_refused_without_allocating() {
        // A valid checksum over a body whose first count is huge.
        let mut body = Writer::default();
        body.u32(u32::MAX);
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(&VERSION.to_le_bytes());
        file.extend_from_slice(&(body.0.len() as u64).to_le_bytes());
        file.extend_from_slice(&body.0);
        let digest = Sha256::digest(&file);
        file.extend_from_slice(&digest);
        assert!(Checkpoint::from_bytes(&file).unwrap_err().contains("more than the body holds"));
    }

    #[test]
    fn the_fingerprint_names_the_first_difference() {
        let path = Path::new("x.ckpt");
        assert!(fingerprint(1e6).check(&fingerprint(1e6), path).is_ok());
        let err = fingerprint(1e5).check(&fingerprint(1e6), path).unwrap_err().to_string();
        assert_eq!(err, "checkpoint x.ckpt was made with --style-weight 1000000, this run has 100000");
        let mut other = fingerprint(1e6);
        other.entries[0].1 = "0".repeat(64);
        let err = fingerprint(1e6).check(&other, path).unwrap_err().to_string();
        assert_eq!(err, "checkpoint x.ckpt: the content image differs from the one it was made with");
    }
}
