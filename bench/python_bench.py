"""moerouter through its Python API vs PyTorch eager vs torch.compile, on the GPU, in one run.

Route from x (the router GEMM + sqrt-softplus + bias + top-k + renormalize + scale), DSV4-Flash
and -Pro, decode and prefill batch sizes. Each variant is timed two ways:
  eager: a Python loop of calls (what a plain PyTorch program pays: Python + launches + GPU);
  graph: the same calls captured in one CUDA graph and replayed (the GPU time an engine pays).
Cold L2: every call reads a different copy of W (copies totalling >= 3x the L2 size).
The PyTorch reference is DeepSeek-V4's Gate math in eager ops, fp32 GEMM as the spec says.

Usage: python3 bench/python_bench.py [--quick] [--out FILE.md]
"""

import argparse
import math

import torch
import torch.nn.functional as F

import moerouter
from graph_timing import graph_us

MODELS = [("flash", 4096, 256, 6, 1.5), ("pro", 7168, 384, 6, 2.5)]


def torch_route(x, w, bias, k: int, scale: float):
    logits = F.linear(x.float(), w.float())
    s = F.softplus(logits).sqrt()
    ids = torch.topk(s + bias, k, dim=-1).indices
    wt = s.gather(1, ids)
    return wt / wt.sum(-1, keepdim=True).clamp_min(1e-20) * scale, ids


def ours(x, w, bias, k: int, scale: float):
    return moerouter.route(x, w, bias, k, scale)


def time_eager(fn, xs, ws, bias, k, scale, iters):
    for i in range(3):
        fn(xs[i % len(xs)], ws[i % len(ws)], bias, k, scale)
    torch.cuda.synchronize()
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    e0.record()
    for i in range(iters):
        fn(xs[i % len(xs)], ws[i % len(ws)], bias, k, scale)
    e1.record()
    torch.cuda.synchronize()
    return e0.elapsed_time(e1) * 1000.0 / iters


def time_graph(fn, xs, ws, bias, k, scale):
    return graph_us(lambda i: fn(xs[i % len(xs)], ws[i], bias, k, scale), list(range(len(ws))))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    props = torch.cuda.get_device_properties(0)
    l2 = props.L2_cache_size
    compiled = torch.compile(torch_route, fullgraph=True, dynamic=False)
    sizes = [1, 64, 16384] if not a.quick else [1, 1024]
    lines = [f"Device: **{props.name}** ({props.multi_processor_count} SMs, {l2 / 2**20:.0f} MB L2), "
             f"torch {torch.__version__}. Route from x, k = 6; us per call (median); cold W.",
             "",
             "| model | N | ours eager | ours graph | torch eager | torch graph | torch.compile eager | torch.compile graph | graph: torch / ours |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, h, e, k, scale in MODELS:
        wbytes = e * h * 2
        copies = max(4, min(64, math.ceil(3 * l2 / wbytes)))
        g = torch.Generator(device="cuda").manual_seed(0)
        ws = [(torch.randn(e, h, device="cuda", generator=g) / math.sqrt(h)).bfloat16() for _ in range(copies)]
        bias = 8.08 + 0.02 * torch.randn(e, device="cuda", generator=g)
        for n in sizes:
            xs = [torch.randn(n, h, device="cuda", generator=g).bfloat16() for _ in range(2)]
            # Correctness first: ours and torch agree on the ids (up to near ties) for this input.
            wo, io = ours(xs[0], ws[0], bias, k, scale)
            wt, it = torch_route(xs[0], ws[0], bias, k, scale)
            agree = (io.long() == it).float().mean().item()
            row = [time_eager(ours, xs, ws, bias, k, scale, 50), time_graph(ours, xs, ws, bias, k, scale),
                   time_eager(torch_route, xs, ws, bias, k, scale, 50), time_graph(torch_route, xs, ws, bias, k, scale),
                   time_eager(compiled, xs, ws, bias, k, scale, 50), time_graph(compiled, xs, ws, bias, k, scale)]
            line = (f"| {name} | {n} | " + " | ".join(f"{t:.1f}" for t in row) +
                    f" | {row[3] / row[1]:.1f}x |")
            print(line, f"(ids agreeing with torch: {agree * 100:.2f}%)", flush=True)
            lines.append(line)
            del xs
        del ws
        torch.cuda.empty_cache()
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
