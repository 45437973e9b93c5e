#!/usr/bin/env bash
# Robustness benchmark on the real CMU-MOSI utterance features (benchmarks/results/robustness_mosi.md).
# Every registered model x seeds 1,2,3 (toolkit recipe, default presets), then protocols A, B and noise on each
# best checkpoint (msa benchmark --robustness); ALMT and DLF again with the LNLN-style schedule.
# Runs in passes of at most CHUNK seconds under the shared CPU lock: a pass cut off by the timeout is resumed by
# the next (finished runs are read back by fingerprint, an interrupted one continues from its last.pt); each
# step's robustness scores are computed once its runs are finished. The --set items hold no spaces.
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
COMMON=(-d "$WORK/mosi_utt" --seeds 1,2,3 --epochs 20 --set trainer.patience=5
        --device cpu --threads 1 --robustness A,B,noise)
M="$PY -m msa_toolkit benchmark"
# one pass = the two steps in order under one hold of the lock; the next pass resumes where a pass was cut off
STEPS="$M --models $MODELS -o $WORK/plain ${COMMON[*]} > $WORK/plain.log 2>&1 &&
       $M --models almt,dlf -o $WORK/lnln ${COMMON[*]} --set trainer.missing_schedule=lnln > $WORK/lnln.log 2>&1"
for pass in $(seq 1 20); do
  flock /tmp/msa_cpu.lock timeout "$CHUNK" sh -c "$STEPS" && break
  echo "$(date -u +%H:%M) pass $pass cut off or failed (see $WORK/*.log); resuming" >&2
done
$PY benchmarks/robustness_report.py --plain "$WORK/plain" --lnln "$WORK/lnln" --out benchmarks/results/robustness_mosi.md
