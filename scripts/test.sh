#!/usr/bin/env bash
# Builds moerouter and runs every test: the C++ suites through ctest (GPU suites report
# themselves skipped where no GPU is present), then the CPU suites again under
# AddressSanitizer + UBSan.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
jobs=$(nproc)

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build --parallel "$jobs"
ctest --test-dir build --output-on-failure --parallel "$jobs"

cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMOER_CUDA=OFF -DMOER_SANITIZE=ON \
  -DMOER_BUILD_BENCH=OFF
cmake --build build-asan --parallel "$jobs"
ctest --test-dir build-asan --output-on-failure --parallel "$jobs"
echo "moerouter: all tests passed"
