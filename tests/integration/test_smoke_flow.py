"""The whole product at smoke size, through its command lines, in fresh processes:
build + label (LBM) -> describe -> Ray Tune study (MLflow SQLite) -> promote -> inverse design
from `models:/pvae@champion`, verified by the solver. What `make demo` does, at 16^3."""
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]


def run(args, env, cwd=ROOT, timeout=900):
    res = subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=timeout)
    assert res.returncode == 0, f"{' '.join(args)} exited {res.returncode}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res.stdout


def test_build_tune_promote_design(tmp_path):
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/mlflow.db", TQDM_DISABLE="1",
               RAY_USAGE_STATS_ENABLED="0", PYTHONPATH=str(ROOT))
    data = tmp_path / "data"
    run(["data_pipeline", "build", "--config", "configs/data_smoke.yaml", "--out", str(data)], env)
    props = pd.read_csv(data / "properties.csv")
    assert len(props) == 16 and (props["status"] == "ok").sum() >= 14
    run(["data_pipeline", "describe", str(data)], env)
    assert (data / "describe" / "summary.png").is_file()

    out = run(["tuning", "run", "--config", "configs/tune_smoke.yaml", "--dataset", str(data),
               "--storage-path", str(tmp_path / "tune")], env)
    assert "2 trials" in out
    run(["tuning", "promote", "--study", str(tmp_path / "tune" / "smoke")], env)

    # a target from a held-out sample; the design runs in another working directory
    from data_pipeline.dataset import labeled_table, split_ids
    table = labeled_table(data).set_index("sample_id")
    row = table.loc[split_ids(table.index.tolist())["test"][0]]
    design = tmp_path / "design"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run(["inverse", "design", "--config", str(ROOT / "configs" / "inverse_smoke.yaml"),
         "--model", "models:/pvae@champion", "--dataset", str(data), "--method", "bo",
         "--n-calls", "12", "--n-candidates", "1",
         "--target", f"porosity={row.porosity:.3f},k_xx={row.k_xx:.4g}", "--out", str(design)],
        env, cwd=elsewhere)
    results = pd.read_csv(design / "results.csv")
    assert len(results) == 1
    for col in ("target_id", "candidate", "pred_porosity", "verified_porosity", "hit", "pred_k_xx", "verified_k_xx"):
        assert col in results.columns, col
    r = results.iloc[0]
    assert abs(r.verified_porosity - row.porosity) <= 0.02  # the binarization threshold matches the target
    assert r.verified_k_xx >= 0 and pd.notna(r.verified_k_xx)  # a solver result, not the regressor's
    assert list((design / "candidates").rglob("*.tif"))
