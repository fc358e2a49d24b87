"""Merges moerouter_bench and torch_bench JSON lines into the markdown table of
docs/benchmarks.md.

Usage: python3 bench/report.py OURS.jsonl TORCH.jsonl > table.md
"""

import json
import sys

OPS = [
    ("route_logits_f32", "fused route from fp32 logits"),
    ("hash_route_logits", "hash route from fp32 logits"),
    ("hash_route_x", "hash route from x, W (k dot products; torch: full fp32 GEMM)"),
    ("router_gemm", "router GEMM only (cuBLASLt bf16 -> fp32; torch: fp32 linear)"),
    ("router_gemm_then_empty", "router GEMM followed by an empty kernel (diagnostic: a GEMM as one of two launches)"),
    ("route_x_gemm_fused", "dense route from x, W (GEMM + fused route)"),
]


def load(path):
    rows = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                r = json.loads(line)
                rows[(r["op"], r["model"], r["n"])] = r
    return rows


def main():
    ours, torch_rows = load(sys.argv[1]), load(sys.argv[2])
    any_row = next(iter(ours.values()))
    print(f"Device: **{any_row['device']}**, device-to-device copy {any_row['copy_gbps']:.0f} GB/s "
          "(bytes read + written), measured in the same run.\n")
    for op, title in OPS:
        print(f"### {title}\n")
        print("| model | N | moerouter us | GB/s | HBM floor us | % of floor | PyTorch eager us | x PyTorch | timing | moerouter, all cold us |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|")
        for key in sorted((k for k in ours if k[0] == op), key=lambda k: (k[1] != "flash", k[2])):
            r = ours[key]
            t = torch_rows.get(key)
            gbps = r["bytes"] / (r["us"] * 1e-6) / 1e9
            tus = f"{t['us']:.2f}" if t else "-"
            speed = f"{t['us'] / r['us']:.1f}x" if t else "-"
            print(f"| {r['model']} | {r['n']} | {r['us']:.2f} | {gbps:.0f} | {r['floor_us']:.2f} | "
                  f"{100 * r['floor_us'] / r['us']:.0f}% | {tus} | {speed} | {r['method']} | {r['cold_us']:.2f} |")
        print()


if __name__ == "__main__":
    main()
