"""The one flat config of the inverse-design stage, YAML/JSON-serializable.

Every field is a plain value so the config is written into ``<out>/config.json`` and logged to
MLflow unchanged. An unknown key fails at once, naming the key (like nanoGPT's "Unknown config
key"); the command line overrides fields of a YAML file (``--config configs/inverse_smoke.yaml``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from core.config import Check, FlatConfig, load_config_file

METHODS = ("bo", "tpe", "random", "gradient", "lookup")
BO_ENGINES = ("composite", "gp_minimize")
BOUNDS = ("quantile", "prior")
THRESHOLDS = ("target", "decoded", "fixed")
UNITS = ("lattice", "physical")
PROPERTY_MODELS = ("regressor", "reencode", "surrogate", "solver")  # see inverse/delivered.py


@dataclass
class DesignConfig(FlatConfig):
    """Configuration of one inverse-design run.

    Model and data
        model: MLflow model URI (``models:/pvae@champion``, ``runs:/<id>/model``) or a checkpoint
        folder. dataset: the dataset folder the model was trained on (training latents, label
        ranges, voxel size); None = the path recorded with the model, if any. tracking_uri: None =
        ``MLFLOW_TRACKING_URI`` or ``sqlite:///runs/tune/mlflow.db`` (the tuning stage's default).
        device: torch device of the model ("cpu", "cuda", "auto").
    Targets
        targets: target specs (``"porosity=0.6,k_xx=1.2"``, see :mod:`inverse.targets`);
        targets_csv: a CSV with one target per row (added after ``targets``); units: "lattice"
        (k in voxel^2) or "physical" (k in m^2, converted with the dataset's voxel_size);
        tol_porosity (absolute) and tol_k (relative) are the default tolerances of exact targets
        and the hit criterion; allow_extrapolation: search targets outside the training labels
        anyway (they are still flagged).
    Search
        methods: any of "bo" (scikit-optimize gp_minimize), "tpe" (hyperopt), "random",
        "gradient" (Adam on z through the regressor, projected onto the box), "lookup" (the
        database-lookup baseline: the ``n_candidates`` training samples with the labels closest
        to the target, their structures delivered and verified; no search, no decoding); each
        search gets the same budget of ``n_calls`` objective evaluations. n_initial: initial points of bo/tpe (half of
        them, rounded up, are the training latents with the best objective; gradient starts from
        the same latents). bounds: "quantile" (box between the ``quantile`` and 1 - ``quantile``
        quantiles of the training latents, widened by ``box_margin`` times their spread) or
        "prior" (box [-prior_radius, prior_radius] per latent dimension). manifold_weight and
        manifold_quantile: penalty weight * max(0, m(z) - r)^2, m the Mahalanobis distance to
        the training latents, r its ``manifold_quantile`` quantile over the training set.
        manifold_weight None (default): 1 for the model-based objectives (regressor, reencode,
        surrogate: their estimates are only trusted near the data) and 0 for the "solver" one
        (the solver is right anywhere; with the penalty, BO was kept away from the latents whose
        decoded structures hit the targets: bench/RESULTS.md).
        property_model: what estimates the properties of a latent z in the objective of bo / tpe /
        random: "solver" (default: the delivered volume - decoded, binarized and cleaned exactly
        like the final candidate - solved by the LBM along the targeted axes with ``solver``
        updated by ``search_solver``; the objective is then the property the verification
        measures, up to the looser tolerance; the only estimate whose hits held up under
        verification in bench/RESULTS.md), "surrogate" (the same volume labeled by the CNN
        surrogate of ``surrogate``: for volumes too large to solve per evaluation), "reencode"
        (the same volume -> encode -> regressor; porosity measured on the volume) or "regressor"
        (the pVAE regressor on z; ignores the decoder); see :mod:`inverse.delivered`. "gradient"
        always descends the regressor (the decoder-aware estimates are not differentiable); with a
        decoder-aware property_model and ``gradient_screen`` (default) its trajectories
        (``gradient_steps`` Adam steps per start, manifold weight of the decoder-aware objective)
        are screened: ``n_calls`` points spread along them are evaluated by that property model
        (solver calls, with "solver") and the candidates chosen from them like bo's and random's
        (:func:`inverse.search.run_gradient_screened`); ``gradient_screen: false`` = the original
        method (``n_calls // starts`` steps, regressor objective, manifold weight 1). surrogate: a surrogate checkpoint folder
        (``python -m models.surrogate train``) with the pVAE's input size; with it, candidates are
        also screened: the ``screen_top`` best distinct latents of each search are decoded,
        ranked by the surrogate's estimate of their delivered structure, and only the best
        ``n_candidates`` go to the solver (screen_top 0: no screening). search_solver: solver
        options that override ``solver`` inside the "solver" objective (default tol 1e-3).
        gradient_lr: Adam step (latent units). bo_engine: "composite" (one GP per targeted
        property, expected improvement of the known objective over their posteriors: see
        :func:`inverse.search.run_bo_composite`) or "gp_minimize" (``skopt.gp_minimize``, one GP on
        the objective value). bo_acq_optimizer: "sampling" (fast) or "lbfgs" (gp_minimize's
        acquisition optimizer). bo_diversity: once the composite BO has an estimated hit but
        fewer than n_candidates distinct ones (candidate_max_iou), it looks for another hit that is
        a different structure (:func:`inverse.search.run_bo_composite`, "Diversity"); exact targets
        with a decoder-aware property model only. Off by default: on the bench model's development
        targets it gave no more targets with >= 3 distinct hits (50% with and without, in + multi)
        at 2-3x the search's wall time (bench/RESULTS.md, session 14). seed: every random thing.
    Candidates and verification
        n_candidates: decoded candidates per target and method (best objective first, pairwise
        latent distance >= min_distance times the median nearest-neighbour distance of the
        training latents); then, from a pool of ``candidate_pool`` x n_candidates such latents,
        greedy in rank order, structures whose pore IoU with every one kept is <= candidate_max_iou
        (issue 14's "distinct": on the evaluation set every pair of BO's 3 latent-distinct
        candidates had a pore IoU above 0.5, median 0.96), filled up in rank order when fewer are
        distinct; candidate_max_iou 1 keeps the latent rule alone. IoU is taken on the minority
        phase (:func:`inverse.evaluation.phase_iou`). noise_variants: the most solver calls spent
        on variants of the best latent before the candidates are chosen (:func:`inverse.design.variant_entries`):
        its structure decoded with noise fields 1, 2, ... of the spatial latent, each judged by the
        search's objective (with the "solver" property model one solver call each, counted in
        ``variant_solver_calls``), until n_candidates distinct structures are estimated hits;
        decode(z) uses one fixed noise field, which places the pores whatever z is (8 prior codes
        decoded with it: pairwise pore IoU 0.57-0.68, bench/RESULTS.md), so without variants the
        latents near the best deliver near copies of one structure. 0 = none; ignored with
        surrogate screening, for the regressor objective and for models without a spatial latent.
        texture: "prior" (the search and the variants decode with the Gaussian texture prior, noise
        fields 0, 1, 2, ...) or "variants" (the search as with "prior"; variant k wears the stored
        texture of the k-th nearest training code of the model's texture bank,
        :class:`models.pvae.PVAE`; variants are tried until they alone give n_candidates distinct
        estimated hits, and such a hit is ranked before every other candidate: a design in the
        texture of the material's own structures where one hits) or "diffusion" (as "variants",
        variant k a texture drawn with seed k from the model's learned texture prior p(texture |
        code), models.texture_diffusion: textures of the material's kind for codes between the
        stored ones; the checkpoint must hold one, bench/texture_diffusion.py).
        variant_screen: with a surrogate and ``screen_top: 0`` (the surrogate screens variants
        instead of latents), variants 1..variant_screen of the best latent are delivered and
        labeled by the surrogate first, and judged (noise_variants solver calls at most) best
        estimate first (its target distance plus the morphology penalty): a learned texture moves
        k more than the code does (bench/RESULTS.md "A learned texture prior"), so the draws
        likeliest to hit go to the solver. 0 = variants judged in seed order.
        porosity_shift: a variant whose k misses (texture alone moves k by 6-30%) is re-binarized
        at a porosity shifted by at most porosity_shift x the porosity tolerance (default 0.5:
        +-0.01 of a 0.02 tolerance), the shift from the Kozeny-Carman slope, when that estimate
        reaches the k tolerance (:func:`inverse.delivered.porosity_shift_for`); exact porosity +
        exact k targets only; the candidate's ``porosity_goal`` and ``porosity_shift`` say so. 0 = off. threshold: "target" (pore
        fraction matches the target porosity, or the predicted one when porosity is not an exact target), "decoded" (matches the decoded
        field's mean pore probability) or "fixed" (``fixed_threshold`` on the probability).
        clean: remove floating solid islands up to ``max_island`` voxels and isolated pore
        clusters (see :mod:`inverse.postprocess`). verify: run the LBM solver; solver: keyword
        arguments passed to it (``data_pipeline.permeability.permeability_batch``).
    Maximize / minimize targets (``maximize:k_xx``)
        An unbounded target can be met by a structure that is no longer the material (one open
        channel across the domain: issue 16). Such targets are held to the material's morphology:
        the specific surface of the delivered structure over the median of the training
        structures at its porosity (``ss_ratio_train``) must lie in ``morphology_band``
        (default 0.75-1.33), and its anisotropy (largest over smallest pore-solid face density along
        the axes) must stay within the training structures' range (``anisotropy_ok``: stretched
        grains and axis-aligned stripes pass the surface band, bench/RESULTS.md "Smoothed texture
        noise"), and its local porosity spread (the std of the porosity of a window a quarter of
        the box wide, over the training median at its porosity) must stay within the training
        structures' range (``spread_ok``: solid gathered into clumps beside an open band passes
        both, bench/RESULTS.md "2D maximize designs: more clustered"); the decoder-aware objectives
        (reencode, surrogate, solver) add ``morphology_weight * (d / ln(high))^2`` (d = distance of
        ln(ratio) outside the band) for each of the three to every evaluation, and the candidates are ranked with it; without a porosity condition the
        delivered porosity stays within the training porosities. HIT of such a target means: every
        max (min) condition's verified value is above (below) the best training sample's label,
        ss_ratio_train is in the band, anisotropy_ok, spread_ok and, without a porosity condition, the verified porosity
        is at most tol_porosity / 2 above the goal it was binarized at (results.csv: ``morph_ok``;
        cleaning can move the pore fraction); morphology_weight 0 turns
        the penalty off (the band still decides the hit). material_band: "optimize" (default: the
        above for maximize / minimize targets only) or "all": exact targets that name no reference
        sample get the same penalty too (out-of-distribution targets: their hits otherwise reach k
        by coarsening, at 0.46x the training median's specific surface, bench/RESULTS.md); their
        HIT stays the property conditions, results.csv's ``ss_ratio_train`` says whether it held.
    Targets naming a reference sample (``ref=<sample_id>``)
        match_reference (default true): the design is asked to look like that sample, not only to
        have its numbers: the decoder-aware objectives add the same penalty on the specific
        surface of the delivered structure over the reference's (``ss_ratio_ref``) outside
        ``reference_band`` (default 0.8-1.25, the generative-fidelity criterion of
        ``looks_like_ref``). HIT stays the property conditions; results.csv reports
        ``ss_ratio_ref``, ``s2_distance_ref`` and ``looks_like_ref`` beside it.
        reference_dataset: the dataset folder those sample ids belong to (default: the model's
        dataset; an evaluation set built apart from it names its own samples).
    Output
        out: output folder; mlflow: log the run; experiment: MLflow experiment name; figures.
    """

    # model and data
    model: str = "models:/pvae@champion"
    dataset: str | None = None
    tracking_uri: str | None = None
    device: str = "cpu"
    # targets
    targets: list[str] = field(default_factory=list)
    targets_csv: str | None = None
    units: str = "lattice"
    tol_porosity: float = 0.02
    tol_k: float = 0.15
    allow_extrapolation: bool = False
    # search
    methods: list[str] = field(default_factory=lambda: ["bo"])
    n_calls: int = 60
    n_initial: int = 12
    bounds: str = "quantile"
    quantile: float = 0.01
    box_margin: float = 0.05
    prior_radius: float = 3.0
    manifold_weight: float | None = None
    manifold_quantile: float = 0.95
    property_model: str = "solver"
    surrogate: str | None = None
    search_solver: dict = field(default_factory=lambda: {"tol": 1e-3})
    screen_top: int = 12
    gradient_lr: float = 0.05
    gradient_steps: int = 100
    gradient_screen: bool = True
    bo_engine: str = "composite"
    bo_acq_optimizer: str = "sampling"
    bo_diversity: bool = False
    seed: int = 0
    # candidates and verification
    n_candidates: int = 3
    min_distance: float = 0.5
    candidate_max_iou: float = 0.5
    candidate_pool: int = 4
    noise_variants: int = 8
    texture: str = "prior"
    variant_screen: int = 0
    porosity_shift: float = 0.5
    threshold: str = "target"
    fixed_threshold: float = 0.5
    clean: bool = True
    max_island: int = 64
    verify: bool = True
    solver: dict = field(default_factory=dict)
    morphology_band: list[float] = field(default_factory=lambda: [0.75, 1.33])
    material_band: str = "optimize"
    morphology_weight: float = 100.0
    match_reference: bool = True
    reference_band: list[float] = field(default_factory=lambda: [0.8, 1.25])
    reference_dataset: str | None = None
    # output
    out: str = "runs/inverse"
    mlflow: bool = True
    experiment: str = "inverse-design"
    figures: bool = True

    UNKNOWN = "unknown config key"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the field when a value is out of range."""
        check = Check(self)
        if isinstance(self.methods, str):
            self.methods = [m.strip() for m in self.methods.split(",") if m.strip()]
        if isinstance(self.targets, str):
            self.targets = [self.targets]
        if not self.methods or any(m not in METHODS for m in self.methods):
            check.bad("methods", f"each must be one of {METHODS}")
        if len(set(self.methods)) != len(self.methods):
            check.bad("methods", "lists a method twice")
        check.one_of("bounds", BOUNDS)
        check.one_of("bo_engine", BO_ENGINES)
        check.one_of("texture", ("prior", "variants", "diffusion"))
        if self.bo_acq_optimizer not in ("sampling", "lbfgs"):
            check.bad("bo_acq_optimizer", "must be 'sampling' or 'lbfgs'")
        check.one_of("property_model", PROPERTY_MODELS)
        if self.property_model == "surrogate" and not self.surrogate:
            check.bad("property_model", "needs a surrogate checkpoint folder: set 'surrogate: PATH' in the config "
                      "or pass --surrogate PATH (python -m models.surrogate train ... makes one)")
        check.at_least(("screen_top",), 0, "must be >= 0 (0 = no surrogate screening)")
        for name, allowed in (("threshold", THRESHOLDS), ("units", UNITS)):
            check.one_of(name, allowed)
        check.at_least(("n_calls",), 2)
        check.at_least(("gradient_steps",), 1)
        if not 1 <= self.n_initial <= self.n_calls:
            check.bad("n_initial", f"must be in [1, n_calls={self.n_calls}]")
        if not 0 <= self.quantile < 0.5:
            check.bad("quantile", "must be in [0, 0.5)")
        if not 0 < self.manifold_quantile <= 1:
            check.bad("manifold_quantile", "must be in (0, 1]")
        for name in ("tol_porosity", "tol_k", "prior_radius", "gradient_lr"):
            if not float(getattr(self, name)) > 0:
                check.bad(name, "must be > 0")
        check.at_least([n for n in ("box_margin", "manifold_weight", "min_distance", "max_island")
                        if getattr(self, n) is not None], 0)
        if not 0 < self.fixed_threshold < 1:
            check.bad("fixed_threshold", "must be in (0, 1)")
        check.at_least(("n_candidates", "candidate_pool"), 1)
        check.at_least(("noise_variants",), 0, "must be >= 0 (0 = no texture variants)")
        check.at_least(("variant_screen",), 0, "must be >= 0 (0 = variants in seed order)")
        if self.variant_screen and not (self.surrogate and self.screen_top == 0):
            check.bad("variant_screen", "screens variants with the surrogate: needs 'surrogate: PATH' and "
                      "'screen_top: 0' (screening latents and variants at once is not supported)")
        if not 0 <= self.porosity_shift < 1:
            check.bad("porosity_shift", "must be in [0, 1) (a fraction of the porosity tolerance; 0 = no shift)")
        if not 0 < self.candidate_max_iou <= 1:
            check.bad("candidate_max_iou", "must be in (0, 1] (minority-phase IoU)")
        for name in ("morphology_band", "reference_band"):
            band = getattr(self, name)
            if not (isinstance(band, (list, tuple)) and len(band) == 2 and 0 < float(band[0]) < 1 < float(band[1])):
                check.bad(name, "must be [low, high] with 0 < low < 1 < high (specific-surface ratio)")
        check.at_least(("morphology_weight",), 0)
        if self.material_band not in ("optimize", "all"):
            check.bad("material_band", "must be 'optimize' (maximize / minimize targets) or 'all'")
        for name in ("solver", "search_solver"):
            if not isinstance(getattr(self, name), dict):
                check.bad(name, "must be a mapping of solver keyword arguments")

    def manifold_weight_for(self, property_model: str) -> float:
        """The manifold penalty weight of an objective (``manifold_weight``, or its default when None)."""
        if self.manifold_weight is not None:
            return float(self.manifold_weight)
        return 0.0 if property_model == "solver" else 1.0


def load_design_config(path: str | Path | None = None, **overrides) -> DesignConfig:
    """Read a flat YAML config (None = defaults) and apply overrides (None values are skipped).

    Relative paths in the file (model folder, dataset, targets_csv) stay relative to the working
    directory (the repository root), like every other stage's configs.
    """
    return load_config_file(DesignConfig, path, overrides, skip_none=True)
