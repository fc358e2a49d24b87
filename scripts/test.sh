#!/usr/bin/env bash
# Builds moerouter and runs every test: the C++ suites through ctest (GPU suites report
# themselves skipped where no GPU is present), the CPU suites again under AddressSanitizer +
# UBSan, then the PyTorch package (pip install, pytest; GPU tests skip without a GPU).
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

# The PyTorch package. Hopper (sm_90a) kernels only here, to keep the build short; a plain
# `pip install .` builds the default 90a;100a.
source scripts/python_deps.sh
python3 -m pip install --no-build-isolation -q . \
  --config-settings=cmake.define.CMAKE_CUDA_ARCHITECTURES=90a
(cd python/tests && python3 -m pytest -q -rs)
echo "moerouter: all tests passed"
