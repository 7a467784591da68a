#!/usr/bin/env bash
# Runs a command as on an AVX2-only x86 host: CPUID answers without AVX-512, VNNI, bf16 or AMX in every
# process it starts (see avx2_only.c). Needs gcc and a CPU with CPUID faulting (/proc/cpuinfo: cpuid_fault).
#   bash benchmarks/isa_mask/run.sh sr-export bench table7 --quick --report benchmarks/reports/cpu-quick-avx2
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# Built once per user into the temp directory (sr-export's cache holds only what sr-export writes there).
lib="${TMPDIR:-/tmp}/sr-export-isa-mask-$(id -u)/avx2_only.so"
if [[ ! -f "$lib" || "$here/avx2_only.c" -nt "$lib" ]]; then
    mkdir -p "$(dirname "$lib")"
    gcc -O2 -shared -fPIC -Wall -o "$lib.tmp.$$" "$here/avx2_only.c"
    mv "$lib.tmp.$$" "$lib"
fi
LD_PRELOAD="$lib${LD_PRELOAD:+:$LD_PRELOAD}" exec "$@"
