#!/usr/bin/env bash
# One command for a GPU machine: the GPU tests, then the throughput benchmark, then a report (JSON + Markdown).
#
#   bash benchmarks/gpu/run.sh            # on the GPU machine, with the wheels in .whl/ (benchmarks/gpu/prepare_wheels.sh)
#   bash benchmarks/gpu/run.sh --dry-run  # here, on the CPU: the same steps with a tiny model (tests/test_gpu_script.py)
#
# It uses the machine's own python (PYTHON, default python3), which has torch with CUDA, transformers, accelerate and
# peft; the project runs from this checkout (PYTHONPATH) and the few missing packages are installed from .whl/ into
# /tmp/site, without the network. Everything lands in $OUT (default outputs/gpu_report): gpu_tests.xml and .log,
# throughput.json and .log, report.json and report.md. Within 8 minutes: the tests get 4.5 (4 at a time where
# pytest-xdist is installed, as on the GPU image), the benchmark 3.2.
set -u -o pipefail
cd "$(dirname "$0")/../.."
DRY_RUN=0
[ "${1:-}" = "--dry-run" ] && DRY_RUN=1
OUT=${OUT:-$PWD/outputs/gpu_report}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ "$DRY_RUN" = 0 ] && ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "installing .whl/ failed" >&2; exit 1; }
    export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
"$PY" - <<'PY' 2>&1 | tee "$OUT/environment.log"
import importlib, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "gpu", torch.cuda.get_device_name() if torch.cuda.is_available() else None)
for name in ("transformers", "accelerate", "peft", "deepspeed", "bitsandbytes", "liger_kernel", "torchdata", "trainer"):
    try:
        module = importlib.import_module(name)
        print(name, getattr(module, "__version__", "ok"))
    except Exception as error:
        print(name, "missing:", type(error).__name__, str(error)[:200])
PY
PARALLEL=()
"$PY" -c "import xdist" 2>/dev/null && PARALLEL=(-n 4)
timeout 270 "$PY" -m pytest -m gpu tests/test_gpu.py -q -rs -p no:cacheprovider -o addopts="" "${PARALLEL[@]}" \
    --junitxml="$OUT/gpu_tests.xml" 2>&1 | tee "$OUT/gpu_tests.log"
tests_status=${PIPESTATUS[0]}
if [ "$DRY_RUN" = 1 ]; then
    timeout 190 "$PY" -m benchmarks.gpu.throughput --dry-run --out "$OUT" 2>&1 | tee "$OUT/throughput.log"
else
    timeout 190 "$PY" -m benchmarks.gpu.throughput --out "$OUT" 2>&1 | tee "$OUT/throughput.log"
fi
bench_status=${PIPESTATUS[0]}
"$PY" -m benchmarks.gpu.report "$OUT"
echo "gpu tests exit $tests_status, throughput exit $bench_status"
[ "$tests_status" -le 1 ] && [ "$bench_status" = 0 ]
