"""The one flat config of the pVAE stage (model, loss, optimisation, data), JSON/YAML-serializable.

Every field is a plain value (int, float, str, bool, None or a list of those) so the config can be
written into each checkpoint (``config.json``), logged to MLflow and swept by Ray Tune. An unknown
key fails at once (``from_dict`` / ``load_config``), like nanoGPT's "Unknown config key".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from core.config import Check, FlatConfig, load_config_file, parse_override  # noqa: F401  (parse_override re-exported)
from data_pipeline.morphology import LEARNABLE

NORMS = ("batch", "group", "none")
SCHEDULERS = ("cosine", "plateau", "none")
ACTIVATIONS = ("relu", "silu", "leaky_relu")
#: validation metrics that can select the best checkpoint (and drive early stopping) of a pVAE run
SELECT_METRICS = ("val_score", "val_loss", "val_recon", "val_prop", "val_morph")


def validate_training(cfg, check: Check) -> None:
    """The checks of the fields every training config (pVAE, surrogate) has: model shape,
    optimisation, data, runtime. A config's ``validate`` adds its own."""
    if cfg.dims not in (2, 3):
        check.bad("dims", "must be 2 or 3")
    if not cfg.channels or any(int(c) < 1 for c in cfg.channels):
        check.bad("channels", "must be a non-empty list of positive channel counts")
    if cfg.kernel_size < 1 or cfg.kernel_size % 2 == 0:
        check.bad("kernel_size", "must be a positive odd number")
    for name, allowed in (("norm", NORMS), ("activation", ACTIVATIONS), ("scheduler", SCHEDULERS)):
        check.one_of(name, allowed)
    if not 0 <= cfg.dropout < 1:
        check.bad("dropout", "must be in [0, 1)")
    check.at_least(("batch_size", "eval_batch_size", "epochs"), 1)
    check.at_least(("weight_decay", "grad_clip", "k_floor"), 0)
    if not cfg.lr > 0:
        check.bad("lr", "must be > 0")
    if cfg.dataset_size is not None and cfg.dataset_size < 1:
        check.bad("dataset_size", "must be >= 1 or None")
    check.device()
    check.fractions()


@dataclass
class TrainingConfig(FlatConfig):
    """The fields every training config (pVAE, surrogate) has: model shape, optimisation, data,
    runtime; a subclass adds its own and redeclares a field to change its default."""

    # model
    dims: int = 3
    input_size: int = 32
    channels: list[int] = field(default_factory=lambda: [16, 32, 64])
    kernel_size: int = 3
    norm: str = "batch"
    activation: str = "silu"
    dropout: float = 0.0
    k_floor: float = 1e-6
    augment: bool = True
    augment_shift: bool = False
    # optimisation
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 16
    epochs: int = 20
    scheduler: str = "cosine"
    min_lr_ratio: float = 0.01
    grad_clip: float = 1.0
    patience: int = 5
    min_delta: float = 0.0
    # data
    dataset_size: int | None = None
    seed: int = 0
    split_seed: int = 0
    split_fractions: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    # runtime
    device: str = "auto"
    num_threads: int | None = None
    amp: bool = True
    channels_last: bool = True
    eval_batch_size: int = 64


@dataclass
class PVAEConfig(TrainingConfig):
    """Configuration of one pVAE training run.

    Model
        dims (2 | 3), input_size (edge of the cubic/square input, voxels; any size >= 2**stages),
        channels (one entry per strided encoder stage; the decoder mirrors them), kernel_size,
        norm ("batch" | "group" | "none"), activation, dropout (channel dropout after each stage),
        latent_dim (the global code: regressor input, inverse-design search space),
        spatial_channels (channels of the spatial latent that carries the texture; 0 = a plain
        single-latent VAE), spatial_stage (its encoder level, grid input_size / 2^level; default 1,
        the half-resolution grid: coarser grids cannot carry the voxel arrangement and reconstruct
        blurred structures; None = len(channels) - 1), prior_components (Gaussian mixture fitted to the aggregate posterior of
        the global code after every epoch, used for prior samples; 0 = N(0, I)), texture_bank
        (training structures, seeded, whose posterior texture residuals and codes the checkpoint
        stores after every epoch, :class:`models.pvae.PVAE`: inverse design's ``texture:
        variants`` decodes texture variants with them; 0 = none, the default; 256 at 32^3 with 4
        channels on the 16^3 grid is 8.4 MB in float16),
        padding ("circular": the structures and the solver are periodic; "zeros" for checkpoints
        written before it existed), texture_prior ("spectral", the default: the residual of the
        texture prior p(z_s | z) a stationary Gaussian field with a learned isotropic power
        spectrum, so that prior texture is spatially correlated as posterior texture is: on the
        bench set prior samples' Euler density 1.32x the training set's against 2.08x, specific
        surface 1.01x against 1.13x, reconstruction unchanged (bench/RESULTS.md, "Spectral texture
        prior"); "white": independent per site, the rule before 2026-12-02 and of checkpoints
        written before it; "conditional": the spectral prior with a log spectrum offset linear in
        the global code: prior samples' Euler density 1.02-1.11x against 1.20-1.46x, but their
        porosity Wasserstein 0.025-0.032 against 0.018-0.019, two seeds, bench/RESULTS.md "The bench
        set rebuilt"), regressor_depth (hidden layers of the property MLP, 0 = linear),
        regressor_width, properties (target columns of properties.csv), descriptors (morphology
        descriptors of :data:`data_pipeline.morphology.LEARNABLE`, e.g. ``[specific_surface,
        chord_length, euler_density]``, that the regressor also predicts from the global code:
        appended to ``properties`` as extra targets, measured on the volumes where properties.csv
        lacks them; they make the code carry the grain scale and connectivity that k depends on,
        and are not design targets. Default none).
    Loss (all terms per voxel and per sample, so their size depends on neither batch nor volume size)
        loss = recon + beta_eff * kl + alpha * prop + gamma * morph, with recon the mean BCE per voxel,
        kl the KL of both latent levels per sample divided by the number of voxels, prop the MSE of
        the normalized properties over the known entries (k = 0 of a non-percolating sample is left
        out of the k terms, not regressed as log10 of a floor), morph the porosity + normalized
        two-point correlation (rho(r), the texture scale) mismatch of a structure generated from the sample's global code with a prior
        spatial latent (what inverse design delivers) against the sample, plus sharpness times the
        mean p (1 - p) of that structure (0 when it is decisive, 0.25 when grey); morph_binarize
        (default True): rho of that structure binarized at the sample's porosity (straight-through
        gradient), the structure a design delivers, instead of rho of its probabilities (False, the
        rule before 2026-12-01): on the demo data the prior samples' specific surface went from
        1.56x to 1.26x the training median and their Euler density from 4.3x to 1.7x, at pore IoU
        0.868 -> 0.857 (bench/RESULTS.md); beta_eff ramps linearly from 0 to beta over
        beta_warmup_epochs. beta defaults to 0.05: at beta = 1 (the plain ELBO, KL per voxel)
        encoding where each pore sits costs more than the reconstruction gains and the model
        reconstructs blurred or grey structures (bench/RESULTS.md, "pVAE generative fidelity").
        beta_spatial (None = beta): the weight of the spatial level's KL(q(z_s | x) || p(z_s | z))
        alone (warmed up alike); a larger one keeps the texture posterior near the conditional prior
        that generation and inverse design draw from (bench/RESULTS.md, "Weighting the texture
        latent's KL apart": at 2.0 prior morphology ratios near training's, IoU -0.04).
        adversarial (0 = off): the weight of a patch discriminator's non-saturating loss on the
        generated structure of the morph term (binarized at the sample's porosity, straight-through
        gradient) added to the loss; the discriminator (:class:`models.layers.PatchDiscriminator`)
        learns real training structures against those, ``critic_steps`` steps per batch, and is
        kept in the training state only (the checkpoint's model is the pVAE alone).
        critic_steps: discriminator updates per pVAE step; each one after the first on the same
        real/generated pair under a random symmetry of the square/cube (no extra decoding). With one
        step the critic stayed at chance over a 14-epoch bench run, while trained offline on the same
        pairs it separates them after 200-600 steps (bench/RESULTS.md, "Adversarial patch loss").
        critic_conditional: the critic also reads the global code (a projection discriminator): real
        structures with their own codes against generated ones with the codes they were decoded from.
        k_floor: permeabilities (lattice units) below it are clamped before log10 where a log is
        still taken (evaluation of k = 0 rows is done apart).
        augment: one random symmetry of the square/cube per batch (8 in 2D, 48 in 3D), the
        permeability columns permuted with it. augment_shift: each training sample also rolled by a
        random periodic shift (uniform on every axis): the solver's boundaries are periodic, so
        porosity and the k tensor of a shifted structure are those of the original, exactly
        (default false: in 2D it matched what ``predict_shifts`` gives and lost the maximize HITs,
        in 3D it was neutral; bench/RESULTS.md "Periodic shifts").
    Optimisation
        AdamW (lr, weight_decay), scheduler ("cosine" to lr*min_lr_ratio over `epochs`, "plateau",
        "none"), grad_clip (max global grad norm, 0 = off), early stopping after `patience` epochs
        without an improvement of ``select_metric`` larger than min_delta.
    Checkpoint selection
        select_metric: the validation metric whose minimum is kept as ``best/`` and drives early
        stopping: "val_score" (default; recon + prop + morph with unit weights, so neither beta nor
        a noisy property term on a small validation set decides alone: with val_loss a 2D run of
        96 images kept an epoch whose decoder was still untrained, issue 16), or "val_loss",
        "val_recon", "val_prop", "val_morph". A tuning study sets it to its ``metric`` when that
        is one of these.
    Data
        dataset_size (seeded nested subset of the TRAIN split, None = all), split_seed and
        split_fractions (fixed per dataset so val/test never move), seed (weights, shuffling, subset).
    Runtime
        device ("auto" = CUDA when available), num_threads (torch CPU threads), amp and
        channels_last (used on CUDA only), eval_batch_size, n_generate (prior samples for the
        generation statistics), predict_shifts (evaluation scores the properties of a test volume
        as the mean of the regressor's predictions for the volume and this many periodic shifts of
        it, :meth:`models.pvae.PVAE.predict_volumes`; the regressor on a latent code, what inverse
        design reads, is not changed by it. 0, the default, = one pass: on the 3D development set
        15 shifts cost 0.00-0.01 of log10 k R^2, the foams being generated non-periodic (a shift
        moves their face seam inside); the 2D config sets 15: porosity R^2 0.92-0.97 -> 0.98-0.99,
        log10 k 0.35 / 0.57 -> 0.62 / 0.78, bench/RESULTS.md "Periodic shifts"); predict_symmetries
        (evaluation averages that prediction over the symmetries of the square / cube too, 8 in 2D,
        48 in 3D, each mapped back with the permutation of the tensor labels,
        :func:`models.evaluate.volume_properties`; the 2D config sets it: mean test log10 k R^2 of
        3 seeds 0.787 / 0.773 -> 0.811 / 0.781, bench/RESULTS.md "Periodic shifts").
    """

    # model (the shared fields are TrainingConfig's)
    properties: list[str] = field(default_factory=lambda: ["porosity", "k_xx", "k_yy", "k_zz"])
    descriptors: list[str] = field(default_factory=list)
    latent_dim: int = 16
    spatial_channels: int = 4
    spatial_stage: int | None = 1
    padding: str = "circular"
    texture_prior: str = "spectral"
    prior_components: int = 8
    texture_bank: int = 0
    regressor_depth: int = 2
    regressor_width: int = 64
    # loss
    beta: float = 0.05
    beta_spatial: float | None = None
    beta_warmup_epochs: int = 0
    alpha: float = 1.0
    gamma: float = 5.0
    sharpness: float = 0.0
    morph_binarize: bool = True
    adversarial: float = 0.0
    critic_steps: int = 1
    critic_conditional: bool = False
    # checkpoint selection
    select_metric: str = "val_score"
    # runtime
    n_generate: int = 64
    predict_shifts: int = 0
    predict_symmetries: bool = False

    def __post_init__(self) -> None:
        # the descriptors are targets like the properties, after them (idempotent: a saved config has both)
        self.properties = list(self.properties) + [d for d in self.descriptors if d not in self.properties]
        self.validate()

    @property
    def labels(self) -> list[str]:
        """The properties that are labels of the dataset (porosity, k), not learned descriptors."""
        return [p for p in self.properties if p not in self.descriptors]

    def validate(self) -> None:
        """Raise ValueError naming the field when a value is out of range."""
        check = Check(self)
        validate_training(self, check)
        if self.input_size < 2 ** len(self.channels):
            check.bad("input_size", f"too small for {len(self.channels)} stride-2 stages (need >= {2 ** len(self.channels)})")
        check.at_least(("latent_dim", "regressor_width", "critic_steps"), 1)
        if self.regressor_depth < 0:
            check.bad("regressor_depth", "must be >= 0")
        if not self.properties:
            check.bad("properties", "must name at least one property column")
        bad = [d for d in self.descriptors if d not in LEARNABLE]
        if bad:
            check.bad("descriptors", f"{bad} cannot be learned; choose from {list(LEARNABLE)}")
        check.one_of("padding", ("circular", "zeros"))
        check.one_of("texture_prior", ("white", "spectral", "conditional"))
        check.at_least(("beta", "alpha", "gamma", "sharpness", "spatial_channels", "prior_components", "texture_bank",
                        "predict_shifts", "adversarial"), 0)
        if self.beta_spatial is not None and not self.beta_spatial >= 0:
            check.bad("beta_spatial", "must be >= 0 or null (= beta)")
        check.one_of("select_metric", SELECT_METRICS)
        if self.spatial_stage is not None and not 1 <= self.spatial_stage <= len(self.channels):
            check.bad("spatial_stage", f"must be in 1..{len(self.channels)} (one per entry of channels) or None")


def load_config(path: str | Path | None = None, **overrides) -> PVAEConfig:
    """Read a flat YAML (or JSON) config file and apply keyword overrides.

    ``path`` None gives the defaults plus overrides. Unknown keys raise ValueError naming the key
    and the file.
    """
    return load_config_file(PVAEConfig, path, overrides)


#: Fields that describe the data rather than the model: read from the dataset unless a config fixes them.
DATASET_FIELDS = ("dims", "input_size", "properties")


def fit_to_dataset(data: dict, dataset_dir, source: str = "config") -> tuple[dict, dict]:
    """``data`` (config fields given by a file and overrides) completed from the dataset folder:
    ``dims`` and ``input_size`` from dataset.yaml, ``properties`` = porosity and the diagonal
    permeabilities that properties.csv has (k_xx, k_yy in 2D), each only where ``data`` does not
    fix it. Returns (the completed dict, the fields taken from the dataset).

    Raises ValueError naming the file and field when a fixed value contradicts the dataset
    (dims, a square/cubic shape, a property column the dataset lacks).
    """
    from pathlib import Path

    from core.properties import diagonal_columns
    from data_pipeline.dataset import labeled_table
    from data_pipeline.io import DATASET_YAML, read_dataset_meta

    root = Path(dataset_dir)
    meta = read_dataset_meta(root)
    dims, shape = int(meta["dims"]), [int(s) for s in meta["shape"]]
    yaml_path = root / DATASET_YAML
    if len(set(shape)) != 1:
        raise ValueError(f"{yaml_path}: shape {shape} is not square/cubic; the pVAE takes square (2D) or cubic (3D) volumes")
    data, taken = dict(data), {}
    for name, value in (("dims", dims), ("input_size", shape[0])):
        if name not in data:
            data[name] = taken[name] = value
        elif int(data[name]) != value:
            raise ValueError(f"{source}: {name} = {data[name]} but {yaml_path} has dims {dims}, shape {shape}; "
                             f"remove {name} from the config (it is then read from the dataset) or use a matching dataset")
    columns = [c for c in labeled_table(root, columns=["porosity"]).columns]
    if "properties" not in data:
        props = [p for p in ["porosity"] + diagonal_columns(dims) if p in columns]
        if not props:
            raise ValueError(f"{root / 'properties.csv'}: no porosity or permeability column to train on")
        data["properties"] = taken["properties"] = props
    else:
        missing = [p for p in data["properties"] if p not in columns and p not in LEARNABLE]
        if missing:
            raise ValueError(f"{source}: properties {list(data['properties'])} name column(s) {missing} that "
                             f"{root / 'properties.csv'} ({dims}D) does not have; remove properties from the "
                             f"config (then porosity + {', '.join(diagonal_columns(dims))} are used) or list "
                             f"columns of the dataset")
    return data, taken


def load_config_for_dataset(path: str | Path | None, dataset_dir, **overrides) -> PVAEConfig:
    """:func:`load_config` for training on ``dataset_dir``: dims, input_size and properties that
    the file and the overrides leave out are read from the dataset (:func:`fit_to_dataset`); a
    note on stdout says which."""
    from core.config import read_yaml_mapping

    data = read_yaml_mapping(path, ValueError) if path is not None else {}
    data.update(overrides)
    data, taken = fit_to_dataset(data, dataset_dir, str(path) if path is not None else "<defaults>")
    if taken:
        print("from the dataset: " + ", ".join(f"{k}={v}" for k, v in taken.items()))
    return PVAEConfig.from_dict(data, source=str(path) if path is not None else "<defaults>")
