"""The one flat config of the permeability surrogate (model, optimisation, data, runtime)."""
from __future__ import annotations

from dataclasses import dataclass

from core.config import Check, load_config_file
from core.properties import K_COLUMNS
from models.config import TrainingConfig, validate_training


@dataclass
class SurrogateConfig(TrainingConfig):
    """Configuration of one surrogate training run (flat; every field a plain value).

    Model
        dims (2 | 3), input_size (edge of the cubic/square input, voxels; divisible by
        2**(scales-1)), components (target columns of properties.csv: "porosity" and k_* ; None =
        porosity + the full tensor of ``dims``), scales (input resolutions: full grid and
        scales-1 average-pooled copies), channels (one entry per stride-2 stage of each branch; a
        coarse branch stops when its grid reaches 1 voxel), kernel_size, norm, activation,
        dropout (before the head), head_depth (hidden layers of the head, 0 = linear),
        head_width, k_floor (k below it, lattice units, is clamped before log10: non-percolating
        samples have k = 0).
    Optimisation
        AdamW (lr, weight_decay), scheduler, min_lr_ratio, grad_clip, early stopping after
        ``patience`` epochs without val_loss improving by more than min_delta; loss = MSE of the
        normalized targets.
    Data
        augment (one random symmetry of the square/cube per batch, tensor mapped with it),
        augment_shift (every sample also rolled by a random periodic shift: the labels of a
        periodic box do not change),
        dataset_size (seeded nested subset of the TRAIN split; None = all), seed, split_seed,
        split_fractions (the same split as the pVAE's for a given split_seed).
    Runtime
        device ("auto" = CUDA when available), num_threads, amp / channels_last (CUDA only),
        eval_batch_size, tta (evaluate with the prediction averaged over the symmetry group).
    """

    # model (the shared fields are TrainingConfig's)
    components: list[str] | None = None
    scales: int = 3
    head_depth: int = 1
    head_width: int = 128
    # optimisation (defaults of the surrogate)
    lr: float = 2e-3
    epochs: int = 40
    patience: int = 8
    # runtime
    tta: bool = False

    def __post_init__(self) -> None:
        if self.components is None:
            self.components = ["porosity"] + list(K_COLUMNS.get(int(self.dims), []))
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the field when a value is out of range."""
        check = Check(self)
        validate_training(self, check)
        allowed = ["porosity"] + K_COLUMNS[self.dims]
        if not self.components:
            check.bad("components", "must name at least one target column")
        for c in self.components:
            if c not in allowed:
                check.bad("components", f"unknown column {c!r} for dims {self.dims}; allowed: {allowed}")
        if len(set(self.components)) != len(self.components):
            check.bad("components", "has duplicates")
        if self.scales < 1:
            check.bad("scales", "must be >= 1")
        step = 2 ** (self.scales - 1)
        if self.input_size % step or self.input_size // step < 2:
            check.bad("input_size", f"must be divisible by 2**(scales-1) = {step} with a coarsest grid of >= 2 voxels")
        check.at_least(("head_width",), 1)
        if self.head_depth < 0:
            check.bad("head_depth", "must be >= 0")
        check.at_least(("min_delta", "min_lr_ratio"), 0)


def load_surrogate_config(path=None, **overrides) -> SurrogateConfig:
    """Flat YAML/JSON config file + keyword overrides -> SurrogateConfig (unknown keys name the file)."""
    return load_config_file(SurrogateConfig, path, overrides)
