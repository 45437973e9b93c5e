#!/usr/bin/env bash
# Robustness benchmark on the real CMU-MOSI utterance features (benchmarks/results/robustness_mosi.md).
# Every registered model x seeds 1,2,3 (toolkit recipe, default presets), then protocols A, B and noise on each
# best checkpoint (msa benchmark --robustness); ALMT and DLF again with the LNLN-style schedule.
# Runs in passes of at most CHUNK seconds under the shared CPU lock: a pass cut off by the timeout is resumed by
# the next (finished runs are read back by fingerprint, an interrupted one continues from its last.pt); the
# robustness scores are computed by the pass that finds every run finished.
# Usage: benchmarks/robustness_mosi.sh WORK_DIR   (PY: the python to use; MOSI_PKL: the MMSA pickle)
set -u
WORK=${1:?work dir}
PY=${PY:-python}
MOSI_PKL=${MOSI_PKL:-../shared/data/mosi_utterance/mosi_poria_utterance.pkl}
CHUNK=${CHUNK:-570}
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1 MSA_THREADS=1
mkdir -p "$WORK"
if [ ! -d "$WORK/mosi_utt" ]; then
  $PY -c "from msa_toolkit.data.mmsa import import_mmsa; import_mmsa('$MOSI_PKL', '$WORK/mosi_utt')"
fi
MODELS=${MODELS:-$($PY -c "from msa_toolkit.models import list_models; print(','.join(list_models()))")}
# MMCL trains at ~130 s per epoch on this CPU (benchmarks/results/robustness_mosi.md): its epochs are capped,
# and it runs last
SLOW=${SLOW:-mmcl}
COMMON=(-d "$WORK/mosi_utt" --seeds 1,2,3 --epochs 20 --set trainer.patience=5 --set "$SLOW:trainer.epochs=2"
        --device cpu --threads 1 --robustness A,B,noise)
passes() {  # $1 = out dir, $2 = models, rest = extra options: repeat until a pass finishes
  local out=$1 models=$2; shift 2
  for pass in $(seq 1 12); do
    flock /tmp/msa_cpu.lock timeout "$CHUNK" $PY -m msa_toolkit benchmark --models "$models" -o "$out" "${COMMON[@]}" "$@" \
      > "$out.log" 2>&1 && return 0
    echo "$(date -u +%H:%M) $models: pass $pass cut off or failed (see $out.log); resuming" >&2
  done
  return 1
}
FAST=$(echo "$MODELS" | tr ',' '\n' | grep -vx "$SLOW" | paste -sd, -)
passes "$WORK/plain" "$FAST"
passes "$WORK/lnln" almt,dlf --set trainer.missing_schedule=lnln
passes "$WORK/plain" "$MODELS"   # the slow model, then the tables of every model (the others read back)
$PY benchmarks/robustness_report.py --plain "$WORK/plain" --lnln "$WORK/lnln" --out benchmarks/results/robustness_mosi.md
