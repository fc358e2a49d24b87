#!/usr/bin/env bash
# Installs the Python packages the PyTorch package needs to build and test, if missing.
moer_py_need=()
for mod in torch:torch==2.11.0 numpy:numpy pytest:pytest scikit_build_core:scikit-build-core safetensors:safetensors; do
  python3 -c "import ${mod%%:*}" >/dev/null 2>&1 || moer_py_need+=("${mod##*:}")
done
if [ ${#moer_py_need[@]} -gt 0 ]; then
  echo "moerouter: pip installing ${moer_py_need[*]}"
  python3 -m pip install -q "${moer_py_need[@]}"
fi
unset moer_py_need
