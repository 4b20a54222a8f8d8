"""Inference of a trained surrogate: load a checkpoint folder, label volumes, label a dataset folder.

``load_surrogate(folder).predict(ims)`` -> one dict per volume with the properties.csv columns
(porosity measured exactly on the volume; k_* in lattice units, voxel^2).
:func:`load_checked_surrogate` is the labeler the dataset build takes (``python -m data_pipeline
build`` with ``label: surrogate | mixed``, wired through the ``pvae.labelers`` entry point).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from core.checkpoint import read_config_dict, require_files
from core.properties import component_index, diagonal_columns, is_k_component
from models.checkpoint import Normalizer
from models.common import resolve_device
from models.surrogate.augment import symmetry_group
from models.surrogate.config import SurrogateConfig
from models.surrogate.net import MultiscaleCNN


class Surrogate:
    """A trained surrogate ready to label volumes (model in eval mode, config, normalizer)."""

    def __init__(self, model: MultiscaleCNN, cfg: SurrogateConfig, norm: Normalizer, device="cpu",
                 folder: str | None = None):
        self.model, self.cfg, self.norm = model, cfg, norm
        self.device = torch.device(device)
        self.folder = folder
        self.components = list(cfg.components)

    @torch.no_grad()
    def predict_log(self, ims: np.ndarray, batch_size: int | None = None, tta: bool = False) -> np.ndarray:
        """(N, *shape) bool volumes -> (N, P) targets in log space (log10 k on the diagonal), float64.

        tta : average over the symmetry group (each prediction mapped back by the inverse symmetry).
        """
        x_all = self._check(ims)
        bs = batch_size or self.cfg.eval_batch_size
        group = symmetry_group(self.cfg.dims, self.components) if tta else None
        out = np.empty((len(x_all), len(self.components)))
        for s in range(0, len(x_all), bs):
            x = torch.from_numpy(x_all[s:s + bs]).to(self.device).float().unsqueeze(1)  # (B, 1, *shape)
            if group is None:
                out[s:s + bs] = self.norm.inverse_log(self.model(x).float().cpu().numpy())
                continue
            acc = np.zeros((len(x), len(self.components)))
            for g in group:
                y = self.norm.inverse_log(self.model(g.apply_volume(x, batch_dims=2).contiguous()).float().cpu().numpy())
                acc += g.inverse().apply_columns(y, self.components)
            out[s:s + bs] = acc / len(group)
        return out

    def predict(self, ims: np.ndarray, batch_size: int | None = None, tta: bool = False) -> list[dict]:
        """Label volumes: (N, *shape) bool (True = pore), or one volume of ``shape``.

        Returns
        -------
        list of dict, one per volume: ``porosity`` (measured exactly on the volume, fraction) and every
        predicted k_* component (lattice units, voxel^2); ``pred_porosity`` when porosity is a target.
        Along an axis on which no pore cluster winds through the periodic box (the solver's own
        topology test, :func:`data_pipeline.lbm.topology.active_pore_space`) k is 0 exactly, as the
        solver reports it: k_ii and every off-diagonal k_ij that involves that axis. The network is
        trained on the percolating values only, so it is not asked for these.
        """
        from data_pipeline.lbm.topology import active_pore_space

        x = self._check(ims)
        y = self.norm.from_log(self.predict_log(x, batch_size, tta))  # (N, P) raw units
        phi = x.reshape(len(x), -1).mean(axis=1, dtype=np.float64)
        k_cols = [(j, component_index(n)) for j, n in enumerate(self.components) if is_k_component(n)]
        for i in range(len(x) if k_cols else 0):
            blocked = ~active_pore_space(x[i].astype(bool))[1]  # (D,) in (x, y[, z]) order
            for j, axes in k_cols:
                if blocked[list(axes)].any():
                    y[i, j] = 0.0
        rows = []
        for i in range(len(x)):
            row = {"porosity": float(phi[i])}
            for j, name in enumerate(self.components):
                row["pred_porosity" if name == "porosity" else name] = float(y[i, j])
            rows.append(row)
        return rows

    def _check(self, ims) -> np.ndarray:
        x = np.asarray(ims)
        shape = (self.cfg.input_size,) * self.cfg.dims
        if x.ndim == self.cfg.dims:
            x = x[None]
        if x.ndim != self.cfg.dims + 1 or tuple(x.shape[1:]) != shape:
            raise ValueError(f"surrogate {self.folder or ''} takes volumes of shape {shape} (one or a batch "
                             f"(N, {', '.join(map(str, shape))})), got {x.shape}")
        return np.ascontiguousarray(x != 0, dtype=np.uint8)


def read_surrogate_config(folder) -> SurrogateConfig:
    return SurrogateConfig.from_dict(read_config_dict(folder, "surrogate"))


def load_surrogate(folder, device: str = "cpu") -> Surrogate:
    """Load a surrogate checkpoint folder (weights-only: safetensors + JSON) -> Surrogate in eval mode."""
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg = read_surrogate_config(folder)
    require_files(folder, what="surrogate checkpoint")
    norm = Normalizer.from_dict(json.loads((folder / "norm.json").read_text()))
    model = MultiscaleCNN.from_config(cfg)
    model.load_state_dict(load_file(str(folder / "model.safetensors"), device="cpu"))
    dev = resolve_device(device)
    model.to(dev).eval()
    return Surrogate(model, cfg, norm, dev, str(folder))


def load_checked_surrogate(folder, dims: int, shape, device: str = "auto"):
    """Load a trained surrogate and check it can label volumes of ``shape`` (the build's labeler).

    Parameters
    ----------
    folder : checkpoint folder (model.safetensors, config.json, norm.json)
    dims, shape : of the dataset (voxels)
    device : torch device of the predictions ("auto" = CUDA when available)

    Returns
    -------
    (surrogate, info) : a :class:`Surrogate` and a dict for dataset.yaml (folder, sha256,
        components, dims, input_size, device)

    Raises
    ------
    DataError : not a surrogate checkpoint, or dims/input size/components do not fit the dataset.
    """
    from data_pipeline.io import DataError
    from data_pipeline.label_surrogate import model_fingerprint

    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"surrogate: {folder} is not a folder (give the checkpoint folder of a trained "
                        "surrogate, e.g. runs/surrogate/best)")
    try:
        scfg = read_surrogate_config(folder)
    except (FileNotFoundError, ValueError) as exc:
        raise DataError(f"surrogate: {exc}") from None
    shape = tuple(int(s) for s in shape)
    if scfg.dims != int(dims) or shape != (scfg.input_size,) * scfg.dims:
        raise DataError(f"surrogate {folder}: takes dims {scfg.dims} volumes of {scfg.input_size}^{scfg.dims} "
                        f"voxels; the dataset has dims {dims}, shape {list(shape)} (train a surrogate on "
                        "volumes of this size or build at its size)")
    missing = [c for c in diagonal_columns(dims) if c not in scfg.components]
    if missing:
        raise DataError(f"surrogate {folder}: does not predict {missing} (components {scfg.components}); "
                        "labeling needs every diagonal permeability")
    try:
        sur = load_surrogate(folder, device=device)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        raise DataError(f"surrogate: {exc}") from None
    info = {"folder": str(folder), "sha256": model_fingerprint(folder), "dims": scfg.dims,
            "input_size": scfg.input_size, "components": list(scfg.components), "device": str(sur.device)}
    return sur, info


def label_folder(surrogate, dataset_dir, out_csv=None, write_properties: bool = False, overwrite: bool = False,
                 batch_size: int | None = None, tta: bool = False, progress: bool = True) -> pd.DataFrame:
    """Predict every volume of ``dataset_dir/volumes`` (streamed in batches) -> one row per sample.

    Rows have the properties.csv columns (porosity measured, k_* predicted, lattice units) and
    ``labeler = surrogate:<checkpoint>``. ``out_csv`` (default DATASET/surrogate_predictions.csv) gets
    all rows; with ``write_properties`` they also go into properties.csv for samples without an ok
    label (solver labels are kept unless ``overwrite``).
    """
    from data_pipeline.io import (VOLUMES_DIR, DataError, atomic_path, property_columns,
                                  read_dataset_meta, read_properties, read_volume)
    from data_pipeline.io import write_properties as write_props

    root = Path(dataset_dir)
    meta = read_dataset_meta(root)
    dims = int(meta["dims"])
    if dims != surrogate.cfg.dims:
        raise DataError(f"{root / 'dataset.yaml'}: dims {dims}, the surrogate takes dims {surrogate.cfg.dims}")
    paths = sorted((root / VOLUMES_DIR).glob("*.tif"))
    if not paths:
        raise DataError(f"{root / VOLUMES_DIR}: no .tif volumes")
    bs = batch_size or surrogate.cfg.eval_batch_size
    labeler = f"surrogate:{surrogate.folder or 'in-memory'}"
    rows = []
    t0 = time.perf_counter()
    for s in range(0, len(paths), bs):
        chunk = paths[s:s + bs]
        ims = np.stack([read_volume(p) for p in chunk])  # (B, *shape) bool
        for p, r in zip(chunk, surrogate.predict(ims, tta=tta)):
            rows.append({"sample_id": p.stem, **r, "steps": 0, "converged": True, "residual": np.nan,
                         "max_mach": np.nan, "labeler": labeler, "status": "ok", "error": ""})
        if progress:
            print(f"\r{min(s + bs, len(paths))}/{len(paths)} volumes", end="", file=sys.stderr)
    if progress:
        print(f"  ({len(paths) / (time.perf_counter() - t0):.1f} volumes/s)", file=sys.stderr)
    cols = property_columns(dims)
    df = pd.DataFrame(rows)
    extra = [c for c in df.columns if c not in cols]
    df = df[[c for c in cols if c in df.columns] + extra]
    out_csv = Path(out_csv) if out_csv else root / "surrogate_predictions.csv"
    with atomic_path(out_csv) as tmp:
        df.to_csv(tmp, index=False)
    if write_properties:
        old = read_properties(root)
        if old.empty or overwrite:
            ok_ids = set()
        else:
            status = old["status"].fillna("ok") if "status" in old.columns else pd.Series("ok", index=old.index)
            ok_ids = set(old.loc[status == "ok", "sample_id"])
        keep = old[old["sample_id"].isin(ok_ids) | ~old["sample_id"].isin(df["sample_id"])] if not old.empty else old
        new = df[~df["sample_id"].isin(ok_ids)]
        merged = pd.concat([keep, new[[c for c in new.columns if c in cols]]], ignore_index=True)
        write_props(root, merged[[c for c in cols if c in merged.columns]])
    return df
