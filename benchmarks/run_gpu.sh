#!/usr/bin/env bash
# GPU run of the Table 7 harness: eager fp16, torch.compile, ONNX Runtime CUDA and TensorRT where usable.
set -euo pipefail
cd "$(dirname "$0")/.."
name=$(python -c "import torch; print(torch.cuda.get_device_name().split()[1].lower())")
sr-export bench table7 --device cuda --runs 20 --warmup 3 --large --report "benchmarks/reports/$name" "$@"
