"""moerouter.topk (radix select for large k) vs torch.topk and the read floor, in one run.

The sparse-attention indexer's shapes (fp32): k = 512 over 1x262144, 64x65536, 1024x8192,
4096x16384, k = 2048 over 256x262144, and one 2^20-long row with k = 1024 (the longest rows
issue 7 asks for, one query); sorted and unsorted. Each call captured in a CUDA graph over
rotating distinct inputs (>= 3x L2 in total, so the reads come from HBM); floor =
bytes read / copy bandwidth measured in the same run.

Usage: python3 bench/topk_bench.py [--out FILE.md] [--dtype float32|bfloat16] [--torch-only]
--torch-only times torch.topk and the floor alone (no moerouter package needed), to sit beside
bench/radix_topk_bench (the C++ harness of our kernel, same method) from the same run.
"""

import argparse
import math

import torch

from graph_timing import graph_us

SHAPES = [(1, 262144, 512), (64, 65536, 512), (1024, 8192, 512), (4096, 16384, 512), (256, 262144, 2048),
          (1, 1048576, 1024)]


def copy_bandwidth():
    a = torch.empty(1 << 28, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    us = graph_us(lambda x: b.copy_(x), [a] * 4)
    return 2 * a.numel() / (us * 1e-6)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--torch-only", action="store_true")
    args = ap.parse_args()
    dtype = getattr(torch, args.dtype)
    ours = not args.torch_only
    if ours:
        import moerouter
    props = torch.cuda.get_device_properties(0)
    bw = copy_bandwidth()
    lines = [f"Device: **{props.name}**, torch {torch.__version__}, copy bandwidth {bw / 1e9:.0f} GB/s "
             f"(read + write) in the same run. {args.dtype} values; us per call.", "",
             "| rows x length | k | ours sorted | ours unsorted | torch.topk sorted | torch.topk unsorted | read floor | torch sorted / ours sorted |",
             "|---|---|---|---|---|---|---|---|"]
    for rows, length, k in SHAPES:
        nbytes = rows * length * dtype.itemsize
        copies = max(2, min(32, math.ceil(3 * props.L2_cache_size / nbytes)))
        inputs = [torch.randn(rows, length, device="cuda").to(dtype) for _ in range(copies)]
        same = None
        if ours:
            # Correctness on this data first: same indices as torch.topk where it has no ties
            # (fp32 random data; bf16 has ties, which torch does not break by index).
            ov, oi = moerouter.topk(inputs[0], k)
            tv, ti = torch.topk(inputs[0], k, dim=1)
            same = torch.equal(oi.long(), ti)
        nan = float("nan")
        r = [graph_us(lambda x: moerouter.topk(x, k), inputs) if ours else nan,
             graph_us(lambda x: moerouter.topk(x, k, sorted=False), inputs) if ours else nan,
             graph_us(lambda x: torch.topk(x, k, dim=1), inputs),
             graph_us(lambda x: torch.topk(x, k, dim=1, sorted=False), inputs)]
        floor = nbytes / bw * 1e6
        line = (f"| {rows}x{length} | {k} | " + " | ".join(f"{t:.1f}" for t in r) +
                f" | {floor:.1f} | {r[2] / r[0]:.2f}x |")
        note = "" if same is None else "(indices equal torch.topk)" if same else "(indices differ from torch.topk)"
        print(line, note, flush=True)
        lines.append(line)
        del inputs
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        open(args.out, "w").write(text)


if __name__ == "__main__":
    main()
