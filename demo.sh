#!/usr/bin/env bash
# The main job on embedded defaults (called by `make demo`): build and label a small synthetic
# dataset with the LBM solver, describe it, tune the pVAE with Ray Tune (MLflow in a SQLite file),
# ablate two dataset sizes, promote the best trial, and design two targets verified by the solver.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PY:-.venv/bin/python}
DEMO=${DEMO:-runs/demo}
mkdir -p "$DEMO"
# The dataset is resumed if present; studies and designs are made anew on every run.
rm -rf "$DEMO/tune" "$DEMO/design"
export MLFLOW_TRACKING_URI=${MLFLOW_TRACKING_URI:-sqlite:///$PWD/$DEMO/mlflow.db}
export RAY_USAGE_STATS_ENABLED=0 TQDM_MININTERVAL=5
start=$(date +%s)
step() { printf '\n=== [%4ss] %s\n' "$(( $(date +%s) - start ))" "$*"; }

step "1/6 build + label the demo dataset (configs/data_demo.yaml)"
$PY -m data_pipeline build --config configs/data_demo.yaml --out "$DEMO/data"

step "2/6 describe it"
$PY -m data_pipeline describe "$DEMO/data"

step "3/6 Ray Tune study (configs/tune_demo.yaml), one MLflow run per trial"
$PY -m tuning run --config configs/tune_demo.yaml --dataset "$DEMO/data" --storage-path "$DEMO/tune"

step "4/6 dataset-size ablation (configs/ablate_demo.yaml)"
$PY -m tuning ablate --config configs/ablate_demo.yaml --dataset "$DEMO/data" --storage-path "$DEMO/tune"

step "5/6 promote the best trial to models:/pvae@champion"
$PY -m tuning promote --study "$DEMO/tune/demo" | tee "$DEMO/promote.log"
# the promoted trial's test figures (reconstructions, prior samples, slerp interpolation, parity),
# written in its final checkpoint: copied to $DEMO/model so a newcomer finds them
CKPT=$(sed -n 's/.*; checkpoint \(.*\); max |.*/\1/p' "$DEMO/promote.log")
FIGS=$(ls -d "$(dirname "$CKPT")"/checkpoint_*/eval 2>/dev/null | tail -n 1 || true)
rm -rf "$DEMO/model"
if [ -n "$FIGS" ]; then cp -r "$FIGS" "$DEMO/model"; fi

step "6/6 inverse design of two held-out samples' properties, verified by the LBM solver"
# Targets: porosity and k_xx of the first two samples of the test split (never seen in training);
# ref=<sample> puts that sample beside the designs and compares their morphology with it.
mapfile -t TARGETS < <($PY - "$DEMO/data" <<'PY'
import sys
from data_pipeline.dataset import labeled_table, split_ids
table = labeled_table(sys.argv[1]).set_index("sample_id")
for sid in split_ids(table.index.tolist())["test"][:2]:
    row = table.loc[sid]
    print("--target")
    print(f"porosity={row.porosity:.3f},k_xx={row.k_xx:.4g},ref={sid}")
PY
)
$PY -m inverse design --config configs/inverse_demo.yaml --model models:/pvae@champion \
    --dataset "$DEMO/data" "${TARGETS[@]}" --out "$DEMO/design"

step "done"
cat <<TXT

Outputs of the demo (all under $DEMO/):
  dataset            $DEMO/data            (volumes/*.tif, properties.csv, dataset.yaml)
  descriptors        $DEMO/data/describe   (descriptors.csv, summary.png)
  Ray Tune study     $DEMO/tune/demo       (resume: python -m tuning resume $DEMO/tune/demo)
  ablation           $DEMO/tune/ablate_demo (table + PNG)
  promoted model     $DEMO/model           (reconstruction, generated = prior samples, interpolation, parity PNGs)
  inverse design     $DEMO/design          (results.csv, candidate .tif, figures/slices_t*.png: target beside designs)
  MLflow store       $MLFLOW_TRACKING_URI
Open the MLflow UI:  .venv/bin/mlflow ui --backend-store-uri $MLFLOW_TRACKING_URI   (http://127.0.0.1:5000)
TXT
