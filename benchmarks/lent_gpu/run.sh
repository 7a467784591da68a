#!/usr/bin/env bash
# On the lent GPU machine, with .gpu/site.tar.xz (from pack.sh) carried: unpack it, install sr-export, run
# the CUDA tests beside the Table 7 bench, and leave the logs and the report under $OUT. BUDGET: seconds
# the whole script may take (the bench is cut short before it, keeping the rows it finished). Arguments
# go to benchmarks/run_gpu.sh (default below: the rows the first GPU session measured); MORE: arguments of
# a second bench run after it in what is left of BUDGET, its report in $OUT/report-more.
set -u
OUT=${OUT:-gpu-run}; BUDGET=${BUDGET:-440}
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
el setup
python3 -c "import tarfile; tarfile.open('.gpu/site.tar.xz').extractall('/tmp/site', filter='fully_trusted')" || exit 1
export PYTHONPATH=/tmp/site  # ahead of the image's CPU-only onnxruntime
python3 -m pip install -q --no-deps --no-build-isolation --no-index . 2>&1 | tail -2
command -v sr-export >/dev/null || export PATH="$(python3 -c 'import sys, os; print(os.path.dirname(sys.executable))'):$PATH"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$OUT/bench.log"
python3 -c "import torch, onnxruntime as ort
print('torch', torch.__version__, torch.cuda.get_device_name(), 'onnxruntime', ort.__version__, ort.get_available_providers())" \
  2>&1 | tee -a "$OUT/bench.log"
el tests
if [ "${TESTS:-1}" = 0 ]; then  # TESTS=0: the bench alone (a short rerun)
  echo "not run (TESTS=0)" > "$OUT/tests.log"
else  # on 4 of the 16 cores, while the bench's first row is still exporting on the others
  ( OMP_NUM_THREADS=4 timeout 480 taskset -c 12-15 python3 -m pytest -q -s -rA -p no:cacheprovider \
      tests/test_build.py tests/test_rrdbnet.py tests/test_runtime.py tests/test_resshift_bundle.py \
      tests/test_s3diff_bundle.py -k cuda > "$OUT/tests.log" 2>&1
    echo "tests exit $?" >> "$OUT/tests.log" ) &
fi
el bench
[ $# -gt 0 ] || set -- --methods InvSR-1,RealESRGAN --backends onnxruntime-cuda,eager,compile --runs 10 --warmup 2 --no-large
bench() {  # report folder, log name, then run_gpu.sh's arguments
  local report=$1 log=$2 left=$(( BUDGET - 10 - ($(date +%s) - T0) )); shift 2
  [ "$left" -gt 30 ] || { el "no time left for $report"; return; }
  REPORT=$report timeout "$left" bash benchmarks/run_gpu.sh "$@" 2>&1 \
    | grep -v --line-buffered "No registered plugin EP\|graph capture feature" | tee -a "$OUT/$log" | grep -v "%|"
  el "bench exit ${PIPESTATUS[0]}"
}
bench "$OUT/report" bench.log "$@"
if [ -n "${MORE:-}" ]; then
  el "second bench"
  # shellcheck disable=SC2086  # MORE is a list of arguments
  bench "$OUT/report-more" bench-more.log $MORE
  rm -f "$OUT/report-more/report.png"  # the machine sends back 8 files at most
fi
wait
tail -15 "$OUT/tests.log"
el done
