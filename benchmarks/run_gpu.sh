#!/usr/bin/env bash
# GPU run of the Table 7 harness: ONNX Runtime CUDA (plain and with CUDA graphs), PyTorch eager fp16,
# torch.compile, and TensorRT where usable. Options given to this script go to `sr-export bench table7`
# after the defaults and win over them (e.g. --methods InvSR-1,RealESRGAN --no-large; --backends in the
# order to run them, so that a run cut short has whole columns); REPORT=folder moves the report.
set -euo pipefail
cd "$(dirname "$0")/.."
name=$(python3 -c "import torch; print(torch.cuda.get_device_name().split()[1].lower())")
sr-export bench table7 --device cuda --runs 20 --warmup 3 --large --report "${REPORT:-benchmarks/reports/$name}" "$@"
