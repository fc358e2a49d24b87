"""PyTorch eager equivalents of moerouter's kernels, timed with moerouter_bench's method.

Each op is the sequence of eager PyTorch ops a model file would run (DeepSeek-V4's reference
`Gate`: fp32 linear, softplus().sqrt(), + bias, topk, gather, renormalize, scale), captured in
a CUDA graph so launch overhead is not counted. Inputs cold as in bench/moerouter_bench.cu:
rotate R distinct input sets (R sets >= 3x L2, R <= 256), else a 3x-L2 read plus a re-read of
the layer's parameters before every launch, whose own time (a graph of those alone) is
subtracted.

Usage: python3 bench/torch_bench.py --json FILE [--quick]
"""

import argparse
import json
import math

import torch
import torch.nn.functional as F

MODELS = [
    # name, hidden, experts, k, scale, vocab
    ("flash", 4096, 256, 6, 1.5, 129280),
    ("pro", 7168, 384, 6, 2.5, 129280),
]


def route_from_logits(logits, bias, k, scale):
    s = F.softplus(logits).sqrt()
    ids = torch.topk(s + bias, k, dim=-1, sorted=True).indices
    w = s.gather(1, ids)
    w = w / w.sum(-1, keepdim=True).clamp_min(1e-20) * scale
    return w, ids


def hash_from_logits(logits, tokens, table, scale):
    ids = table[tokens].long()
    s = F.softplus(logits.gather(1, ids)).sqrt()
    return s / s.sum(-1, keepdim=True).clamp_min(1e-20) * scale, ids


class Bench:
    def __init__(self):
        props = torch.cuda.get_device_properties(0)
        self.name = props.name
        self.l2 = props.L2_cache_size
        self.flush_buf = torch.ones(3 * self.l2 // 4, dtype=torch.int32, device="cuda")
        self.stream = torch.cuda.Stream()
        self.params = []

    def graph_us(self, body, replays=15):
        g = torch.cuda.CUDAGraph()
        with torch.cuda.stream(self.stream):
            body()  # warm-up outside the graph (allocator, cuBLAS handles)
            torch.cuda.synchronize()
            with torch.cuda.graph(g, stream=self.stream):
                body()
        times = []
        for i in range(replays + 2):
            e0 = torch.cuda.Event(enable_timing=True)
            e1 = torch.cuda.Event(enable_timing=True)
            e0.record()
            g.replay()
            e1.record()
            e1.synchronize()
            if i >= 2:
                times.append(e0.elapsed_time(e1))
        times.sort()
        del g
        return times[len(times) // 2] * 1e3

    def rotation_sets(self, set_bytes):
        need = math.ceil(3 * self.l2 / max(set_bytes, 1))
        return max(need, 1) if need <= 256 else 0

    def time_cold(self, launch, sets, flush_mode):
        launches = max(sets, 32)
        if not flush_mode:
            def body():
                for i in range(launches):
                    launch(i % sets)
            return self.graph_us(body) / launches, f"rotate {sets}"

        def both():
            for i in range(launches):
                self.flush_buf.max()
                for p in self.params:
                    p.max()
                launch(i % sets)

        def alone():
            for i in range(launches):
                self.flush_buf.max()
                for p in self.params:
                    p.max()
        return (self.graph_us(both) - self.graph_us(alone)) / launches, "flush+warm params"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", required=True)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    b = Bench()
    ns = [1, 16384] if args.quick else [1, 16, 64, 1024, 16384]
    out = open(args.json, "w")
    print(f"torch {torch.__version__} on {b.name}")
    gen = torch.Generator(device="cuda").manual_seed(0)
    for name, h, e, k, scale, vocab in MODELS:
        w_bf16 = (torch.randn(e, h, device="cuda", generator=gen) * (1.5 / math.sqrt(h))).to(torch.bfloat16)
        w_f32 = w_bf16.float()  # the reference Gate's weight.float(), made once here
        bias = 8.08 + 0.02 * torch.randn(e, device="cuda", generator=gen)
        table = torch.randint(0, e, (vocab, k), device="cuda", dtype=torch.int32, generator=gen)
        b.params = [w_f32, bias, table]
        for n in ns:
            logits_bytes, x_bytes, out_bytes = n * e * 4, n * h * 2, n * k * 8
            r_logits = b.rotation_sets(logits_bytes + out_bytes)
            r_x = b.rotation_sets(x_bytes + out_bytes)
            r_hash = b.rotation_sets(n * 4 + n * e * 4 + out_bytes)
            alloc = min(max(r_logits, r_x, r_hash, 1), 256)
            logits = [torch.randn(n, e, device="cuda", generator=gen) * 1.5 for _ in range(alloc)]
            xs = [torch.randn(n, h, device="cuda", generator=gen).to(torch.bfloat16) for _ in range(alloc)]
            toks = [torch.randint(0, vocab, (n,), device="cuda", generator=gen) for _ in range(alloc)]

            ops = {
                "route_logits_f32": (r_logits, lambda s: route_from_logits(logits[s], bias, k, scale)),
                "hash_route_logits": (r_hash, lambda s: hash_from_logits(logits[s], toks[s], table, scale)),
                # The reference computes the full fp32 gate GEMM on hash layers too.
                "hash_route_x": (r_x, lambda s: hash_from_logits(F.linear(xs[s].float(), w_f32), toks[s], table, scale)),
                "router_gemm": (r_x, lambda s: F.linear(xs[s].float(), w_f32)),
                "route_x_gemm_fused": (r_x, lambda s: route_from_logits(F.linear(xs[s].float(), w_f32), bias, k, scale)),
            }
            for op, (r, fn) in ops.items():
                flush_mode = r == 0
                us, method = b.time_cold(fn, min(alloc, 4) if flush_mode else r, flush_mode)
                print(f"{op:22s} {name:5s} N={n:<6d} {us:9.2f} us  [{method}]", flush=True)
                out.write(json.dumps({"impl": "torch", "op": op, "model": name, "n": n, "us": us,
                                      "method": method, "device": b.name}) + "\n")
                out.flush()
            del logits, xs, toks
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
