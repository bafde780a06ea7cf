#!/usr/bin/env bash
# The one prepared script of a lent-GPU session for issue 16 item 1: benchmarks/bench_unet.py on
# CUDA -- terradiff SMALL_64, diffusers default, diffusers-matched, and terradiff and
# diffusers-matched under torch.compile; train step and DDIM-20; bf16 autocast and fp32 (TF32 off);
# batch 128 and 256; images/s, share of the measured bf16 matmul peak, peak memory, compile time.
#
#   bash benchmarks/gpu_session.sh            # full run: ~7 min on one H200 (compile ~4 of them)
#   bash benchmarks/gpu_session.sh --quick    # smoke run: batch 16, ~2-3 min (compile dominates)
#
# From the device tool (see benchmarks/README.md): command 'bash benchmarks/gpu_session.sh',
# carry ["gpu_wheels"], timeout_s 600. Outputs under $OUT (outputs/gpu_session when unset):
#   env.txt        versions, nvidia-smi
#   unet_gpu.json  bench_unet.py --json (written after every section: a run cut short keeps data)
#   unet_gpu.txt   the benchmark's whole output
#   summary.txt    the side-by-side summary, re-read from the JSON
# Environment knobs: PYTHON (python3), BUDGET_S (400: no new section starts after that many
# seconds of benchmark), COMPILE_MODES (bf16: the precisions the compiled competitors run in;
# bf16,fp32 adds ~4 min of compilation), BATCHES (128,256).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
OUT="${OUT:-outputs/gpu_session}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
quick=0
[[ "${1:-}" == "--quick" ]] && quick=1

# 1. What the machine lacks (diffusers): wheels carried in gpu_wheels/ (benchmarks/gpu_wheels.txt).
if compgen -G "gpu_wheels/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site gpu_wheels/*.whl || { echo "gpu_session: wheel install failed"; exit 2; }
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
else
    echo "gpu_session: no gpu_wheels/*.whl carried (see benchmarks/gpu_wheels.txt)"
fi
{
    date -u '+%Y-%m-%dT%H:%M:%SZ'
    "$PY" - <<'EOF'
import platform, torch
try:
    import diffusers
    dv = diffusers.__version__
except Exception as exc:  # the benchmark then runs terradiff alone
    dv = f"NOT IMPORTABLE ({type(exc).__name__}: {exc})"
print(f"python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
      f"diffusers {dv}")
print("gpu:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "NONE")
EOF
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
    echo "cpus: $(nproc --all)"
} 2>&1 | tee "$OUT/env.txt"

# 2. The benchmark. Without diffusers, terradiff alone (eager and compiled) still gets measured.
variants=(--diffusers default,matched --compile terradiff,diffusers-matched)
if ! "$PY" -c 'import diffusers' 2>/dev/null; then
    echo "gpu_session: diffusers does not import; measuring terradiff alone"
    variants=(--diffusers "" --compile terradiff)
fi
common=(--device cuda --modes bf16,fp32 --compile-modes "${COMPILE_MODES:-bf16}" --threads 8
        --ddpm-steps 0 --json "$OUT/unet_gpu.json")
if (( quick )); then
    args=(--quick "${common[@]}" "${variants[@]}")
else
    args=(--batches "${BATCHES:-128,256}" --warmup 5 --repeats 10 --sample-repeats 3
          --ddim-steps 20 --budget-s "${BUDGET_S:-400}" "${common[@]}" "${variants[@]}")
fi
start=$SECONDS
timeout 560 "$PY" benchmarks/bench_unet.py "${args[@]}" 2>&1 | tee "$OUT/unet_gpu.txt"
rc=${PIPESTATUS[0]}
echo "gpu_session: bench_unet exit $rc after $((SECONDS - start)) s"

# 3. A short summary (also after a timeout: the JSON holds every finished section).
if [[ -f "$OUT/unet_gpu.json" ]]; then
    "$PY" benchmarks/unet_bench_common.py "$OUT/unet_gpu.json" > "$OUT/summary.txt" 2>&1
    (( rc == 0 )) || cat "$OUT/summary.txt"
fi
ls -l "$OUT"
exit "$rc"
