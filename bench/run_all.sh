#!/usr/bin/env bash
# Runs moerouter_bench and the PyTorch equivalents in one session on the GPU and writes the
# merged markdown table (the body of docs/benchmarks.md).
#   bench/run_all.sh BUILD_DIR OUT_DIR [--quick]
set -euo pipefail
build=${1:?build dir}
out=${2:?output dir}
quick=${3:-}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,power.draw --format=csv | tee "$out/gpu.txt"
"$build/bench/moerouter_bench" --json "$out/moerouter.jsonl" $quick | tee "$out/moerouter.txt"
PYTHONUNBUFFERED=1 python3 "$here/torch_bench.py" --json "$out/torch.jsonl" $quick | tee "$out/torch.txt"
python3 "$here/report.py" "$out/moerouter.jsonl" "$out/torch.jsonl" | tee "$out/benchmarks_table.md"
