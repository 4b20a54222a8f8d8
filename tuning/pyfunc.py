"""The MLflow pyfunc of a promoted pVAE: a checkpoint folder (weights only, safetensors) as artifact.

    model = mlflow.pyfunc.load_model("models:/pvae@champion")
    table = model.predict(volumes)                   # volumes (N, 1, *shape) float32 in {0, 1}
    pvae, cfg, norm = model.unwrap_python_model().components()   # for decoding (inverse design)

``predict`` returns one row per volume: the predicted properties in real units (porosity as a
fraction, permeability in lattice units, as in properties.csv) and the latent mean ``z_0 .. z_{L-1}``.
The checkpoint inside the model holds ``config.json`` (the full PVAEConfig) and ``norm.json`` (the
property normalization), so the model is self-contained; the code of ``models/`` and ``tuning/`` travels
with it (``code_paths``), so it loads from any working directory.
"""
from __future__ import annotations

import mlflow.pyfunc
import numpy as np


class PVAEPyfunc(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper of a pVAE checkpoint folder (artifact key ``checkpoint``)."""

    def load_context(self, context) -> None:
        from models.checkpoint import load_model

        self.model, self.cfg, self.norm = load_model(context.artifacts["checkpoint"], device="cpu")
        self.model.eval()

    def components(self):
        """(PVAE in eval mode on CPU, PVAEConfig, Normalizer) for decoding and latent-space search."""
        return self.model, self.cfg, self.norm

    def predict(self, context, model_input, params=None):
        import pandas as pd
        import torch

        if isinstance(model_input, dict):  # named-tensor input
            model_input = model_input.get("volumes", next(iter(model_input.values())))
        x = np.asarray(model_input, dtype=np.float32)
        if x.ndim == self.cfg.dims + 1:  # (N, *shape) -> (N, 1, *shape)
            x = x[:, None]
        expected = (1,) + (self.cfg.input_size,) * self.cfg.dims
        if x.ndim != self.cfg.dims + 2 or x.shape[1:] != expected:
            raise ValueError(f"pVAE input must be (N, {', '.join(map(str, expected))}) volumes (1 = pore), "
                             f"got shape {x.shape}")
        with torch.no_grad():
            mu, _ = self.model.encode(torch.from_numpy(x))  # (N, L)
            y = self.model.predict_properties(mu)  # (N, P) normalized
        props = self.norm.inverse(y.numpy())  # (N, P) real units
        mu = mu.numpy()
        columns = {p: props[:, j].astype(np.float64) for j, p in enumerate(self.cfg.properties)}
        columns.update({f"z_{i}": mu[:, i].astype(np.float64) for i in range(mu.shape[1])})
        return pd.DataFrame(columns)


def signature(cfg):
    """Input: (N, 1, *shape) float32 volumes; output: one double column per property and latent dim."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema, TensorSpec

    inputs = Schema([TensorSpec(np.dtype(np.float32), (-1, 1) + (cfg.input_size,) * cfg.dims)])
    outputs = Schema([ColSpec("double", p) for p in cfg.properties]
                     + [ColSpec("double", f"z_{i}") for i in range(cfg.latent_dim)])
    return ModelSignature(inputs=inputs, outputs=outputs)
