#!/usr/bin/env bash
# Builds moerouter and runs `moerouter demo` (the GPU if one is present, else the CPU) on a
# built-in synthetic DeepSeek-V4 layer. Extra arguments go to the demo, e.g. --model pro.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build --parallel "$(nproc)" --target moerouter_cli
./build/tools/moerouter demo "$@"
