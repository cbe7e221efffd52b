//! NumPy `.npz` archives (as `np.savez` writes them): one `<key>.npy` member per array.
//!
//! The `.npy` header is parsed here rather than by `npyz`, whose header code multiplies the
//! shape without overflow checks; every size is checked before anything is allocated.

use std::collections::HashMap;
use std::io::{Read, Seek};

use super::Tensor;
use super::error::Problem;
use super::tensor::{self, Dtype};

/// Longest `.npy` header accepted.
const MAX_HEADER: usize = 1 << 16;

/// True when a zip's member names look like an npz.
pub(crate) fn looks_npz<R: Read + Seek>(zip: &zip::ZipArchive<R>) -> bool {
    zip.file_names().any(|n| n.ends_with(".npy"))
}

/// Reads `keys` from an npz archive.
pub(crate) fn read_npz<R: Read + Seek>(
    zip: &mut zip::ZipArchive<R>,
    file_len: u64,
    keys: &[String],
    missing: super::Missing,
) -> Result<HashMap<String, Tensor>, Problem> {
    let mut out = HashMap::new();
    for key in keys {
        let member = match zip.by_name(&format!("{key}.npy")) {
            Ok(member) => member,
            Err(_) if missing == super::Missing::Skip => continue,
            Err(_) => return Err(Problem::MissingKey(key.clone())),
        };
        let capacity = super::member_capacity(&member, file_len)?;
        out.insert(key.clone(), read_npy(member, capacity, key)?);
    }
    Ok(out)
}

/// What a `.npy` header says.
struct NpyHeader {
    dtype: Dtype,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// Reads one `.npy` member of `capacity` bytes: the header, then only the bytes its shape needs.
fn read_npy(member: impl Read, capacity: u64, key: &str) -> Result<Tensor, Problem> {
    let mut member = member.take(capacity);
    let header = read_npy_header(&mut member, key, capacity)?;
    let strides = if header.fortran_order {
        tensor::column_major_strides(&header.shape)
    } else {
        tensor::row_major_strides(&header.shape)
    };
    let layout = tensor::layout(&header.shape, &strides, key)?;
    let len = (layout.span as u64)
        .checked_mul(header.dtype.size() as u64)
        .ok_or_else(|| Problem::Malformed(format!("{key}: shape too large")))?;
    let room = member.limit();
    if len > room {
        return Err(Problem::Truncated(format!("{key} needs {len} bytes of data, its member holds {room}")));
    }
    let mut bytes = Vec::new();
    member.take(len).read_to_end(&mut bytes).map_err(|e| Problem::from_read(e, key))?;
    if (bytes.len() as u64) < len {
        return Err(Problem::Truncated(format!("{key} needs {len} bytes, {} remain", bytes.len())));
    }
    let values = tensor::decode_f32(&bytes, header.dtype, key)?;
    Ok(Tensor { data: tensor::gather(&values, &header.shape, &strides, &layout), shape: header.shape })
}

fn read_npy_header(r: &mut impl Read, key: &str, capacity: u64) -> Result<NpyHeader, Problem> {
    let bad = |what: &str| Problem::Malformed(format!("{key}.npy: {what}"));
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic).map_err(|e| Problem::from_read(e, key))?;
    if &magic[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy member"));
    }
    let header_len = match magic[6] {
        1 => {
            let mut n = [0u8; 2];
            r.read_exact(&mut n).map_err(|e| Problem::from_read(e, key))?;
            usize::from(u16::from_le_bytes(n))
        }
        2 | 3 => {
            let mut n = [0u8; 4];
            r.read_exact(&mut n).map_err(|e| Problem::from_read(e, key))?;
            u32::from_le_bytes(n) as usize
        }
        _ => return Err(bad("unknown .npy version")),
    };
    if header_len > MAX_HEADER {
        return Err(bad(&format!("header of {header_len} bytes (at most {MAX_HEADER})")));
    }
    if header_len as u64 > capacity {
        return Err(Problem::Truncated(format!(
            "{key}.npy header needs {header_len} bytes, its member holds {capacity}"
        )));
    }
    let mut text = vec![0u8; header_len];
    r.read_exact(&mut text).map_err(|e| Problem::from_read(e, key))?;
    let text = String::from_utf8_lossy(&text);
    let (descr, fortran_order, shape) = parse_header_dict(&text).ok_or_else(|| bad("unreadable header"))?;
    let dtype = npy_dtype(&descr)
        .ok_or_else(|| Problem::BadDtype { key: key.to_string(), dtype: format!("numpy '{descr}'") })?;
    Ok(NpyHeader { dtype, fortran_order, shape })
}

/// Parses `{'descr': '<f4', 'fortran_order': False, 'shape': (4, 3, 3, 3), }` into
/// (descr, fortran_order, shape).
fn parse_header_dict(text: &str) -> Option<(String, bool, Vec<usize>)> {
    let descr = value_after(text, "descr")?;
    let quote = descr.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let descr = descr[1..].split(quote).next()?.to_string();
    let fortran_order = value_after(text, "fortran_order")?.starts_with("True");
    let shape_text = value_after(text, "shape")?.strip_prefix('(')?;
    let shape_text = shape_text.split(')').next()?;
    let shape = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse::<usize>().ok())
        .collect::<Option<Vec<usize>>>()?;
    Some((descr, fortran_order, shape))
}

/// Text after `'name':`, trimmed.
fn value_after<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let at = text.find(&format!("'{name}'")).or_else(|| text.find(&format!("\"{name}\"")))?;
    let rest = &text[at + name.len() + 2..];
    Some(rest.trim_start().strip_prefix(':')?.trim_start())
}

fn npy_dtype(descr: &str) -> Option<Dtype> {
    Some(match descr {
        "<f4" => Dtype::F32,
        "<f8" => Dtype::F64,
        "<f2" => Dtype::F16,
        "<i8" => Dtype::I64,
        "<i4" => Dtype::I32,
        "<i2" => Dtype::I16,
        "|i1" => Dtype::I8,
        "|u1" => Dtype::U8,
        "|b1" => Dtype::Bool,
        _ => return None,
    })
}
