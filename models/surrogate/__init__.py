"""Multiscale CNN permeability surrogate: volume -> porosity and log10 of the permeability tensor.

After Heider, Aldakheel and Ehlers (Applied Sciences 15(5):2589, 2025): the solver gives the ground
truth on part of a dataset, a CNN that sees the volume at several resolutions labels the rest.

Model (:class:`MultiscaleCNN`, one definition for 2D and 3D). The input (B, 1, *shape) in {0, 1} is
average-pooled into ``scales`` copies (full grid, 1/2, 1/4, ...: the coarse copies hold the local
porosity). Each copy has its own encoder of stride-2 stages [conv -> norm -> act -> conv -> norm ->
act] with CIRCULAR padding (the volumes and the solver are periodic). The global mean of every
stage's features of every branch (a feature pyramid) and the input porosity are concatenated into
an MLP head that predicts the normalized targets. Targets: log10 k for the diagonal components,
linear off-diagonals and porosity, standardized with the training statistics (the pVAE's
:class:`models.checkpoint.Normalizer`).

Training (:class:`SurrogateTrainer`) follows the pVAE loop (models/train.py): one epoch per call,
seeds, early stopping, best/last checkpoint folders (safetensors + config.json + norm.json +
metrics.json + weights-only train_state.pt). Augmentation draws one symmetry of the cube per batch
and maps volume and tensor together (augment.py).

Inference: ``load_surrogate(folder).predict(ims)`` -> one dict per volume with the properties.csv
columns (porosity measured exactly on the volume; k_* in lattice units, voxel^2).

Layout, like the pVAE's: config.py (SurrogateConfig), net.py (MultiscaleCNN), train.py
(SurrogateTrainer), evaluate.py (metrics and figures), predict.py (Surrogate, load_surrogate,
load_checked_surrogate, label_folder), augment.py (symmetries), cli.py (the verbs).

Command line: ``python -m models surrogate train|evaluate|predict`` (or ``python -m models.surrogate``).
"""
from __future__ import annotations

from models.surrogate.config import SurrogateConfig, load_surrogate_config
from models.surrogate.net import MultiscaleCNN
from models.surrogate.predict import (Surrogate, label_folder, load_checked_surrogate, load_surrogate,
                                      read_surrogate_config)
from models.surrogate.train import KIND, SurrogateTrainer, fit_normalizer

__all__ = ["KIND", "MultiscaleCNN", "Surrogate", "SurrogateConfig", "SurrogateTrainer", "fit_normalizer",
           "label_folder", "load_checked_surrogate", "load_surrogate", "load_surrogate_config", "main",
           "read_surrogate_config"]


def main(argv: list[str] | None = None) -> int:
    """``python -m models surrogate train|evaluate|predict ...`` (see models/surrogate/cli.py)."""
    from models.surrogate.cli import main as cli_main
    return cli_main(argv)
