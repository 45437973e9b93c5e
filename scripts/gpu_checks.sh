#!/usr/bin/env bash
# GPU checks for a lent CUDA machine (results: benchmarks/results/train_throughput_cuda.md and
# reference_speed.md): issue 17's CUDA targets first — the side-by-side speed table against the authors'
# code in fp32 and bf16 (when REFS names a folder holding their checkouts ALMT/, DLF/, MInD/, MMCL/,
# carried as an ignored folder, never committed) and the training-throughput benchmark with peak memory
# (fp32, bf16) — then the `-m gpu` tests, `msa train` on CUDA launched by torchrun (one rank per GPU; NCCL
# when there are two or more), the compiled bf16 throughput, `msa train --compile`, `msa extract --device
# cuda`, and tests/test_device.py::test_extract_on_a_gpu (GPU extraction against the CPU bundle).
# Runs from the repository root with the machine's own python3 and torch (no install):
#   OUT=/some/dir [REFS=/dir/with/refs] [STEPS=name,name,...] bash scripts/gpu_checks.sh
# STEPS picks steps by name (default: all, in the order below; a session with little device time runs
# STEPS=reference_speed,reference_speed_bf16,throughput_fp32,throughput_bf16); DRY_RUN=1 prints the steps
# it would run and runs nothing. Every step's log goes to $OUT; a failing step does not stop the later ones.
set -u
ALL="reference_speed reference_speed_bf16 throughput_fp32 throughput_bf16 gpu_tests torchrun_bf16 torchrun_fp16
throughput_bf16_compiled compile extract_cuda extract_gpu_test"
STEPS=${STEPS:-all}
for s in ${STEPS//,/ }; do
  [ "$s" = all ] && continue
  case " $(echo $ALL) " in *" $s "*) ;; *) echo "unknown step '$s'; steps: $(echo $ALL)" >&2; exit 2 ;; esac
done
want() { [ "$STEPS" = all ] || [[ ",$STEPS," == *",$1,"* ]]; }
OUT=${OUT:-/tmp/msa_gpu_checks}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
PY=${PY:-python3}
step() { local name=$1; shift; want "$name" || return 0; echo "== $name: $*"; [ -n "${DRY_RUN:-}" ] && return 0
  local t0=$SECONDS; "$@" > "$OUT/$name.log" 2>&1; local rc=$?
  echo "== $name: rc=$rc in $((SECONDS - t0)) s"; tail -n 15 "$OUT/$name.log"; }
live() { want "$1" && [ -z "${DRY_RUN:-}" ]; }

if [ -z "${DRY_RUN:-}" ]; then
  { nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    $PY -c "import torch, sys; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
  } > "$OUT/env.log" 2>&1; cat "$OUT/env.log"
fi

# issue 17: toolkit ÷ reference on CUDA, fp32 and both sides under bf16 autocast (GPU steps take milliseconds:
# 10 timed steps per phase and round)
if [ -n "${REFS:-}" ] && [ -d "$REFS" ]; then
  REF_DIRS="almt=$REFS/ALMT dlf=$REFS/DLF mind=$REFS/MInD mmcl=$REFS/MMCL"
  step reference_speed $PY benchmarks/reference_speed.py --device cuda --rounds 5 --steps 10 \
    --reference-dir $REF_DIRS --out "$OUT/reference_speed_cuda"
  step reference_speed_bf16 $PY benchmarks/reference_speed.py --device cuda --precision bf16 --rounds 5 --steps 10 \
    --reference-dir $REF_DIRS --out "$OUT/reference_speed_cuda_bf16"
else
  for s in reference_speed reference_speed_bf16; do
    if want $s && [ "$STEPS" != all ]; then echo "== $s: skipped, REFS is not a folder" >&2; fi
  done
fi
# training throughput and peak memory (issue 17: DLF at batch 32 under 2 GiB)
for prec in fp32 bf16; do
  step throughput_$prec $PY benchmarks/train_throughput.py --device cuda --precision $prec --batch-size 32 \
    --steps 10 --warmup 3 --out "$OUT/train_throughput_cuda_$prec.md"
done

step gpu_tests $PY -m pytest -q -m gpu -p no:cacheprovider tests/training/test_gpu.py tests/models/test_registry.py

DS=/tmp/msa_gpu_ds
if live torchrun_bf16 || live torchrun_fp16 || live compile; then
  $PY -c "from msa_toolkit.data.synthetic import make_synthetic_dataset as m; m('$DS', n_train=256, n_valid=64, n_test=64, dims=(32, 8, 8), lengths=(12, 20, 20), seed=0)"
fi
# one rank per GPU: NCCL refuses two ranks on one device, so a one-GPU machine runs one rank
NGPU=$(live torchrun_bf16 || live torchrun_fp16 && $PY -c "import torch; print(torch.cuda.device_count())" || echo 1)
for prec in bf16 fp16; do
  step torchrun_$prec $PY -m torch.distributed.run --nproc_per_node "$NGPU" --master_port 29517 \
    -m msa_toolkit train --model mult --preset tiny --data $DS -o /tmp/msa_gpu_run_$prec --epochs 3 --device cuda --set trainer.precision=$prec \
    --set trainer.plots=false
  live torchrun_$prec || continue
  $PY - "$prec" > "$OUT/torchrun_${prec}_check.log" 2>&1 <<'PYEOF'
import json, sys
from pathlib import Path
run = Path(f"/tmp/msa_gpu_run_{sys.argv[1]}") / "seed_1"  # OUT/seed_<s>/ (docs/formats.md, "Run folder")
log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
print("epochs", [r["epoch"] for r in log], "steps", log[-1]["step"], "train total", [round(r["train"]["total"], 4) for r in log])
print("valid mae", [round(r["valid"]["mae"], 4) for r in log])
from msa_toolkit.training.api import evaluate
print("evaluate on cpu:", {k: round(v, 4) for k, v in evaluate(run / "best.safetensors", "/tmp/msa_gpu_ds", device="cpu").items() if k in ("mae", "corr", "acc2_non0")})
PYEOF
  cat "$OUT/torchrun_${prec}_check.log"
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
# the same on a test clip, compared value by value with the CPU run (its -m gpu test skips without CUDA)
step extract_gpu_test $PY -m pytest -q -m gpu -p no:cacheprovider tests/test_device.py::test_extract_on_a_gpu

[ -n "${DRY_RUN:-}" ] || ls -la "$OUT"
