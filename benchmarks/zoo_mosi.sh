#!/usr/bin/env bash
# The model zoo on CMU-MOSI (issue 34 "Must show"): every registered model (`msa models`), 3 seeds, in one
# `msa benchmark` table per dataset:
#   utterance  real CMU-MOSI utterance features (Poria et al.'s release: text 100, audio 73, vision 100 per
#              utterance, one step each; T+A+V), imported with `msa dataset import`;
#   text       the MOSI transcripts of label.csv through the bundled MiniLM encoder (token features, audio and
#              vision absent), as benchmarks/real_text.py builds it.
# Every model at its `mosi` preset, recipe `toolkit`, up to 30 epochs, early stopping on valid MAE (patience 6);
# test metrics of the checkpoint chosen on valid. `msa benchmark` skips finished runs whose fingerprint matches,
# so the script resumes where it stopped: re-run it (also after adding models) until it prints the tables.
#
#   benchmarks/zoo_mosi.sh [utterance|text|both] [WORK]      (default: both, WORK=/tmp/msa_zoo_mosi)
#
# Environment: PYTHON (default: python), DATA (default: ../shared/data beside the checkout), MODELS (comma list;
# default: every registered model), SEEDS (default 1,2,3), EPOCHS (default 30), CHUNK (seconds per `msa benchmark`
# call, default 0 = no limit; with a limit the call is stopped and the script exits 3: run it again to resume),
# LOCK (a file to hold with flock around each call, e.g. /tmp/msa_cpu.lock on a shared machine).
set -euo pipefail
HERE="$(cd "$(dirname "$0")/.." && pwd)"
WHAT="${1:-both}"
WORK="${2:-/tmp/msa_zoo_mosi}"
PY="${PYTHON:-python}"
DATA="${DATA:-$HERE/../shared/data}"
SEEDS="${SEEDS:-1,2,3}"
EPOCHS="${EPOCHS:-30}"
CHUNK="${CHUNK:-0}"
msa() { "$PY" -m msa_toolkit "$@"; }
MODELS="${MODELS:-$("$PY" -c 'from msa_toolkit.models import list_models; print(",".join(list_models()))')}"
mkdir -p "$WORK"

locked() {  # run "$@" under $LOCK (if set) and the $CHUNK time limit (if set)
  local cmd=("$@")
  if [ "$CHUNK" != 0 ]; then cmd=(timeout "$CHUNK" "${cmd[@]}"); fi
  if [ -n "${LOCK:-}" ]; then cmd=(flock "$LOCK" "${cmd[@]}"); fi
  "${cmd[@]}"
}

bench() {  # bench NAME DATASET_DIR
  set +e
  locked "$PY" -m msa_toolkit benchmark --models "$MODELS" --data "$2" -o "$WORK/bench_$1" --seeds "$SEEDS" \
    --preset mosi --epochs "$EPOCHS" --set trainer.patience=6 --device cpu --threads 1 --percent
  local rc=$?
  set -e
  if [ $rc = 124 ]; then echo "zoo_mosi: $1 stopped after ${CHUNK}s; run again to resume" >&2; exit 3; fi
  return $rc
}

if [ "$WHAT" = utterance ] || [ "$WHAT" = both ]; then
  if [ ! -f "$WORK/mosi_utterance/manifest.json" ]; then
    msa dataset import "$DATA/mosi_utterance/mosi_poria_utterance.pkl" -o "$WORK/mosi_utterance" --overwrite
  fi
  bench utterance "$WORK/mosi_utterance"
fi
if [ "$WHAT" = text ] || [ "$WHAT" = both ]; then
  if [ ! -f "$WORK/mosi_text/manifest.json" ]; then
    locked msa dataset create --labels "$DATA/mosi/label.csv" -o "$WORK/mosi_text" --transcripts label --asr none
  fi
  bench text "$WORK/mosi_text"
fi
