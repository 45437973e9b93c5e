#!/usr/bin/env bash
# Reproduce the seed models' published numbers: every seed model under its reference recipe
# (docs/models.md, "Training recipes") on MMSA's pickles, on every visible GPU, one table
# next to the papers' numbers.
#
#   scripts/reproduce.sh DATA_DIR [OUT_DIR]
#
# DATA_DIR holds MMSA's aligned_50.pkl (DLF, MInD, MMCL) and unaligned_50.pkl (ALMT). When it also
# holds MInD's own MAG-BERT-style pickles (mosi.pkl, or train.pkl + dev.pkl + test.pkl; see
# docs/formats.md), MInD runs on those instead of aligned_50.pkl, as its authors did: the words go
# through BERT_DIR's tokenizer and encoder (else the bundled MiniLM; features computed once at import)
# and, for mosi.pkl, audio/vision rows are repeated per token as MInD's MOSI loader does.
# OUT_DIR (default reproduce_out) gets data/ (imported datasets: aligned, unaligned, magbert),
# aligned/, unaligned/ and magbert/ (msa benchmark directories, resumable: re-run the script to
# continue) and results.{md,csv,json,png}, whose "data" column names the dataset each row used.
#
# Environment (all optional):
#   BERT_DIR  local bert-base-uncased folder: DLF, ALMT and MInD fine-tune it as the references do
#             (MMCL reads the pickle's precomputed features); unset = precomputed features for all
#             (--allow-frozen-text: the rows record frozen_text: true)
#   DATASET   mosi | mosei: the model presets (default mosi; the papers' table is shown for mosi)
#   PRESET    model preset instead of DATASET's (tests use "tiny")
#   SEEDS     comma-separated seeds for every model (default: each recipe's own seeds)
#   EPOCHS    cap on the epochs (smoke tests); unset = each recipe's
#   MODELS    subset of dlf,mind,mmcl,almt
#   EXTRA     further msa benchmark arguments, e.g. "--set trainer.batch_size=8"
#   PYTHON    interpreter with msa_toolkit installed (default python)
# With more than one GPU visible the runs go through torchrun (one process per GPU, DDP).
set -euo pipefail

DATA=${1:?usage: scripts/reproduce.sh DATA_DIR [OUT_DIR]}
OUT=${2:-reproduce_out}
PY=${PYTHON:-python}
DATASET=${DATASET:-mosi}
PRESET=${PRESET:-$DATASET}
MODELS=${MODELS:-dlf,mind,mmcl,almt}

NGPU=0
if command -v nvidia-smi >/dev/null 2>&1; then
  NGPU=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
fi
if [ "${NGPU:-0}" -gt 1 ]; then
  LAUNCH=(torchrun --standalone --nproc_per_node "$NGPU" -m msa_toolkit)
else
  LAUNCH=("$PY" -m msa_toolkit)
fi

ARGS=(--recipe reference --preset "$PRESET" --seeds "${SEEDS:-recipe}" --mmsa-names --percent)
if [ -n "${EPOCHS:-}" ]; then ARGS+=(--epochs "$EPOCHS"); fi
if [ -n "${BERT_DIR:-}" ]; then
  for m in dlf almt mind; do ARGS+=(--set "$m:model.text_encoder=$BERT_DIR"); done
else  # frozen precomputed text: a deviation from DLF's, ALMT's and MInD's references, recorded per row
  ARGS+=(--allow-frozen-text)
fi
# shellcheck disable=SC2206  # EXTRA is split on purpose
EXTRA_ARGS=(${EXTRA:-})

import_pickle() {  # import_pickle FILE NAME [OPTIONS...]: MMSA / MAG-BERT pickle -> native dataset (once)
  local file=$1 name=$2
  shift 2
  if [ ! -f "$OUT/data/$name/manifest.json" ]; then
    "$PY" -m msa_toolkit dataset import "$file" --out "$OUT/data/$name" --overwrite "$@"
  fi
}

MAGBERT=""  # MInD's MAG-BERT-style pickles: mosi.pkl, or train.pkl with dev.pkl and test.pkl
if [ -f "$DATA/mosi.pkl" ]; then
  MAGBERT="$DATA/mosi.pkl"
elif [ -f "$DATA/train.pkl" ] && [ -f "$DATA/dev.pkl" ] && [ -f "$DATA/test.pkl" ]; then
  MAGBERT="$DATA/train.pkl"
fi

pick() {  # pick "m1,m2": the subset of MODELS among m1, m2
  local want=",$1," out=""
  IFS=, read -ra chosen <<< "$MODELS"
  for m in "${chosen[@]}"; do
    if [[ "$want" == *",$m,"* ]]; then out="${out:+$out,}$m"; fi
  done
  echo "$out"
}

DIRS=()
if [ -n "$MAGBERT" ] && [ -n "$(pick mind)" ]; then
  TEXT_DEVICE=cpu
  if [ "${NGPU:-0}" -gt 0 ]; then TEXT_DEVICE=cuda; fi
  import_pickle "$MAGBERT" magbert --format magbert --text "${BERT_DIR:-minilm}" --device "$TEXT_DEVICE"
  "${LAUNCH[@]}" benchmark --models mind --data "$OUT/data/magbert" -o "$OUT/magbert" "${ARGS[@]}" \
    "${EXTRA_ARGS[@]}" > /dev/null
  DIRS+=("$OUT/magbert")
  ALIGNED=$(pick dlf,mmcl)
else
  ALIGNED=$(pick dlf,mind,mmcl)
fi
if [ -n "$ALIGNED" ]; then
  import_pickle "$DATA/aligned_50.pkl" aligned
  "${LAUNCH[@]}" benchmark --models "$ALIGNED" --data "$OUT/data/aligned" -o "$OUT/aligned" "${ARGS[@]}" \
    "${EXTRA_ARGS[@]}" > /dev/null
  DIRS+=("$OUT/aligned")
fi
UNALIGNED=$(pick almt)
if [ -n "$UNALIGNED" ]; then
  import_pickle "$DATA/unaligned_50.pkl" unaligned
  "${LAUNCH[@]}" benchmark --models "$UNALIGNED" --data "$OUT/data/unaligned" -o "$OUT/unaligned" "${ARGS[@]}" \
    "${EXTRA_ARGS[@]}" > /dev/null
  DIRS+=("$OUT/unaligned")
fi

"$PY" - "$OUT" "$DATASET" "${DIRS[@]}" <<'PYEOF'
import sys
from msa_toolkit.training.benchmark import PAPER_MOSI, combine

out, dataset, dirs = sys.argv[1], sys.argv[2], sys.argv[3:]
combine(dirs, out, mmsa_names=True, percent=True, paper=PAPER_MOSI if dataset == "mosi" else None)
print(open(f"{out}/results.md").read())
PYEOF
