#!/usr/bin/env python3
"""PyTorch baseline for stylize's training step: the same method, the same FLOP count.

Gatys et al. style transfer with VGG-19 `features` up to relu5_1 (built here, torchvision's
layout, He-initialized random weights: no download), content at relu4_2 (after the ReLU), style at
relu1_1..relu5_1 weighted 1, 0.75, 0.2, 0.2, 0.2, unnormalized Gram F F^T, style term
w * mean((G - A)^2) / (C H W), content term mean((F - P)^2), total = 1 * content + 1e6 * style,
Adam (lr 0.003) on the normalized image, as stylize optimizes it.

Times K steps after W warm-up steps, synchronizing the device before reading the clock, and
prints ms/step, effective GFLOP/s (stylize's count: 2 H W Cin Cout 9 per conv pass, forward and
backward-to-input; Gram 2 C^2 H W forward and as much backward) and, on CUDA, the peak of
torch.cuda.max_memory_allocated.

    python benches/pytorch_baseline.py --size 512 --iterations 20 --warmup 5 --device cuda --json
"""

import argparse
import json
import sys
import time

import torch
import torch.nn as nn

# torchvision's vgg19 "E" configuration, cut after conv5_1 (+ its ReLU): features[0..=29].
VGG19_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512]
CONTENT_LAYER = "relu4_2"
STYLE_LAYERS = [("relu1_1", 1.0), ("relu2_1", 0.75), ("relu3_1", 0.2), ("relu4_1", 0.2), ("relu5_1", 0.2)]
CONTENT_WEIGHT = 1.0
STYLE_WEIGHT = 1e6
LEARNING_RATE = 0.003
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def build_features(seed, inplace_relu=True):
    """nn.Sequential laid out as torchvision's vgg19().features[:30], with layer names beside
    (torchvision's ReLUs are in place, so each conv's output tensor is overwritten by its ReLU)."""
    gen = torch.Generator().manual_seed(seed)
    layers, names = [], []
    in_channels, block, index = 3, 1, 1
    for v in VGG19_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            names.append(f"pool{block}")
            block, index = block + 1, 1
            continue
        conv = nn.Conv2d(in_channels, v, kernel_size=3, padding=1)
        with torch.no_grad():
            # He (Kaiming) normal, fan_in, as stylize's random_weights: std sqrt(2 / (Cin 9)).
            std = (2.0 / (in_channels * 9)) ** 0.5
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * std)
            conv.bias.copy_(torch.rand(conv.bias.shape, generator=gen) * 0.1 - 0.05)
        layers += [conv, nn.ReLU(inplace=inplace_relu)]
        names += [f"conv{block}_{index}", f"relu{block}_{index}"]
        in_channels, index = v, index + 1
    features = nn.Sequential(*layers)
    for p in features.parameters():
        p.requires_grad_(False)
    return features.eval(), names


def stylize_flops(size):
    """stylize's Plan::flops_per_step for a size x size image: every conv up to conv5_1, forward
    and backward to its input (conv1_1's too: the image is optimized), and each style Gram,
    forward and backward."""
    flops, side, in_channels = 0, size, 3
    for v in VGG19_CFG:
        if v == "M":
            side //= 2
            continue
        flops += 2 * (2 * side * side * v * in_channels * 9)
        in_channels = v
    for channels, s in style_shapes(size):
        flops += 2 * (2 * channels * channels * s * s)
    return flops


def style_shapes(size):
    """(channels, side) of relu1_1..relu5_1 for a size x size input (floor pooling)."""
    shapes, side = [], size
    for channels in (64, 128, 256, 512, 512):
        shapes.append((channels, side))
        side //= 2
    return shapes


class Extractor(nn.Module):
    """Runs `features` and returns the activations named in `wanted`."""

    def __init__(self, features, names, wanted):
        super().__init__()
        self.features = features
        self.names = names
        self.wanted = set(wanted)
        self.last = max(names.index(n) for n in wanted)

    def forward(self, x):
        out = {}
        for i, layer in enumerate(self.features):
            if i > self.last:
                break
            x = layer(x)
            if self.names[i] in self.wanted:
                out[self.names[i]] = x
        return out


def gram(f):
    c = f.shape[1]
    f = f.reshape(c, -1)
    return f @ f.t()


def make_step(extractor, content_target, style_targets, image, optimizer):
    def step():
        optimizer.zero_grad(set_to_none=True)
        acts = extractor(image)
        content = torch.mean((acts[CONTENT_LAYER] - content_target) ** 2)
        style = 0.0
        for (name, weight), target in zip(STYLE_LAYERS, style_targets):
            f = acts[name]
            _, c, h, w = f.shape
            style = style + weight * torch.mean((gram(f) - target) ** 2) / (c * h * w)
        total = CONTENT_WEIGHT * content + STYLE_WEIGHT * style
        total.backward()
        optimizer.step()
        return total

    return step


def on_off(value):
    if value not in ("on", "off"):
        raise argparse.ArgumentTypeError("expected on or off")
    return value == "on"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, nargs="+", default=[512],
                        help="image side in pixels (square); several sizes run one after another")
    parser.add_argument("--iterations", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tf32", type=on_off, default=False, help="allow TF32 in matmuls and cuDNN convs (on|off)")
    parser.add_argument("--cudnn-benchmark", type=on_off, default=True, help="cudnn.benchmark (on|off)")
    parser.add_argument("--inplace-relu", type=on_off, default=True,
                        help="ReLU(inplace=True) as torchvision builds VGG-19 (on|off)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads on CPU")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args(argv)

    if min(args.size) < 16:
        parser.error("--size must be at least 16 (four poolings before conv5_1)")
    if args.iterations < 1 or args.warmup < 0:
        parser.error("--iterations must be >= 1 and --warmup >= 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch.cuda.is_available() is False")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    for size in args.size:
        run_one(args, size)
    return 0


def run_one(args, size):
    """Times one size and prints its result (one JSON line with --json)."""
    device = torch.device(args.device)
    features, names = build_features(args.seed, args.inplace_relu)
    features = features.to(device)
    wanted = [CONTENT_LAYER] + [n for n, _ in STYLE_LAYERS]
    extractor = Extractor(features, names, wanted)

    gen = torch.Generator().manual_seed(args.seed + 1)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    shape = (1, 3, size, size)
    content = ((torch.rand(shape, generator=gen) - mean) / std).to(device)
    style_image = ((torch.rand(shape, generator=gen) - mean) / std).to(device)
    with torch.no_grad():
        content_target = extractor(content)[CONTENT_LAYER].detach().clone()
        style_acts = extractor(style_image)
        style_targets = [gram(style_acts[n]).detach() for n, _ in STYLE_LAYERS]
        del style_acts
    # The original starts from the content image; optimize it in normalized space as stylize does.
    image = content.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([image], lr=LEARNING_RATE)
    step = make_step(extractor, content_target, style_targets, image, optimizer)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        step()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.iterations):
        loss = step()
    sync()
    elapsed = time.perf_counter() - start
    final_loss = float(loss.detach())

    ms_per_step = 1e3 * elapsed / args.iterations
    flops = stylize_flops(size)
    gflops = flops / (ms_per_step * 1e-3) / 1e9
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else None
    device_name = torch.cuda.get_device_name() if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    result = {
        "ms_per_step": round(ms_per_step, 4),
        "gflops": round(gflops, 3),
        "peak_gpu_bytes": peak,
        "device": device_name,
        "size": size,
        "iterations": args.iterations,
        "warmup": args.warmup,
        "tf32": args.tf32,
        "cudnn_benchmark": args.cudnn_benchmark,
        "inplace_relu": args.inplace_relu,
        "gflop_per_step": round(flops / 1e9, 4),
        "final_loss": final_loss,
        "torch": torch.__version__,
    }
    if args.json:
        print(json.dumps(result), flush=True)
    else:
        print(f"PyTorch {torch.__version__} on {device_name}, {size}x{size}, "
              f"{args.iterations} steps after {args.warmup} warm-up (tf32 {'on' if args.tf32 else 'off'}, "
              f"cudnn.benchmark {'on' if args.cudnn_benchmark else 'off'})")
        print(f"  {ms_per_step:.3f} ms/step, {gflops:.2f} GFLOP/s effective ({flops / 1e9:.3f} GFLOP/step)")
        if peak is not None:
            print(f"  peak GPU memory allocated: {peak / 2**20:.1f} MiB")
        print(f"  final loss {final_loss:.6g}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
