//! A restricted pickle reader: it understands the opcodes `torch.save` emits and builds plain
//! values. Nothing in a file is ever executed: globals are resolved against a short allow-list
//! at the `GLOBAL` opcode (anything else is refused there), and the few allowed callables are
//! interpreted by this code.

use std::io::Read;
use std::rc::Rc;

use super::error::Problem;
use super::tensor::Dtype;

/// Most items the stack may hold.
const MAX_STACK: usize = 1 << 20;
/// Highest memo index accepted.
const MAX_MEMO: usize = 1 << 20;
/// Deepest nesting of containers accepted.
const MAX_DEPTH: u32 = 64;
/// Most container elements that copy-on-write may copy in one pickle.
const MAX_COPY_WORK: usize = 1 << 26;
/// Longest `GLOBAL` line.
const MAX_GLOBAL_LINE: usize = 256;

/// A storage named by a persistent id: `('storage', type, key, location, numel[, view])`.
#[derive(Clone, Debug)]
pub(crate) struct StorageRef {
    /// The storage's key (its member name in a zip, its id in a legacy file).
    pub key: String,
    /// Element type.
    pub dtype: Dtype,
    /// Elements in the (root) storage as the pickle announces it.
    pub numel: u64,
    /// Element offset of this view in the root storage (0 unless an old storage view).
    pub base: u64,
}

/// A tensor rebuilt by `_rebuild_tensor(_v2)`: where its elements are, not the elements.
#[derive(Clone, Debug)]
pub(crate) struct TensorRef {
    /// Its storage.
    pub storage: StorageRef,
    /// Element offset in the storage (view base not included).
    pub offset: usize,
    /// Shape.
    pub shape: Vec<usize>,
    /// Strides in elements.
    pub stride: Vec<usize>,
}

/// The allowed globals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Callable {
    OrderedDict,
    RebuildTensor,
    RebuildTensorV2,
    RebuildParameter,
    StorageType(Dtype),
}

/// A sequence (tuple or list) with its nesting depth.
#[derive(Clone, Debug, Default)]
pub(crate) struct Seq {
    depth: u32,
    pub items: Vec<Value>,
}

/// A dict with its nesting depth; keys keep their order.
#[derive(Clone, Debug, Default)]
pub(crate) struct Map {
    depth: u32,
    pub items: Vec<(Value, Value)>,
}

/// A value built by the pickle machine.
#[derive(Clone, Debug)]
pub(crate) enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// A long that does not fit an i64: little-endian two's complement bytes.
    BigInt(Rc<[u8]>),
    #[allow(dead_code)] // Read by nothing yet; kept so the value is faithful.
    Float(f64),
    Str(Rc<str>),
    #[allow(dead_code)] // Read by nothing yet; kept so the value is faithful.
    Bytes(Rc<[u8]>),
    Tuple(Rc<Seq>),
    List(Rc<Seq>),
    Dict(Rc<Map>),
    Callable(Callable),
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorRef>),
}

impl Value {
    fn depth(&self) -> u32 {
        match self {
            Value::Tuple(s) | Value::List(s) => s.depth,
            Value::Dict(m) => m.depth,
            _ => 0,
        }
    }

    /// The string, if this is one.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is a small one (bools count, as in Python).
    pub(crate) fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    /// The items of a tuple or list.
    pub(crate) fn as_items(&self) -> Option<&[Value]> {
        match self {
            Value::Tuple(s) | Value::List(s) => Some(&s.items),
            _ => None,
        }
    }

    /// A tuple of non-negative integers as sizes.
    fn as_sizes(&self) -> Option<Vec<usize>> {
        self.as_items()?.iter().map(|v| usize::try_from(v.as_int()?).ok()).collect()
    }
}

fn malformed(detail: impl Into<String>) -> Problem {
    Problem::Malformed(detail.into())
}

fn new_seq(items: Vec<Value>) -> Result<Rc<Seq>, Problem> {
    let depth = 1 + items.iter().map(Value::depth).max().unwrap_or(0);
    if depth > MAX_DEPTH {
        return Err(malformed("pickle nests too deeply"));
    }
    Ok(Rc::new(Seq { depth, items }))
}

/// Reads pickle bytes, never asking for more than the input is known to hold.
pub(crate) struct PickleInput<R> {
    inner: R,
    remaining: u64,
    consumed: u64,
}

impl<R: Read> PickleInput<R> {
    /// Wraps a reader that holds at most `remaining` more bytes.
    pub(crate) fn new(inner: R, remaining: u64) -> Self {
        PickleInput { inner, remaining, consumed: 0 }
    }

    /// Bytes consumed so far.
    pub(crate) fn consumed(&self) -> u64 {
        self.consumed
    }

    fn take_bytes(&mut self, n: u64) -> Result<Vec<u8>, Problem> {
        if n > self.remaining {
            return Err(Problem::Truncated(format!("pickle item needs {n} bytes, {} remain", self.remaining)));
        }
        let len = usize::try_from(n).map_err(|_| malformed("pickle item too large"))?;
        // Grown as bytes arrive rather than allocated up front: a length that only a deflated
        // member's declared size backs costs no more than the bytes really there.
        let buf = if len <= 1 << 16 {
            let mut buf = vec![0u8; len];
            self.inner.read_exact(&mut buf).map_err(|e| Problem::from_read(e, "pickle"))?;
            buf
        } else {
            let mut buf = Vec::with_capacity(1 << 16);
            (&mut self.inner).take(n).read_to_end(&mut buf).map_err(|e| Problem::from_read(e, "pickle"))?;
            if buf.len() < len {
                return Err(Problem::Truncated(format!("pickle item needs {n} bytes, {} remain", buf.len())));
            }
            buf
        };
        self.remaining -= n;
        self.consumed += n;
        Ok(buf)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Problem> {
        let bytes = self.take_bytes(N as u64)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&bytes);
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8, Problem> {
        Ok(self.array::<1>()?[0])
    }

    fn u32_len(&mut self) -> Result<u64, Problem> {
        Ok(u64::from(u32::from_le_bytes(self.array()?)))
    }

    fn line(&mut self) -> Result<String, Problem> {
        let mut text = Vec::new();
        loop {
            let b = self.byte()?;
            if b == b'\n' {
                break;
            }
            if text.len() >= MAX_GLOBAL_LINE {
                return Err(malformed("GLOBAL line too long"));
            }
            text.push(b);
        }
        String::from_utf8(text).map_err(|_| malformed("GLOBAL line is not text"))
    }
}

/// Resolves `module.name` against the allow-list; anything else is refused by name.
fn resolve_global(module: &str, name: &str) -> Result<Callable, Problem> {
    let callable = match (module, name) {
        ("collections", "OrderedDict") => Callable::OrderedDict,
        ("torch._utils", "_rebuild_tensor") => Callable::RebuildTensor,
        ("torch._utils", "_rebuild_tensor_v2") => Callable::RebuildTensorV2,
        ("torch._utils", "_rebuild_parameter") => Callable::RebuildParameter,
        ("torch", class) => match Dtype::from_storage_class(class) {
            Some(dtype) => Callable::StorageType(dtype),
            None => return Err(Problem::Forbidden(format!("{module}.{name}"))),
        },
        _ => return Err(Problem::Forbidden(format!("{module}.{name}"))),
    };
    Ok(callable)
}

/// The pickle machine's state.
struct Machine {
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: Vec<Option<Value>>,
    copy_work: usize,
}

impl Machine {
    fn push(&mut self, v: Value) -> Result<(), Problem> {
        if self.stack.len() >= MAX_STACK {
            return Err(malformed("pickle stack too deep"));
        }
        self.stack.push(v);
        Ok(())
    }

    fn pop(&mut self) -> Result<Value, Problem> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(malformed("pickle stack underflow"));
        }
        self.stack.pop().ok_or_else(|| malformed("pickle stack underflow"))
    }

    fn top(&mut self) -> Result<&mut Value, Problem> {
        self.stack.last_mut().ok_or_else(|| malformed("pickle stack underflow"))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, Problem> {
        let mark = self.marks.pop().ok_or_else(|| malformed("pickle MARK missing"))?;
        Ok(self.stack.split_off(mark.min(self.stack.len())))
    }

    fn put(&mut self, index: usize) -> Result<(), Problem> {
        if index >= MAX_MEMO {
            return Err(malformed("pickle memo index too large"));
        }
        let v = self.stack.last().cloned().ok_or_else(|| malformed("pickle stack underflow"))?;
        if self.memo.len() <= index {
            self.memo.resize(index + 1, None);
        }
        self.memo[index] = Some(v);
        Ok(())
    }

    fn get(&mut self, index: usize) -> Result<(), Problem> {
        let v = self
            .memo
            .get(index)
            .cloned()
            .flatten()
            .ok_or_else(|| malformed(format!("pickle memo {index} is empty")))?;
        self.push(v)
    }

    fn charge_copy(&mut self, len: usize, shared: bool) -> Result<(), Problem> {
        if shared {
            self.copy_work = self.copy_work.saturating_add(len);
            if self.copy_work > MAX_COPY_WORK {
                return Err(malformed("pickle too complex"));
            }
        }
        Ok(())
    }

    fn extend_top_list(&mut self, items: Vec<Value>) -> Result<(), Problem> {
        let extra_depth = 1 + items.iter().map(Value::depth).max().unwrap_or(0);
        let (len, shared) = match self.top()? {
            Value::List(s) => (s.items.len(), Rc::strong_count(s) > 1),
            _ => return Err(malformed("APPEND to something not a list")),
        };
        self.charge_copy(len, shared)?;
        if let Value::List(s) = self.top()? {
            let seq = Rc::make_mut(s);
            seq.depth = seq.depth.max(extra_depth);
            if seq.depth > MAX_DEPTH {
                return Err(malformed("pickle nests too deeply"));
            }
            seq.items.extend(items);
        }
        Ok(())
    }

    fn set_items_on_top(&mut self, flat: Vec<Value>) -> Result<(), Problem> {
        if !flat.len().is_multiple_of(2) {
            return Err(malformed("SETITEMS with an odd number of items"));
        }
        let extra_depth = 1 + flat.iter().map(Value::depth).max().unwrap_or(0);
        let (len, shared) = match self.top()? {
            Value::Dict(m) => (m.items.len(), Rc::strong_count(m) > 1),
            _ => return Err(malformed("SETITEM on something not a dict")),
        };
        self.charge_copy(len, shared)?;
        if let Value::Dict(m) = self.top()? {
            let map = Rc::make_mut(m);
            map.depth = map.depth.max(extra_depth);
            if map.depth > MAX_DEPTH {
                return Err(malformed("pickle nests too deeply"));
            }
            let mut it = flat.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                map.items.push((k, v));
            }
        }
        Ok(())
    }
}

/// Reads one pickle (up to its STOP) and returns the value it builds.
pub(crate) fn unpickle<R: Read>(input: &mut PickleInput<R>) -> Result<Value, Problem> {
    let mut m = Machine { stack: Vec::new(), marks: Vec::new(), memo: Vec::new(), copy_work: 0 };
    loop {
        let op = input.byte()?;
        if op == b'.' {
            return m.pop();
        }
        step(&mut m, input, op)?;
    }
}

/// Runs one opcode on the machine.
fn step<R: Read>(m: &mut Machine, input: &mut PickleInput<R>, op: u8) -> Result<(), Problem> {
    if let Some(value) = read_literal(input, op)? {
        return m.push(value);
    }
    if container_op(m, op)? {
        return Ok(());
    }
    match op {
        0x80 => {
            input.byte()?;
        }
        0x95 => {
            // FRAME: its length is only a hint, but one longer than the input is a lie.
            let len = u64::from_le_bytes(input.array::<8>()?);
            if len > input.remaining {
                return Err(Problem::Truncated(format!("pickle frame of {len} bytes, {} remain", input.remaining)));
            }
        }
        b'q' => m.put(usize::from(input.byte()?))?,
        b'r' => m.put(input.u32_len()? as usize)?,
        0x94 => m.put(m.memo.len())?,
        b'h' => m.get(usize::from(input.byte()?))?,
        b'j' => m.get(input.u32_len()? as usize)?,
        b'c' => {
            let module = input.line()?;
            let name = input.line()?;
            m.push(Value::Callable(resolve_global(&module, &name)?))?;
        }
        0x93 => {
            let name = m.pop()?;
            let module = m.pop()?;
            match (module.as_str(), name.as_str()) {
                (Some(module), Some(name)) => m.push(Value::Callable(resolve_global(module, name)?))?,
                _ => return Err(malformed("STACK_GLOBAL without strings")),
            }
        }
        b'R' | 0x81 => {
            let args = m.pop()?;
            let callable = m.pop()?;
            m.push(apply(&callable, &args)?)?;
        }
        b'b' => {
            m.pop()?;
            m.top()?;
        }
        b'Q' => {
            let pid = m.pop()?;
            m.push(persistent_load(&pid)?)?;
        }
        b'0' => {
            m.pop()?;
        }
        b'1' => {
            m.pop_mark()?;
        }
        b'2' => {
            let v = m.top()?.clone();
            m.push(v)?;
        }
        other => {
            return Err(malformed(format!("unsupported pickle opcode 0x{other:02x}")));
        }
    }
    Ok(())
}

/// The value a literal opcode (an int, a string, bytes, a bool, None, a float) reads from the
/// input; None for every other opcode, which reads nothing here.
fn read_literal<R: Read>(input: &mut PickleInput<R>, op: u8) -> Result<Option<Value>, Problem> {
    Ok(Some(match op {
        b'J' => Value::Int(i64::from(i32::from_le_bytes(input.array()?))),
        b'K' => Value::Int(i64::from(input.byte()?)),
        b'M' => Value::Int(i64::from(u16::from_le_bytes(input.array()?))),
        0x8a => {
            let n = u64::from(input.byte()?);
            long_value(input.take_bytes(n)?)
        }
        0x8b => {
            let n = input.u32_len()?;
            long_value(input.take_bytes(n)?)
        }
        b'X' => {
            let n = input.u32_len()?;
            unicode(input.take_bytes(n)?)?
        }
        0x8c => {
            let n = u64::from(input.byte()?);
            unicode(input.take_bytes(n)?)?
        }
        0x8d => {
            let n = u64::from_le_bytes(input.array()?);
            unicode(input.take_bytes(n)?)?
        }
        b'T' => {
            let n = u64::try_from(i32::from_le_bytes(input.array()?))
                .map_err(|_| malformed("negative BINSTRING length"))?;
            latin1(input.take_bytes(n)?)
        }
        b'U' => {
            let n = u64::from(input.byte()?);
            latin1(input.take_bytes(n)?)
        }
        b'B' => {
            let n = input.u32_len()?;
            Value::Bytes(input.take_bytes(n)?.into())
        }
        b'C' => {
            let n = u64::from(input.byte()?);
            Value::Bytes(input.take_bytes(n)?.into())
        }
        0x8e => {
            let n = u64::from_le_bytes(input.array()?);
            Value::Bytes(input.take_bytes(n)?.into())
        }
        0x88 => Value::Bool(true),
        0x89 => Value::Bool(false),
        b'N' => Value::None,
        b'G' => Value::Float(f64::from_be_bytes(input.array()?)),
        _ => return Ok(None),
    }))
}

/// Runs `op` if it makes, fills or delimits a container (dict, list, tuple, MARK) from the stack;
/// false for every other opcode. None of these read the input.
fn container_op(m: &mut Machine, op: u8) -> Result<bool, Problem> {
    match op {
        b'}' => m.push(Value::Dict(Rc::new(Map { depth: 1, items: Vec::new() })))?,
        b']' => m.push(Value::List(new_seq(Vec::new())?))?,
        b')' => m.push(Value::Tuple(new_seq(Vec::new())?))?,
        b'(' => {
            if m.marks.len() >= MAX_STACK {
                return Err(malformed("too many pickle MARKs"));
            }
            m.marks.push(m.stack.len());
        }
        b't' => {
            let items = m.pop_mark()?;
            m.push(Value::Tuple(new_seq(items)?))?;
        }
        0x85..=0x87 => {
            let n = usize::from(op - 0x84);
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(m.pop()?);
            }
            items.reverse();
            m.push(Value::Tuple(new_seq(items)?))?;
        }
        b's' => {
            let v = m.pop()?;
            let k = m.pop()?;
            m.set_items_on_top(vec![k, v])?;
        }
        b'u' => {
            let flat = m.pop_mark()?;
            m.set_items_on_top(flat)?;
        }
        b'a' => {
            let v = m.pop()?;
            m.extend_top_list(vec![v])?;
        }
        b'e' => {
            let items = m.pop_mark()?;
            m.extend_top_list(items)?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}

fn long_value(bytes: Vec<u8>) -> Value {
    if bytes.is_empty() {
        return Value::Int(0);
    }
    if bytes.len() <= 8 {
        let negative = bytes[bytes.len() - 1] & 0x80 != 0;
        let mut full = if negative { [0xffu8; 8] } else { [0u8; 8] };
        full[..bytes.len()].copy_from_slice(&bytes);
        return Value::Int(i64::from_le_bytes(full));
    }
    Value::BigInt(bytes.into())
}

fn unicode(bytes: Vec<u8>) -> Result<Value, Problem> {
    let text = String::from_utf8(bytes).map_err(|_| malformed("pickle string is not UTF-8"))?;
    Ok(Value::Str(text.into()))
}

fn latin1(bytes: Vec<u8>) -> Value {
    let text: String = bytes.iter().map(|&b| char::from(b)).collect();
    Value::Str(text.into())
}

/// Applies an allowed callable (REDUCE / NEWOBJ), interpreted here.
fn apply(callable: &Value, args: &Value) -> Result<Value, Problem> {
    let Value::Callable(callable) = callable else {
        return Err(malformed("REDUCE on something not callable"));
    };
    let args = args.as_items().ok_or_else(|| malformed("REDUCE arguments are not a tuple"))?;
    match callable {
        Callable::OrderedDict => ordered_dict(args),
        Callable::RebuildTensor | Callable::RebuildTensorV2 => rebuild_tensor(args),
        Callable::RebuildParameter => match args.first() {
            Some(t @ Value::Tensor(_)) => Ok(t.clone()),
            _ => Err(malformed("_rebuild_parameter without a tensor")),
        },
        Callable::StorageType(dtype) => Err(malformed(format!("a {} storage class is called", dtype.name()))),
    }
}

fn ordered_dict(args: &[Value]) -> Result<Value, Problem> {
    let mut map = Map { depth: 1, items: Vec::new() };
    if let Some(pairs) = args.first() {
        let pairs = pairs.as_items().ok_or_else(|| malformed("OrderedDict argument is not a list"))?;
        for pair in pairs {
            match pair.as_items() {
                Some([k, v]) => {
                    map.depth = map.depth.max(1 + k.depth().max(v.depth()));
                    map.items.push((k.clone(), v.clone()));
                }
                _ => return Err(malformed("OrderedDict item is not a pair")),
            }
        }
    }
    if map.depth > MAX_DEPTH {
        return Err(malformed("pickle nests too deeply"));
    }
    Ok(Value::Dict(Rc::new(map)))
}

fn rebuild_tensor(args: &[Value]) -> Result<Value, Problem> {
    let [storage, offset, size, stride, ..] = args else {
        return Err(malformed("_rebuild_tensor with too few arguments"));
    };
    let Value::Storage(storage) = storage else {
        return Err(malformed("_rebuild_tensor without a storage"));
    };
    let offset = offset
        .as_int()
        .and_then(|o| usize::try_from(o).ok())
        .ok_or_else(|| malformed("tensor offset is not a size"))?;
    let shape = size.as_sizes().ok_or_else(|| malformed("tensor shape is not a tuple of sizes"))?;
    let stride = stride.as_sizes().ok_or_else(|| malformed("tensor stride is not a tuple of sizes"))?;
    Ok(Value::Tensor(Rc::new(TensorRef { storage: (**storage).clone(), offset, shape, stride })))
}

/// Interprets `('storage', type, key, location, numel[, view_metadata])`.
fn persistent_load(pid: &Value) -> Result<Value, Problem> {
    let bad = || malformed("persistent id is not a storage");
    let items = pid.as_items().ok_or_else(bad)?;
    let [tag, class, key, _location, numel, rest @ ..] = items else {
        return Err(bad());
    };
    if tag.as_str() != Some("storage") {
        return Err(bad());
    }
    let Value::Callable(Callable::StorageType(dtype)) = class else {
        return Err(bad());
    };
    let key = match key {
        Value::Str(s) => s.to_string(),
        Value::Int(i) => i.to_string(),
        _ => return Err(bad()),
    };
    let numel = numel.as_int().and_then(|n| u64::try_from(n).ok()).ok_or_else(bad)?;
    let mut storage = StorageRef { key, dtype: *dtype, numel, base: 0 };
    if let Some(view) = rest.first().and_then(Value::as_items) {
        // Old storage views: (view_key, offset, view_size) into the root storage.
        let [_, offset, size] = view else {
            return Err(bad());
        };
        storage.base = offset.as_int().and_then(|n| u64::try_from(n).ok()).ok_or_else(bad)?;
        storage.numel = size.as_int().and_then(|n| u64::try_from(n).ok()).ok_or_else(bad)?;
    }
    Ok(Value::Storage(Rc::new(storage)))
}

/// Finds the tensor stored under `key` in a state dict.
pub(crate) fn find_tensor<'a>(state: &'a Value, key: &str) -> Result<&'a TensorRef, Problem> {
    let Value::Dict(map) = state else {
        return Err(malformed("the pickle does not hold a state dict"));
    };
    let value = map
        .items
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
        .ok_or_else(|| Problem::MissingKey(key.to_string()))?;
    match value {
        Value::Tensor(t) => Ok(t),
        _ => Err(malformed(format!("{key} is not a tensor"))),
    }
}

/// All tensors of a state dict, in order.
pub(crate) fn all_tensors(state: &Value) -> Vec<&TensorRef> {
    match state {
        Value::Dict(map) => map
            .items
            .iter()
            .filter_map(|(_, v)| match v {
                Value::Tensor(t) => Some(&**t),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

impl<R> PickleInput<R> {
    /// The wrapped reader, positioned just after the last byte consumed.
    pub(crate) fn into_inner(self) -> R {
        self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(bytes: &[u8]) -> Result<Value, Problem> {
        let mut input = PickleInput::new(bytes, bytes.len() as u64);
        unpickle(&mut input)
    }

    #[test]
    fn forbidden_globals_are_refused_at_global() {
        // GLOBAL builtins.eval, never reduced: refused anyway.
        let err = run(b"\x80\x02cbuiltins\neval\n.").unwrap_err();
        assert!(matches!(err, Problem::Forbidden(ref g) if g == "builtins.eval"));
        // STACK_GLOBAL with strings.
        let err = run(b"\x80\x04\x8c\x02os\x8c\x06system\x93.").unwrap_err();
        assert!(matches!(err, Problem::Forbidden(ref g) if g == "os.system"));
        let err = run(b"\x80\x02ctorch\nload\n.").unwrap_err();
        assert!(matches!(err, Problem::Forbidden(ref g) if g == "torch.load"));
    }

    #[test]
    fn a_small_state_dict_is_built() {
        // OrderedDict() then SETITEM 'w' -> _rebuild_tensor_v2(storage, 2, (2, 3), (3, 1), False,
        // OrderedDict()), with a persistent id and memo traffic.
        let mut p = b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01".to_vec();
        p.extend_from_slice(b"X\x01\x00\x00\x00w");
        p.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        p.extend_from_slice(b"(X\x07\x00\x00\x00storagectorch\nHalfStorage\nX\x01\x00\x00\x007");
        p.extend_from_slice(b"X\x03\x00\x00\x00cpuK\x08tQ");
        p.extend_from_slice(b"K\x02K\x02K\x03\x86K\x03K\x01\x86\x89h\x00)RtRs.");
        let state = run(&p).unwrap();
        let t = find_tensor(&state, "w").unwrap();
        assert_eq!(t.storage.key, "7");
        assert_eq!(t.storage.dtype, Dtype::F16);
        assert_eq!(t.storage.numel, 8);
        assert_eq!((t.offset, t.shape.clone(), t.stride.clone()), (2, vec![2, 3], vec![3, 1]));
        assert!(matches!(find_tensor(&state, "x"), Err(Problem::MissingKey(_))));
    }

    #[test]
    fn storage_views_and_python2_ordered_dicts_are_understood() {
        // OrderedDict([['k', tensor]]) with a storage view (root 'r', offset 4, size 6).
        let mut p = b"\x80\x02ccollections\nOrderedDict\n(]".to_vec();
        p.extend_from_slice(b"]U\x01kactorch._utils\n_rebuild_tensor\n(");
        p.extend_from_slice(b"(U\x07storagectorch\nFloatStorage\nU\x01rU\x06cuda:0K\x10");
        p.extend_from_slice(b"(U\x01vK\x04K\x06ttQK\x00K\x06\x85K\x01\x85tRaatR.");
        let state = run(&p).unwrap();
        let t = find_tensor(&state, "k").unwrap();
        assert_eq!((t.storage.base, t.storage.numel), (4, 6));
        assert_eq!(t.shape, vec![6]);
    }

    #[test]
    fn hostile_pickles_fail_cleanly() {
        // Ever deeper lists through the memo.
        let mut deep = b"\x80\x02]q\x00".to_vec();
        for _ in 0..200 {
            deep.extend_from_slice(b"]h\x00aq\x00");
        }
        deep.push(b'.');
        assert!(run(&deep).is_err());
        // Doubling a tuple through the memo: cheap thanks to sharing.
        let mut wide = b"\x80\x02)q\x00".to_vec();
        for _ in 0..100 {
            wide.extend_from_slice(b"0h\x00h\x00\x86q\x00");
        }
        wide.push(b'.');
        assert!(run(&wide).is_err(), "nesting limit");
        // Huge lengths, unknown opcodes, empty memo, underflow, no STOP.
        for bad in [
            &b"\x80\x02X\xff\xff\xff\xff."[..],
            b"\x80\x02\x8d\xff\xff\xff\xff\xff\xff\xff\xff.",
            b"\x80\x02\x8b\xff\xff\xff\x7f.",
            b"\x80\x02\xff.",
            b"\x80\x02h\x05.",
            b"\x80\x02s.",
            b"\x80\x02t.",
            b"\x80\x02R.",
            b"\x80\x02K\x01K\x02R.",
            b"\x80\x02}K\x01a.",
            b"\x80\x02r\xff\xff\xff\xff.",
            b"\x80\x02N",
            b"",
        ] {
            assert!(run(bad).is_err(), "{bad:?}");
        }
    }
}
