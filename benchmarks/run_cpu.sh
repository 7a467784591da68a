#!/usr/bin/env bash
# CPU run of the Table 7 harness: eager fp32 vs the ONNX Runtime CPU bundle, few repeats (slow machine).
set -euo pipefail
cd "$(dirname "$0")/.."
sr-export bench table7 --device cpu --runs 2 --warmup 1 --report benchmarks/reports/cpu "$@"
