"""The one flat config of the tuning stage (a study or an ablation) and its search-space parser.

A study YAML names the model to tune (``model:``, a key of :data:`MODELS`: ``pvae``, the default,
or ``surrogate``, the CNN permeability surrogate of models/surrogate/), the dataset, the fixed
training settings (``train:``, fields of that model's config dataclass: ``models.config.PVAEConfig``
or ``models.surrogate.SurrogateConfig``), the search space (``search_space:``, distributions over
fields of the same config) and how Ray Tune searches, schedules, checkpoints and places trials.
Every key of ``train`` and ``search_space`` is checked against the chosen model's config before
Ray starts: an unknown key fails at once, naming the key, the model and the file.

Distributions use Ray Tune's own names and semantics (``tune.<name>(*args)``)::

    search_space:
      latent_dim: {choice: [4, 8, 16]}
      beta: {loguniform: [0.01, 0.3]}
      lr: {loguniform: [1.0e-4, 3.0e-3]}
      dataset_size: {choice: [8, 16]}
      regressor_depth: {randint: [1, 4]}     # Ray's randint: upper bound exclusive -> 1, 2, 3
      batch_size: 8                          # a plain value is held fixed
      alpha: {grid: [0.5, 1.0]}              # grid_search (only with search: grid or random)

The surrogate's search space is a second one over SurrogateConfig fields (``configs/tune_surrogate_smoke.yaml``)::

    model: surrogate
    search_space:
      lr: {loguniform: [1.0e-4, 3.0e-3]}
      head_depth: {randint: [0, 3]}
      dropout: {uniform: [0.0, 0.3]}
"""
from __future__ import annotations

import os
from importlib import import_module
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.config import Check, FlatConfig, load_config_file, unknown_key_error

#: Distribution name in the YAML -> number of arguments Ray's function takes.
DISTRIBUTIONS = {
    "choice": 1, "grid": 1, "uniform": 2, "loguniform": 2, "quniform": 3, "qloguniform": 3,
    "randint": 2, "lograndint": 2, "qrandint": 3, "randn": 2,
}
SEARCHERS = ("hyperopt", "random", "grid")
SCHEDULERS = ("asha", "fifo")
#: The hyperparameters users tune; every pVAE study logs them as MLflow params.
CORE_PARAMS = ("latent_dim", "beta", "lr", "dataset_size", "regressor_depth")


def _resolve(ref: str):
    """``"package.module:attr"`` -> the object (imported on first use: no torch import at config time)."""
    import importlib

    module, attr = ref.split(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class ModelSpec:
    """What the tuning stage needs to know about one trainable model (see :data:`MODELS`).

    config / trainer / load_config are ``module:attr`` references resolved on use. The trainer has the
    shape of ``models.train.Trainer``: ``Trainer(cfg, dataset_dir)``, ``train_epoch() -> dict`` (with
    ``val_loss``), ``should_stop()``, ``is_best()``, ``save_checkpoint(folder)``,
    ``Trainer.resume(folder, dataset_dir)``, ``evaluate(split, out_dir) -> dict``, ``train_set``,
    ``load_best_weights()`` (both derive from ``models.common.EpochTrainer``). targets_field names the config field that lists the target columns of
    properties.csv; core_params are the hyperparameters always shown in summaries (besides the
    searched ones); registered_name is the MLflow registered model of ``promote`` (None: refused);
    ablation_metric is the first panel of the ablation figure (test metric, axis label).
    """

    name: str
    config: str
    trainer: str
    load_config: str
    targets_field: str
    core_params: tuple = ()
    registered_name: str | None = None
    ablation_metric: tuple = ("test_recon_bce", "test reconstruction BCE (nats/voxel)")

    def config_class(self):
        return _resolve(self.config)

    def trainer_class(self):
        return _resolve(self.trainer)

    def field_names(self) -> set[str]:
        return set(self.config_class().field_names())

    def load_base(self, path) -> dict:
        """A models YAML (``train_config``) of this model as a dict of config fields."""
        return _resolve(self.load_config)(path).to_dict()

    def make_config(self, d: dict):
        return self.config_class().from_dict(d)

    def default_targets(self, dims: int) -> list[str]:
        return list(getattr(self.config_class()(dims=dims), self.targets_field))


#: The models a study can tune (``model:`` of the study YAML); one trainable drives them all.
MODELS = {
    "pvae": ModelSpec("pvae", "models.config:PVAEConfig", "models.train:Trainer", "models.config:load_config",
                      targets_field="properties", core_params=CORE_PARAMS, registered_name="pvae"),
    "surrogate": ModelSpec("surrogate", "models.surrogate:SurrogateConfig", "models.surrogate:SurrogateTrainer",
                           "models.surrogate:load_surrogate_config", targets_field="components",
                           core_params=("lr", "dataset_size"), registered_name=None,
                           ablation_metric=("test_mse_norm", "test MSE of the normalized targets")),
}


def model_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}") from None


@dataclass
class StudyConfig(FlatConfig):
    """Configuration of one Ray Tune study or dataset-size ablation.

    Model
        model ("pvae" | "surrogate", a key of MODELS): whose config ``train`` and ``search_space``
        hold and which trainer the trials run.
    Data
        dataset (a dataset folder, README "On-disk dataset"), build_config (a data_pipeline build YAML used to
        build ``dataset`` when it is missing; None = fail if missing).
    Training
        train_config (a models YAML of the model, its base config; None = defaults), train (fixed
        overrides of the model's config fields), search_space (distributions over the same fields,
        see module doc).
    Search
        metric / mode (declared once: the searcher, ASHA, checkpoint ranking and promotion use them;
        a pVAE trial keeps its best/ weights by it too when it is one of models.config.SELECT_METRICS),
        search ("hyperopt" | "random" | "grid"), num_samples (trials; with grid: repeats of the grid),
        max_concurrent (trials at once), seed (searcher seed), scheduler ("asha" | "fifo"),
        grace_period and reduction_factor (ASHA, in epochs).
    Resources and storage
        cpu, gpu per trial (fractions allowed, e.g. gpu 0.25 puts four trials on a GPU),
        ray_address (None = local Ray, "auto" = the running cluster), storage_path (local folder,
        shared filesystem or s3:// URI), name (experiment folder under storage_path),
        keep_checkpoints (best N by metric), max_failures (retries of a crashed trial from its last
        checkpoint).
    Tracking
        tracking_uri (None = ``MLFLOW_TRACKING_URI`` or ``sqlite:///<storage_path>/mlflow.db``),
        experiment (MLflow experiment name; None = name), log_figures.
    Ablation (``python -m tuning ablate``)
        sizes (dataset sizes), seeds (one trial per size and seed, other settings fixed).
    """

    name: str = "pvae-study"
    model: str = "pvae"
    dataset: str = "runs/data_smoke"
    build_config: str | None = None
    train_config: str | None = None
    train: dict = field(default_factory=dict)
    search_space: dict = field(default_factory=dict)
    metric: str = "val_loss"
    mode: str = "min"
    search: str = "hyperopt"
    num_samples: int = 2
    max_concurrent: int = 2
    seed: int = 0
    scheduler: str = "asha"
    grace_period: int = 1
    reduction_factor: float = 2.0
    cpu: float = 1.0
    gpu: float = 0.0
    ray_address: str | None = None
    storage_path: str = "runs/tune"
    keep_checkpoints: int = 2
    max_failures: int = 1
    tracking_uri: str | None = None
    experiment: str | None = None
    log_figures: bool = True
    sizes: list = field(default_factory=list)
    seeds: list = field(default_factory=lambda: [0])

    UNKNOWN = "unknown study config key"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the field; check train/search_space keys against the model's config."""
        bad = Check(self, "study config field").bad
        if self.model not in MODELS:
            bad("model", f"must be one of {tuple(MODELS)}")

        if self.mode not in ("min", "max"):
            bad("mode", "must be 'min' or 'max'")
        if self.search not in SEARCHERS:
            bad("search", f"must be one of {SEARCHERS}")
        if self.scheduler not in SCHEDULERS:
            bad("scheduler", f"must be one of {SCHEDULERS}")
        for name in ("num_samples", "max_concurrent", "keep_checkpoints", "grace_period"):
            if int(getattr(self, name)) < 1:
                bad(name, "must be >= 1")
        if self.reduction_factor <= 1:
            bad("reduction_factor", "must be > 1")
        if self.cpu < 0 or self.gpu < 0 or self.cpu + self.gpu == 0:
            bad("cpu", "cpu and gpu must be >= 0 and not both 0")
        if self.max_failures < -1:
            bad("max_failures", "must be >= -1 (-1 = retry forever)")
        if not isinstance(self.train, dict):
            bad("train", "must be a mapping of training config fields to values")
        if not isinstance(self.search_space, dict):
            bad("search_space", "must be a mapping of training config fields to distributions")
        spec = MODELS[self.model]
        fields = spec.field_names()
        for section in ("train", "search_space"):
            for key in getattr(self, section):
                if key not in fields:
                    raise unknown_key_error(key, fields, section, "unknown training config key",
                                            detail=f" for model {self.model!r} ({spec.config.split(':')[1]})")
        for key, spec in self.search_space.items():
            parse_distribution(key, spec)  # raises on a malformed spec
            if is_grid(spec) and self.search == "hyperopt":
                raise ValueError(f"search_space: {key!r} is a grid; grid values need search: grid or random "
                                 "(HyperOptSearch samples, it does not enumerate)")
        if any(int(s) < 1 for s in self.sizes):
            bad("sizes", "dataset sizes must be >= 1")

    # --- derived values ------------------------------------------------------------------
    @property
    def experiment_path(self) -> str:
        """The Tune experiment folder (``storage_path/name``); what ``resume`` takes."""
        return _join(self.storage_path, self.name)

    @property
    def experiment_name(self) -> str:
        return self.experiment or self.name

    @property
    def spec(self) -> ModelSpec:
        """The model this study tunes (config class, trainer class, ...)."""
        return MODELS[self.model]

    def base_training_dict(self) -> dict:
        """The fixed part of every trial's training config (train_config file + train overrides)."""
        base = self.spec.load_base(self.train_config) if self.train_config else {}
        base.update(self.train)
        # the trial's best/ checkpoint follows the study's metric when the model can select by it
        choices = getattr(import_module(self.spec.config.split(":")[0]), "SELECT_METRICS", ())
        if "select_metric" not in base and self.mode == "min" and self.metric in choices:
            base["select_metric"] = self.metric
        return _plain(base)

    def param_space(self) -> dict:
        """Ray Tune param_space: the search space as ``tune`` domains (plain values stay fixed)."""
        return {k: to_tune(k, v, grid_as_choice=self.search == "grid") for k, v in self.search_space.items()}

    @classmethod
    def from_dict(cls, d: dict, source: str | None = "<dict>") -> "StudyConfig":
        """FlatConfig.from_dict with the ``train`` / ``search_space`` values made plain numbers."""
        return super().from_dict({k: _plain(v) if k in ("train", "search_space") else v for k, v in d.items()},
                                 source)


def load_study_config(path: str | os.PathLike, **overrides) -> StudyConfig:
    """Read a study YAML and apply keyword overrides; errors name the file and the key.

    Relative paths in the file (dataset, build_config, train_config, storage_path) are taken
    relative to the current directory (the repository root, where every command runs).
    """
    return load_config_file(StudyConfig, Path(path), overrides, skip_none=True, what="study config")


def is_grid(spec: Any) -> bool:
    return isinstance(spec, dict) and set(spec) == {"grid"}


def parse_distribution(key: str, spec: Any) -> tuple[str | None, list]:
    """``{name: args}`` -> (name, args); a plain value -> (None, [value]). Raises on a bad spec."""
    if not isinstance(spec, dict):
        return None, [_number(spec)]
    if len(spec) != 1:
        raise ValueError(f"search_space: {key!r}: one distribution per key, e.g. {{loguniform: [1e-4, 1e-2]}}, "
                         f"got {spec!r}")
    (name, args), = spec.items()
    if name not in DISTRIBUTIONS:
        raise ValueError(f"search_space: {key!r}: unknown distribution {name!r}; "
                         f"choose from {', '.join(DISTRIBUTIONS)}")
    if not isinstance(args, list):
        raise ValueError(f"search_space: {key!r}: {name} takes a list, got {args!r}")
    args = [_number(a) for a in args]
    if name in ("choice", "grid"):
        if not args:
            raise ValueError(f"search_space: {key!r}: {name} needs at least one value")
    elif len(args) != DISTRIBUTIONS[name]:
        raise ValueError(f"search_space: {key!r}: {name} takes {DISTRIBUTIONS[name]} numbers, got {args!r}")
    elif name in ("uniform", "loguniform", "quniform", "qloguniform", "randint", "lograndint", "qrandint") \
            and not args[0] < args[1]:
        raise ValueError(f"search_space: {key!r}: {name} needs lower < upper, got {args!r}")
    if name.startswith("log") or name == "qloguniform":
        if args[0] <= 0:
            raise ValueError(f"search_space: {key!r}: {name} needs a positive lower bound, got {args!r}")
    return name, args


def to_tune(key: str, spec: Any, grid_as_choice: bool = False):
    """One search-space entry as a Ray Tune domain (or the plain value when fixed)."""
    from ray import tune

    name, args = parse_distribution(key, spec)
    if name is None:
        return args[0]
    if name == "grid" or (name == "choice" and grid_as_choice):
        return tune.grid_search(args)
    return getattr(tune, name)(args) if name == "choice" else getattr(tune, name)(*args)


def _number(v: Any) -> Any:
    """YAML 1.1 reads ``1e-4`` (no dot) as a string: turn numeric strings into floats."""
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return v
    return v


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return _number(v)


def _join(base: str, name: str) -> str:
    if "://" in base:
        return base.rstrip("/") + "/" + name
    return str(Path(base).resolve() / name)
