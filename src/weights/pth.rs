//! PyTorch `.pth` containers: the legacy sequence of pickles followed by raw storages (as
//! `vgg19-dcbb9e9d.pth`), and the zip container of current PyTorch. Only the storages behind
//! the requested keys are read.

use std::collections::HashMap;
use std::io::{self, BufReader, Read, Seek, SeekFrom};

use super::error::Problem;
use super::pickle::{self, PickleInput, StorageRef, TensorRef, Value};
use super::tensor::{self, Layout};
use super::{Missing, Tensor};

/// Little-endian bytes of the legacy magic number 0x1950a86a20f9469cfc6c.
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
/// The legacy container's protocol version.
const LEGACY_PROTOCOL: i64 = 1001;
/// Largest `data.pkl` accepted (a state dict's pickle is kilobytes).
const MAX_PICKLE_BYTES: u64 = 256 << 20;

/// True when the bytes start like a legacy container (a protocol-2 pickle of a long).
pub(crate) fn looks_legacy(head: &[u8]) -> bool {
    head.starts_with(&[0x80, 0x02, 0x8a])
}

/// Where one storage's data lies in a legacy file.
struct StorageSpan {
    /// Byte position of the first element.
    data_pos: u64,
    /// Elements the file holds for it.
    numel: u64,
}

/// The state dict's tensors of `keys`: a key it lacks is `Problem::MissingKey`, or with
/// `Missing::Skip` left out.
fn present<'k, 's>(
    keys: &'k [String],
    missing: Missing,
    find: impl Fn(&str) -> Result<&'s TensorRef, Problem>,
) -> Result<Vec<(&'k String, &'s TensorRef)>, Problem> {
    let mut found = Vec::with_capacity(keys.len());
    for key in keys {
        match find(key) {
            Ok(t) => found.push((key, t)),
            Err(Problem::MissingKey(_)) if missing == Missing::Skip => {}
            Err(e) => return Err(e),
        }
    }
    Ok(found)
}

/// Reads `keys` from a legacy container.
pub(crate) fn read_legacy<R: Read + Seek>(
    file: R,
    file_len: u64,
    keys: &[String],
    missing: Missing,
) -> Result<HashMap<String, Tensor>, Problem> {
    let mut input = PickleInput::new(BufReader::new(file), file_len);
    check_legacy_header(&mut input)?;
    let state = pickle::unpickle(&mut input)?;
    let storage_keys = read_storage_keys(&mut input)?;
    let data_start = input.consumed();
    let wanted: Vec<(&String, &TensorRef)> = present(keys, missing, |k| pickle::find_tensor(&state, k))?;
    let mut reader = input_into_file(input)?;
    let spans = locate_storages(&mut reader, file_len, data_start, &state, &storage_keys)?;
    let mut out = HashMap::new();
    for (key, t) in wanted {
        let span = spans
            .get(&t.storage.key)
            .ok_or_else(|| Problem::Malformed(format!("storage {} is not in the file", t.storage.key)))?;
        let tensor = read_legacy_tensor(&mut reader, file_len, span, t, key)?;
        out.insert(key.clone(), tensor);
    }
    Ok(out)
}

fn input_into_file<R: Read + Seek>(input: PickleInput<BufReader<R>>) -> Result<R, Problem> {
    Ok(input.into_inner().into_inner())
}

fn check_legacy_header<R: Read>(input: &mut PickleInput<R>) -> Result<(), Problem> {
    match pickle::unpickle(input) {
        Ok(Value::BigInt(bytes)) if *bytes == LEGACY_MAGIC => {}
        Ok(_) => return Err(Problem::NotWeights),
        Err(Problem::Malformed(_)) => return Err(Problem::NotWeights),
        Err(e) => return Err(e),
    }
    match pickle::unpickle(input)? {
        Value::Int(LEGACY_PROTOCOL) => {}
        other => {
            return Err(Problem::Malformed(format!("unknown legacy protocol version {other:?}")));
        }
    }
    let sys_info = pickle::unpickle(input)?;
    if let Value::Dict(map) = &sys_info {
        let big_endian =
            map.items.iter().any(|(k, v)| k.as_str() == Some("little_endian") && matches!(v, Value::Bool(false)));
        if big_endian {
            return Err(Problem::Malformed("big-endian storages are not supported".into()));
        }
    }
    Ok(())
}

fn read_storage_keys<R: Read>(input: &mut PickleInput<R>) -> Result<Vec<String>, Problem> {
    let list = pickle::unpickle(input)?;
    let items = list.as_items().ok_or_else(|| Problem::Malformed("storage key list is not a list".into()))?;
    items
        .iter()
        .map(|v| match v {
            Value::Str(s) => Ok(s.to_string()),
            Value::Int(i) => Ok(i.to_string()),
            _ => Err(Problem::Malformed("storage key is not a string".into())),
        })
        .collect()
}

/// Walks every storage header, seeking past the data, so a cut anywhere in the file is found
/// (a few dozen small reads); returns where each storage's data lies.
fn locate_storages<R: Read + Seek>(
    file: &mut R,
    file_len: u64,
    data_start: u64,
    state: &Value,
    storage_keys: &[String],
) -> Result<HashMap<String, StorageSpan>, Problem> {
    let elem_size: HashMap<&str, u64> = pickle::all_tensors(state)
        .into_iter()
        .map(|t| (t.storage.key.as_str(), t.storage.dtype.size() as u64))
        .collect();
    let mut spans = HashMap::new();
    let mut pos = data_start;
    for key in storage_keys {
        let size = *elem_size
            .get(key.as_str())
            .ok_or_else(|| Problem::Malformed(format!("storage {key} has no known element type")))?;
        let numel = read_numel(file, file_len, pos, key)?;
        let data_pos = pos + 8;
        let bytes = numel.checked_mul(size).filter(|&b| b <= file_len - data_pos).ok_or_else(|| {
            Problem::Truncated(format!(
                "storage {key} needs {} bytes, {} remain",
                numel.saturating_mul(size),
                file_len - data_pos
            ))
        })?;
        spans.insert(key.clone(), StorageSpan { data_pos, numel });
        pos = data_pos + bytes;
    }
    Ok(spans)
}

fn read_numel<R: Read + Seek>(file: &mut R, file_len: u64, pos: u64, key: &str) -> Result<u64, Problem> {
    if file_len.saturating_sub(pos) < 8 {
        return Err(Problem::Truncated(format!("storage {key} header is missing")));
    }
    let mut head = [0u8; 8];
    file.seek(SeekFrom::Start(pos)).map_err(Problem::Io)?;
    file.read_exact(&mut head).map_err(|e| Problem::from_read(e, "storage header"))?;
    u64::try_from(i64::from_le_bytes(head))
        .map_err(|_| Problem::Malformed(format!("storage {key} has a negative size")))
}

/// Checks a tensor's layout against its storage's element count; returns the layout and the
/// element index (in the root storage) of the tensor's first element.
fn check_in_storage(t: &TensorRef, storage_numel: u64, key: &str) -> Result<(Layout, u64), Problem> {
    let layout = tensor::layout(&t.shape, &t.stride, key)?;
    let StorageRef { base, numel, .. } = &t.storage;
    let first =
        base.checked_add(t.offset as u64).ok_or_else(|| Problem::Malformed(format!("{key}: offset too large")))?;
    let end = first.checked_add(layout.span as u64);
    let view_end = base.checked_add(*numel);
    let fits = match (end, view_end) {
        (Some(end), Some(view_end)) => end <= view_end && view_end <= storage_numel,
        _ => false,
    };
    if layout.span > 0 && !fits {
        return Err(Problem::Malformed(format!("{key} reaches past the end of its storage")));
    }
    Ok((layout, first))
}

fn read_legacy_tensor<R: Read + Seek>(
    file: &mut R,
    file_len: u64,
    span: &StorageSpan,
    t: &TensorRef,
    key: &str,
) -> Result<Tensor, Problem> {
    let (layout, first) = check_in_storage(t, span.numel, key)?;
    if layout.span == 0 {
        return finish_tensor(&[], t, &layout, key);
    }
    let size = t.storage.dtype.size() as u64;
    // In range: check_in_storage bounded first + span by the storage's element count, and
    // locate_storages bounded the storage's bytes by the file length.
    let start = span.data_pos + first * size;
    let len = layout.span as u64 * size;
    if start.saturating_add(len) > file_len {
        return Err(Problem::Truncated(format!(
            "storage {} needs {len} bytes, {} remain",
            t.storage.key,
            file_len.saturating_sub(start)
        )));
    }
    file.seek(SeekFrom::Start(start)).map_err(Problem::Io)?;
    let mut bytes = vec![0u8; len as usize];
    file.read_exact(&mut bytes).map_err(|e| Problem::from_read(e, "storage data"))?;
    finish_tensor(&bytes, t, &layout, key)
}

fn finish_tensor(bytes: &[u8], t: &TensorRef, layout: &Layout, key: &str) -> Result<Tensor, Problem> {
    let values = tensor::decode_f32(bytes, t.storage.dtype, key)?;
    Ok(Tensor { data: tensor::gather(&values, &t.shape, &t.stride, layout), shape: t.shape.clone() })
}

/// The folder (with trailing slash, possibly empty) that holds `data.pkl` in a torch zip.
pub(crate) fn torch_zip_prefix<R: Read + Seek>(zip: &zip::ZipArchive<R>) -> Option<String> {
    zip.file_names()
        .filter_map(|n| n.strip_suffix("data.pkl"))
        .find(|prefix| prefix.is_empty() || prefix.ends_with('/'))
        .map(str::to_string)
}

/// Reads `keys` from a torch zip container whose members lie under `prefix`.
pub(crate) fn read_zip<R: Read + Seek>(
    zip: &mut zip::ZipArchive<R>,
    prefix: &str,
    file_len: u64,
    keys: &[String],
    missing: Missing,
) -> Result<HashMap<String, Tensor>, Problem> {
    check_byteorder(zip, prefix)?;
    let state = {
        let member =
            zip.by_name(&format!("{prefix}data.pkl")).map_err(|e| Problem::Malformed(format!("data.pkl: {e}")))?;
        let capacity = super::member_capacity(&member, file_len)?;
        if capacity > MAX_PICKLE_BYTES {
            return Err(Problem::Malformed(format!(
                "data.pkl claims {capacity} bytes (a state dict's pickle is kilobytes; at most {MAX_PICKLE_BYTES})"
            )));
        }
        let mut input = PickleInput::new(member, capacity);
        pickle::unpickle(&mut input)?
    };
    let mut out = HashMap::new();
    for (key, t) in present(keys, missing, |k| pickle::find_tensor(&state, k))? {
        let tensor = read_zip_tensor(zip, prefix, file_len, t, key)?;
        out.insert(key.clone(), tensor);
    }
    Ok(out)
}

fn check_byteorder<R: Read + Seek>(zip: &mut zip::ZipArchive<R>, prefix: &str) -> Result<(), Problem> {
    let Ok(member) = zip.by_name(&format!("{prefix}byteorder")) else {
        return Ok(());
    };
    let mut text = String::new();
    member.take(16).read_to_string(&mut text).map_err(|e| Problem::from_read(e, "byteorder"))?;
    if text.trim() == "big" {
        return Err(Problem::Malformed("big-endian storages are not supported".into()));
    }
    Ok(())
}

fn read_zip_tensor<R: Read + Seek>(
    zip: &mut zip::ZipArchive<R>,
    prefix: &str,
    file_len: u64,
    t: &TensorRef,
    key: &str,
) -> Result<Tensor, Problem> {
    let name = format!("{prefix}data/{}", t.storage.key);
    let member = zip
        .by_name(&name)
        .map_err(|_| Problem::Malformed(format!("storage {} is not in the archive", t.storage.key)))?;
    let size = t.storage.dtype.size() as u64;
    let root_numel = t.storage.base.saturating_add(t.storage.numel);
    let (layout, first) = check_in_storage(t, root_numel, key)?;
    if layout.span == 0 {
        return finish_tensor(&[], t, &layout, key);
    }
    let too_large = || Problem::Malformed(format!("{key}: storage too large"));
    let skip = first.checked_mul(size).ok_or_else(too_large)?;
    let len = (layout.span as u64).checked_mul(size).ok_or_else(too_large)?;
    let capacity = super::member_capacity(&member, file_len)?;
    if skip.checked_add(len).is_none_or(|end| end > capacity) {
        return Err(Problem::Truncated(format!(
            "{key} needs bytes {skip}..{} of storage {}, which holds {capacity}",
            skip.saturating_add(len),
            t.storage.key
        )));
    }
    let mut reader = member;
    io::copy(&mut (&mut reader).take(skip), &mut io::sink()).map_err(|e| Problem::from_read(e, "storage data"))?;
    let mut bytes = Vec::new();
    (&mut reader).take(len).read_to_end(&mut bytes).map_err(|e| Problem::from_read(e, "storage data"))?;
    if (bytes.len() as u64) < len {
        return Err(Problem::Truncated(format!("storage {} needs {len} bytes, {} remain", t.storage.key, bytes.len())));
    }
    finish_tensor(&bytes, t, &layout, key)
}
