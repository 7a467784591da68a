#!/usr/bin/env bash
# Packs what the lent GPU machine lacks (no network there, 64 MiB per call with the working tree) into
# .gpu/site.tar.xz: onnxruntime-gpu with only its sm_90 (Hopper) kernels, and the pure-Python wheels
# sr-export needs beyond that machine's image. Run here, in the project's root; then on the machine:
# `bash benchmarks/lent_gpu/run.sh` with `.gpu` carried.
set -euo pipefail
ORT=${ORT:-onnxruntime-gpu==1.31.1}  # built for CUDA 13 and cuDNN 9, as the machine's torch is
SM=${SM:-90}
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform any -d "$work/wheels" \
  "$ORT" diffusers==0.42.1 onnx-graphsurgeon==0.6.1 pypng importlib_metadata
mkdir "$work/site"
for wheel in "$work"/wheels/*.whl; do unzip -q -o "$wheel" -d "$work/site"; done
capi="$work/site/onnxruntime/capi"
# The pybind module carries ONNX Runtime itself; the C-API library and the TensorRT provider go unused.
# Nor do its model-conversion tools (transformers/, quantization/): room for the working tree.
rm -f "$capi"/libonnxruntime.so.* "$capi"/libonnxruntime_providers_tensorrt.so
rm -rf "$work/site/onnxruntime/transformers" "$work/site/onnxruntime/quantization"
python3 "$(dirname "$0")/strip_fatbin.py" "$capi/libonnxruntime_providers_cuda.so" "$SM"
mkdir -p .gpu
# A 1 GiB window finds the repeats between far-apart kernels: about 62 MB in all.
tar -C "$work/site" -cf - . | xz -T1 --lzma2=preset=9e,dict=1GiB > .gpu/site.tar.xz
ls -l .gpu/site.tar.xz
