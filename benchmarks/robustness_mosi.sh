#!/usr/bin/env bash
# Robustness benchmark on the real CMU-MOSI utterance features (benchmarks/results/robustness_mosi.md).
# Every registered model x seeds 1,2,3 (toolkit recipe, default presets), then protocols A, B and noise on each
# best checkpoint (msa benchmark --robustness); ALMT and DLF again with the LNLN-style schedule.
# Each chunk is one `msa benchmark` call for one model under the shared CPU lock, at most CHUNK seconds;
# a chunk cut off by the timeout resumes on the next pass (finished runs are read back by fingerprint).
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
MODELS=${MODELS:-$($PY -c "from msa_toolkit.models import list_models; print(' '.join(list_models()))")}
# MMCL trains at ~130 s per epoch on this CPU (benchmarks/results/robustness_mosi.md): its epochs are capped
SLOW=${SLOW:-mmcl:trainer.epochs=2}
COMMON=(-d "$WORK/mosi_utt" --seeds 1,2,3 --epochs 20 --set trainer.patience=5 --set "$SLOW" --device cpu --threads 1
        --robustness A,B,noise)
run_chunks() {  # $1 = out dir, $2 = model, rest = extra options; repeat until the model's results hold 3 ok seeds
  local out=$1 model=$2; shift 2
  for pass in 1 2 3 4 5 6 7 8; do
    flock /tmp/msa_cpu.lock timeout "$CHUNK" $PY -m msa_toolkit benchmark --models "$model" -o "$out" "${COMMON[@]}" "$@" \
      > "$out.$model.log" 2>&1 && return 0
    echo "$model: pass $pass cut off or failed (see $out.$model.log); resuming" >&2
  done
  return 1
}
mkdir -p "$WORK/plain" "$WORK/lnln"
# the slow model last: the LNLN runs need ALMT's and DLF's plain runs beside them
for m in $MODELS; do [ "$m" = "${SLOW%%:*}" ] || run_chunks "$WORK/plain" "$m"; done
for m in almt dlf; do run_chunks "$WORK/lnln" "$m" --set trainer.missing_schedule=lnln; done
case " $MODELS " in *" ${SLOW%%:*} "*) run_chunks "$WORK/plain" "${SLOW%%:*}";; esac
# the cross-model tables of every model at once (runs and robustness read back)
flock /tmp/msa_cpu.lock $PY -m msa_toolkit benchmark --models "$(echo $MODELS | tr ' ' ,)" -o "$WORK/plain" "${COMMON[@]}" > "$WORK/plain.all.log" 2>&1
flock /tmp/msa_cpu.lock $PY -m msa_toolkit benchmark --models almt,dlf -o "$WORK/lnln" "${COMMON[@]}" --set trainer.missing_schedule=lnln > "$WORK/lnln.all.log" 2>&1
$PY benchmarks/robustness_report.py --plain "$WORK/plain" --lnln "$WORK/lnln" --out benchmarks/results/robustness_mosi.md
