#!/usr/bin/env bash
# GPU checks for a lent CUDA machine (results: benchmarks/results/train_throughput_cuda.md):
# the `-m gpu` tests, `msa train` on CUDA launched by torchrun (one rank per GPU; NCCL when there
# are two or more), the training-throughput benchmark on CUDA (fp32 and bf16), `msa train --compile`,
# `msa extract --device cuda`, and (when REFS names a folder holding the authors' checkouts ALMT/,
# DLF/, MInD/, MMCL/ — carried as an ignored folder, never committed) the side-by-side speed table
# against the reference code on CUDA (issue 17's CUDA targets).
# Runs from the repository root with the machine's own python3 and torch (no install):
#   OUT=/some/dir bash scripts/gpu_checks.sh
# Every step's log goes to $OUT; a failing step does not stop the later ones.
set -u
OUT=${OUT:-/tmp/msa_gpu_checks}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
PY=${PY:-python3}
step() { local name=$1; shift; echo "== $name: $*"; local t0=$SECONDS
  "$@" > "$OUT/$name.log" 2>&1; local rc=$?
  echo "== $name: rc=$rc in $((SECONDS - t0)) s"; tail -n 15 "$OUT/$name.log"; }

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  $PY -c "import torch, sys; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
} > "$OUT/env.log" 2>&1; cat "$OUT/env.log"

step gpu_tests $PY -m pytest -q -m gpu -p no:cacheprovider tests/training/test_gpu.py tests/models/test_registry.py

DS=/tmp/msa_gpu_ds
$PY -c "from msa_toolkit.data.synthetic import make_synthetic_dataset as m; m('$DS', n_train=256, n_valid=64, n_test=64, dims=(32, 8, 8), lengths=(12, 20, 20), seed=0)"
# one rank per GPU: NCCL refuses two ranks on one device, so a one-GPU machine runs one rank
NGPU=$($PY -c "import torch; print(torch.cuda.device_count())")
for prec in bf16 fp16; do
  step torchrun_$prec $PY -m torch.distributed.run --nproc_per_node "$NGPU" --master_port 29517 \
    -m msa_toolkit train --model mult --preset tiny --data $DS -o /tmp/msa_gpu_run_$prec --epochs 3 --device cuda --set trainer.precision=$prec \
    --set trainer.plots=false
  $PY - "$prec" > "$OUT/torchrun_${prec}_check.log" 2>&1 <<'PYEOF'
import json, sys
from pathlib import Path
run = Path(f"/tmp/msa_gpu_run_{sys.argv[1]}")
log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
print("epochs", [r["epoch"] for r in log], "steps", log[-1]["step"], "train total", [round(r["train"]["total"], 4) for r in log])
print("valid mae", [round(r["valid"]["mae"], 4) for r in log])
from msa_toolkit.training.api import evaluate
print("evaluate on cpu:", {k: round(v, 4) for k, v in evaluate(run / "best.safetensors", "/tmp/msa_gpu_ds", device="cpu").items() if k in ("mae", "corr", "acc2_non0")})
PYEOF
  cat "$OUT/torchrun_${prec}_check.log"
done

for prec in fp32 bf16; do
  step throughput_$prec $PY benchmarks/train_throughput.py --device cuda --precision $prec --batch-size 32 \
    --steps 10 --warmup 3 --out "$OUT/train_throughput_cuda_$prec.md"
done
# the same table with the training step compiled (issue 17: --compile measured against eager; on the CPU it
# was 1.8x slower for DLF, benchmarks/results/reference_speed.md)
step throughput_bf16_compiled $PY benchmarks/train_throughput.py --device cuda --precision bf16 --batch-size 32 \
  --steps 10 --warmup 3 --compile --models almt,dlf,mind,mmcl --out "$OUT/train_throughput_cuda_bf16_compiled.md"
# torch.compile of the training step (falls back loudly if the backend cannot compile)
step compile $PY -m msa_toolkit train --model mult --preset tiny --data $DS -o /tmp/msa_gpu_compile --epochs 2 \
  --device cuda --compile --set trainer.plots=false

# extraction on the GPU: Whisper (CTranslate2 float16), the text encoder; compare with the CPU bundle
step extract_cuda $PY -m msa_toolkit extract assets/samples -o /tmp/msa_gpu_extract --cache-dir /tmp/msa_gpu_cache \
  --device cuda --vision none -q

if [ -n "${REFS:-}" ] && [ -d "$REFS" ]; then
  step reference_speed $PY benchmarks/reference_speed.py --device cuda \
    --reference-dir almt=$REFS/ALMT dlf=$REFS/DLF mind=$REFS/MInD mmcl=$REFS/MMCL --out "$OUT/reference_speed_cuda"
  # both sides under bf16 autocast (issue 17: the CUDA targets hold in fp32 and bf16)
  step reference_speed_bf16 $PY benchmarks/reference_speed.py --device cuda --precision bf16 \
    --reference-dir almt=$REFS/ALMT dlf=$REFS/DLF mind=$REFS/MInD mmcl=$REFS/MMCL --out "$OUT/reference_speed_cuda_bf16"
  # grouped execution of same-shaped transformers (models/grouped.py; off by default, no gain on the CPU):
  # the same DLF / MMCL measurement with it on for CUDA, to compare with the run above
  step reference_speed_grouped env MSA_GROUPED_DEVICES=cuda $PY benchmarks/reference_speed.py --device cuda \
    --reference-dir dlf=$REFS/DLF mmcl=$REFS/MMCL --out "$OUT/reference_speed_cuda_grouped"
fi
ls -la "$OUT"
