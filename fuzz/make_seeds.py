"""Writes the small seed corpus under fuzz/seeds/<target>/ (no PyTorch or NumPy needed).

    python3 fuzz/make_seeds.py        # needs Pillow for the image seeds

Weights seeds are VGG-19 state dicts one channel wide (every conv loads through load_vgg19)
plus a few extra tensors of other dtypes, views and strides, in each container the crate
reads: legacy .pth (torch.save's old format, 2017 and recent tensor forms), zip .pth (stored
and deflated), .npz, and the raw state-dict pickles. Torch's classes are stood in for by
fake modules so that pickle writes exactly the GLOBALs torch writes.
"""
import collections
import io
import os
import pickle
import struct
import sys
import types
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
SEEDS = os.path.join(HERE, 'seeds')
FIXTURES = os.path.join(HERE, '..', 'tests', 'fixtures')
VGG19_CONV_INDICES = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28]

# ------------------------------------------------------------------ stand-ins for torch's globals
torch = types.ModuleType('torch')
torch_utils = types.ModuleType('torch._utils')
sys.modules['torch'] = torch
sys.modules['torch._utils'] = torch_utils
STORAGE_CLASSES = {}
for name, fmt in [('FloatStorage', '<f'), ('DoubleStorage', '<d'), ('HalfStorage', '<e'), ('BFloat16Storage', 'bf16'),
                  ('LongStorage', '<q')]:
    cls = type(name, (), {})
    cls.__module__, cls.__qualname__ = 'torch', name
    setattr(torch, name, cls)
    STORAGE_CLASSES[name] = (cls, fmt)
for name in ['_rebuild_tensor', '_rebuild_tensor_v2', '_rebuild_parameter']:
    fn = (lambda *a: None)
    fn.__module__, fn.__qualname__, fn.__name__ = 'torch._utils', name, name
    setattr(torch_utils, name, fn)


class Storage:
    def __init__(self, key, cls_name, values):
        self.key, self.cls_name, self.values = key, cls_name, values

    def raw(self):
        fmt = STORAGE_CLASSES[self.cls_name][1]
        if fmt == 'bf16':
            return b''.join(struct.pack('<f', v)[2:] for v in self.values)
        return b''.join(struct.pack(fmt, v) for v in self.values)


class T:
    """A tensor: a view (offset, shape, stride) of a storage."""

    def __init__(self, storage, offset, shape, stride):
        self.storage, self.offset, self.shape, self.stride = storage, offset, tuple(shape), tuple(stride)


def row_major(shape):
    stride, acc = [], 1
    for d in reversed(shape):
        stride.append(acc)
        acc *= d
    return tuple(reversed(stride))


def state_dict():
    """(state dict, storages in order)."""
    sd, storages = collections.OrderedDict(), []
    cin = 3
    for n, i in enumerate(VGG19_CONV_INDICES):
        w = Storage(str(2 * n), 'FloatStorage', [((k * 7 + n) % 11 - 5) / 10 for k in range(cin * 9)])
        b = Storage(str(2 * n + 1), 'FloatStorage', [n / 100])
        storages += [w, b]
        sd[f'features.{i}.weight'] = T(w, 0, (1, cin, 3, 3), row_major((1, cin, 3, 3)))
        sd[f'features.{i}.bias'] = T(b, 0, (1,), (1,))
        cin = 1
    extra = Storage('100', 'FloatStorage', [float(k) for k in range(8)])
    f64 = Storage('101', 'DoubleStorage', [0.5, -1.25, 3.0, 1e300, 0.0, 2.0])
    f16 = Storage('102', 'HalfStorage', [0.5, -2.0, 65504.0, 6e-8])
    bf16 = Storage('103', 'BFloat16Storage', [1.0, -3.5, 0.0, 256.0])
    i64 = Storage('104', 'LongStorage', [1, 2])
    storages += [extra, f64, f16, bf16, i64]
    sd['extra.t'] = T(extra, 1, (3, 2), (1, 3))  # transposed view with an offset
    sd['extra.f64'] = T(f64, 0, (2, 3), (3, 1))
    sd['extra.f16'] = T(f16, 0, (4,), (1,))
    sd['extra.bf16'] = T(bf16, 0, (2, 2), (2, 1))
    sd['extra.i64'] = T(i64, 0, (2,), (1,))
    sd['extra.empty'] = T(extra, 0, (0, 4), (4, 1))
    return sd, storages


def state_pickle(sd, v2, location='cpu'):
    class P(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, Storage):
                pid = ('storage', STORAGE_CLASSES[obj.cls_name][0], obj.key, location, len(obj.values))
                return pid if v2 else pid + (None,)
            return None

        def reducer_override(self, obj):
            if isinstance(obj, T):
                if v2:
                    args = (obj.storage, obj.offset, obj.shape, obj.stride, False, collections.OrderedDict())
                    return (torch_utils._rebuild_tensor_v2, args)
                return (torch_utils._rebuild_tensor, (obj.storage, obj.offset, obj.shape, obj.stride))
            return NotImplemented

    buf = io.BytesIO()
    P(buf, protocol=2).dump(sd)
    return buf.getvalue()


def legacy(sd, storages, v2):
    out = io.BytesIO()
    pickle.dump(0x1950A86A20F9469CFC6C, out, protocol=2)
    pickle.dump(1001, out, protocol=2)
    pickle.dump({'protocol_version': 1001, 'little_endian': True, 'type_sizes': {'short': 2, 'int': 4, 'long': 4}},
                out, protocol=2)
    out.write(state_pickle(sd, v2, 'cpu' if v2 else 'cuda:0'))
    pickle.dump([s.key for s in storages], out, protocol=2)
    for s in storages:
        out.write(struct.pack('<q', len(s.values)))
        out.write(s.raw())
    return out.getvalue()


def torch_zip(sd, storages, compression):
    out = io.BytesIO()
    with zipfile.ZipFile(out, 'w', compression) as z:
        z.writestr('archive/data.pkl', state_pickle(sd, True))
        z.writestr('archive/byteorder', 'little')
        for s in storages:
            z.writestr(f'archive/data/{s.key}', s.raw())
        z.writestr('archive/version', '3\n')
    return out.getvalue()


def npy(descr, shape, data, fortran=False):
    shape_text = '(' + ''.join(f'{d}, ' for d in shape).rstrip(' ') + ')' if len(shape) != 1 else f'({shape[0]},)'
    header = f"{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape_text}, }}"
    pad = 64 - (10 + len(header) + 1) % 64
    header = header + ' ' * pad + '\n'
    return b'\x93NUMPY\x01\x00' + struct.pack('<H', len(header)) + header.encode() + data


def npz(sd, compression):
    out = io.BytesIO()
    with zipfile.ZipFile(out, 'w', compression) as z:
        for key, t in sd.items():
            if not key.startswith('features.'):
                continue
            n = 1
            for d in t.shape:
                n *= d
            z.writestr(f'{key}.npy', npy('<f4', t.shape, b''.join(struct.pack('<f', v) for v in t.storage.values[:n])))
        z.writestr('extra.t.npy', npy('<f4', (3, 2), b''.join(struct.pack('<f', v) for v in range(6)), fortran=True))
        z.writestr('extra.f64.npy', npy('<f8', (2, 3), b''.join(struct.pack('<d', v) for v in range(6))))
        z.writestr('extra.f16.npy', npy('<f2', (4,), b''.join(struct.pack('<e', v) for v in [0.5, -2, 1, 0])))
        z.writestr('extra.i64.npy', npy('<i8', (2,), struct.pack('<qq', 1, 2)))
        z.writestr('extra.empty.npy', npy('<f4', (0, 4), b''))
    return out.getvalue()


def write(target, name, data):
    folder = os.path.join(SEEDS, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), 'wb') as f:
        f.write(data)


def fixture(name):
    with open(os.path.join(FIXTURES, name), 'rb') as f:
        return f.read()


def weights_seeds():
    sd, storages = state_dict()
    write('pth_legacy', 'tiny_v2.pth', legacy(sd, storages, True))
    write('pth_legacy', 'tiny_2017.pth', legacy(sd, storages, False))
    write('pth_legacy', 'malicious_legacy.pth', fixture('malicious_legacy.pth'))
    write('pth_zip', 'tiny_stored.pth', torch_zip(sd, storages, zipfile.ZIP_STORED))
    write('pth_zip', 'tiny_deflated.pth', torch_zip(sd, storages, zipfile.ZIP_DEFLATED))
    write('pth_zip', 'malicious_zip.pth', fixture('malicious_zip.pth'))
    write('npz', 'tiny_stored.npz', npz(sd, zipfile.ZIP_STORED))
    write('npz', 'tiny_deflated.npz', npz(sd, zipfile.ZIP_DEFLATED))
    write('pickle', 'tiny_v2.pkl', state_pickle(sd, True))
    write('pickle', 'tiny_2017.pkl', state_pickle(sd, False, 'cuda:0'))
    with zipfile.ZipFile(io.BytesIO(fixture('vgg19_tiny_zip.pth'))) as z:
        name = next(n for n in z.namelist() if n.endswith('data.pkl'))
        write('pickle', 'fixture_zip_data.pkl', z.read(name))
    with zipfile.ZipFile(io.BytesIO(fixture('malicious_zip.pth'))) as z:
        name = next(n for n in z.namelist() if n.endswith('data.pkl'))
        write('pickle', 'malicious.pkl', z.read(name))
    for proto in [0, 1, 4, 5]:
        # Other protocols' opcodes (MARK/SETITEM forms, FRAME, MEMOIZE, SHORT_BINUNICODE, ...).
        plain = collections.OrderedDict([('a', [1, 2.5, 'x', b'y', None, True]), ('b', (1 << 70, -3, 70000))])
        write('pickle', f'plain_protocol{proto}.pkl', pickle.dumps(plain, protocol=proto))


def image_seeds():
    from PIL import Image
    rgb = Image.new('RGB', (5, 3))
    rgb.putdata([(x * 50, y * 100, (x + y) * 30) for y in range(3) for x in range(5)])
    out = lambda name, img, fmt, **kw: (lambda b: (img.save(b, fmt, **kw), write('image', name, b.getvalue())))(
        io.BytesIO())
    out('rgb.png', rgb, 'PNG')
    out('rgba.png', rgb.convert('RGBA'), 'PNG')
    out('gray16.png', rgb.convert('I;16'), 'PNG')
    out('palette.png', rgb.convert('P'), 'PNG')
    out('rgb.jpg', rgb, 'JPEG', quality=80)
    out('progressive.jpg', rgb, 'JPEG', progressive=True)
    out('gray.jpg', rgb.convert('L'), 'JPEG')
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90
    out('oriented.jpg', rgb, 'JPEG', exif=exif.tobytes())
    out('anim.gif', rgb.convert('P'), 'GIF', save_all=True, append_images=[rgb.rotate(180).convert('P')])
    out('rgb.bmp', rgb, 'BMP')
    out('rgb.tiff', rgb, 'TIFF')
    out('lzw.tiff', rgb, 'TIFF', compression='tiff_lzw')
    out('lossy.webp', rgb, 'WEBP', quality=50)
    out('lossless.webp', rgb.convert('RGBA'), 'WEBP', lossless=True)
    out('rgb.ppm', rgb, 'PPM')
    out('rgba.ico', rgb.convert('RGBA'), 'ICO')
    out('rgb.qoi', rgb, 'QOI')


if __name__ == '__main__':
    weights_seeds()
    image_seeds()
