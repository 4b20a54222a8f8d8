"""Decoder-aware property estimates: the properties of the structure we will actually deliver.

The regressor of the pVAE predicts properties from a latent z, but what the inverse design
delivers (and the solver verifies) is ``binarize_clean(decode(z))``: the decoder reconstructs
smoother, coarser pores than the training samples, so the regressor's prediction for z can be far
from the delivered structure's properties (k ~1.8x too low on the 16^3 blob model, see
bench/RESULTS.md). Here every latent is turned into exactly the structure that would be
delivered (:class:`Delivery`, cached by z) and a *property model* estimates its properties:

``regressor``  the pVAE regressor on z (the original method; differentiable; ignores the decoder);
``reencode``   decode -> binarize/clean -> encode -> regressor on the re-encoded mean; porosity is
               measured exactly on the binary volume (no extra model);
``surrogate``  decode -> binarize/clean -> the CNN permeability surrogate
               (:mod:`models.surrogate`); porosity measured exactly on the volume.
``solver``     decode -> binarize/clean -> the LBM solver itself, driven only along the axes the
               target needs and at a looser tolerance than the final verification
               (``search_solver``, default tol 1e-3: k within ~0.3% of the converged value on the
               32^3 benchmark volumes, ~0.2 s per k_xx at 32^3 on one CPU core). The expensive
               black box that Bayesian optimization is made for: no model error between the
               objective and the verified property, only the search remains.

The three decoder-aware estimates are black boxes (binarization is not differentiable), used by
bo / tpe / random; ``gradient`` keeps the regressor path. :class:`DeliveredObjective` has the
interface of :class:`inverse.objective.Objective` (``values``, ``predict``, ``distances``,
``n_evals``), one evaluation per latent as before, plus ``deliver(z)`` for the candidate step.

Vocabulary: ``prob`` float pore probabilities; ``im`` bool, True = pore; raw properties in
lattice units (k in voxel^2), columns in ``norm.names`` order.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.properties import component_index
from data_pipeline.morphology import LEARNABLE, learnable_descriptors
from inverse.config import PROPERTY_MODELS
from inverse.objective import LatentSpace, Objective
from inverse.postprocess import binarize_clean
from inverse.targets import Target
from inverse.verify import verified_values, verify_batch



POROSITY_OVERSHOOT = 0.005  # the most a bounded delivery's porosity may exceed its goal (not_above)


# --- decoding ---------------------------------------------------------------------------------
@torch.no_grad()
def decode_probabilities(model, z: np.ndarray, noise: int = 0, texture: str | None = None) -> np.ndarray:
    """Latents (B, L) -> pore probabilities (B, *shape) float64.

    ``noise``: seed of the spatial latent's noise field (``PVAE.decode``); 0 is the model's fixed
    field (``decode(z)``), another seed draws another structure of the same global code.
    ``texture`` "bank": the stored texture of the (noise+1)-th nearest training code instead;
    "diffusion": a texture drawn with seed ``noise`` from the model's learned texture prior."""
    p = next(model.parameters())
    zt = torch.as_tensor(np.atleast_2d(z), dtype=p.dtype, device=p.device)
    kw = {"texture": texture} if texture else {}
    logits = model.decode(zt, **kw) if not noise else model.decode(zt, noise=int(noise), **kw)
    return torch.sigmoid(logits)[:, 0].double().cpu().numpy()  # (B, *shape)


def has_noise(model) -> bool:
    """The model's decoder takes a noise field (a spatial latent): other seeds give other structures."""
    return bool(getattr(model, "spatial_channels", 0))


def porosity_goal(threshold: str, target: Target | None, pred: dict[str, float], prob: np.ndarray,
                  free_range: tuple[float, float] = (0.0, 1.0)) -> float:
    """The porosity the binarization aims at, per the threshold rule (see DesignConfig.threshold).

    ``pred`` is the regressor's prediction for z (a guess when porosity is not an exact target);
    ``free_range`` bounds that guess when the target sets no porosity (a maximize target keeps
    the training porosity range: beyond it k grows by porosity alone, not by design).
    """
    if threshold == "decoded" or (target is None and "porosity" not in pred):
        return float(prob.mean())
    c = target.condition("porosity") if target is not None else None
    guess = pred.get("porosity", float(prob.mean()))
    if c is None or c.kind in ("max", "min"):
        return float(np.clip(guess, *free_range))
    if c.kind == "exact":
        return float(c.value)
    if c.kind == "range":
        return float(np.clip(guess, c.low + 0.25 * (c.high - c.low), c.high - 0.25 * (c.high - c.low)))
    lo, hi = c.interval()
    return float(np.clip(guess, max(lo + c.tol, 0.0), min(hi - c.tol, 1.0)))


def not_above(prob: np.ndarray, goal: float, first: tuple, clean: bool = True, max_island: int = 64,
              tries: int = 3) -> tuple[np.ndarray, float, dict]:
    """``first`` = binarize_clean(prob, "target", goal, ...) brought to at most POROSITY_OVERSHOOT
    above ``goal``, for a delivery whose porosity is bounded (a maximize target keeps the training
    range, and k grows by porosity alone): cleaning can jump past the goal (isolated pores merge
    into the spanning cluster at a lower threshold and stay), so the binarization aims lower by the
    overshoot, up to ``tries`` times; the last try is returned either way. (im, threshold, info)."""
    im, thr, info = first
    ask = goal
    for _ in range(tries):
        over = float(im.mean()) - goal
        if over <= POROSITY_OVERSHOOT:
            break
        ask -= over
        im, thr, info = binarize_clean(prob, "target", ask, 0.5, clean, max_island)
    return im, thr, info


@dataclass
class Delivered:
    """One delivered structure: ``im`` bool (*shape), the threshold used, the porosity goal, the
    decoded field's mean pore probability and the cleaning info."""

    im: np.ndarray
    threshold: float
    goal: float
    decoded_porosity: float
    info: dict


def variant_key(z_row: np.ndarray, noise: int = 0, shift: float = 0.0) -> bytes:
    """Cache key of one delivered structure: the bytes of z (float64), plus the noise seed and the
    porosity shift when not 0."""
    key = np.asarray(z_row, dtype=np.float64).tobytes()
    if noise:
        key += b"|noise" + str(int(noise)).encode()
    return key if not shift else key + b"|shift" + repr(float(shift)).encode()


def kozeny_carman_slope(porosity: float) -> float:
    """d ln k / d porosity of the Kozeny-Carman form k ~ phi^3 / (1 - phi)^2 (per unit porosity).

    About 10 at porosity 0.5: a shift of 0.01 in porosity changes k by about 10%. On 32 texture
    variants of the bench model's training codes, a porosity shift chosen with it brought the k
    error from 19% to 10.5% (median; bench/noise_variants.py correct)."""
    phi = float(np.clip(porosity, 1e-3, 1 - 1e-3))
    return 3.0 / phi + 2.0 / (1.0 - phi)


def porosity_shift_for(target: Target, estimate: dict[str, float], max_shift: float) -> float:
    """The porosity shift that would bring a structure's permeability to the target, or 0.

    A structure delivered at the target porosity whose estimated k misses (ratio r = k / k* over
    the target's exact permeability conditions, geometric mean) is re-binarized at porosity
    phi* - ln(r) / s (s: :func:`kozeny_carman_slope`). Only when the target sets an exact porosity
    and exact permeabilities, and only when a shift of at most ``max_shift`` reaches the k
    tolerance by that estimate (otherwise the solver call would be spent on a sure miss).

    Parameters
    ----------
    target : the design target (porosity -, permeability voxel^2)
    estimate : the structure's estimated properties (the solver's, lattice units)
    max_shift : the largest absolute porosity shift allowed (-), e.g. half the porosity tolerance

    Returns
    -------
    float : the porosity shift (-), 0.0 when none applies
    """
    phi = target.condition("porosity")
    ks = [c for c in target.conditions if c.prop != "porosity" and c.kind == "exact" and c.value]
    if max_shift <= 0 or phi is None or phi.kind != "exact" or not ks or len(ks) + 1 != len(target.conditions):
        return 0.0
    ratios = [estimate.get(c.prop, np.nan) / c.value for c in ks]
    if not all(np.isfinite(r) and r > 0 for r in ratios):
        return 0.0
    log_r = float(np.mean(np.log(ratios)))
    tol = min(c.tol for c in ks)
    if abs(log_r) <= np.log1p(tol):
        return 0.0  # already within the tolerance
    shift = -log_r / kozeny_carman_slope(phi.value)
    if abs(shift) > max_shift:
        return 0.0  # out of reach
    return float(shift)


class Delivery:
    """z -> the structure the design would deliver for it (decode, porosity goal, binarize, clean).

    The same object makes the objective's structures and the final candidates, so a candidate is
    exactly what its objective value was computed on. Results are cached by the bytes of z
    (float64), the noise seed and the porosity shift, which also makes repeated evaluations free.
    ``noise`` (an int, one for the whole call) is the seed of the spatial latent's noise field:
    0 = decode(z), the structure the search sees; other seeds are texture variants of the same
    code. ``shift`` moves the porosity goal (:func:`porosity_shift_for`; 0 for the search).
    ``variant_texture`` "bank": variant k > 0 wears the stored texture of the k-th nearest training
    code of the model's texture bank instead of noise field k (DesignConfig.texture "variants");
    "diffusion": a texture drawn with seed k from the model's learned texture prior
    (DesignConfig.texture "diffusion").
    """

    def __init__(self, model, norm, target: Target | None, threshold: str = "target", fixed_threshold: float = 0.5,
                 clean: bool = True, max_island: int = 64, variant_texture: str = "prior"):
        self.model, self.norm, self.target = model, norm, target
        self.threshold, self.fixed_threshold = threshold, float(fixed_threshold)
        self.clean, self.max_island = bool(clean), int(max_island)
        self._cache: dict[bytes, Delivered] = {}
        self.variant_texture = variant_texture
        self.porosity_range = (0.0, 1.0)  # bounds of the porosity goal when the target sets none
        p = next(model.parameters())
        self._device, self._dtype = p.device, p.dtype

    @torch.no_grad()
    def regressor_raw(self, z: np.ndarray) -> np.ndarray:
        """Regressor prediction for z (B, L) -> raw properties (B, P)."""
        zt = torch.as_tensor(np.atleast_2d(z), dtype=self._dtype, device=self._device)
        return self.norm.inverse(self.model.predict_properties(zt).cpu().numpy())

    def __call__(self, z: np.ndarray, noise: int = 0, shift: float = 0.0, store: bool = True) -> list[Delivered]:
        """The delivered structures of latents z (B, L); ``store`` False: new ones are not cached (a
        look at many candidates that will mostly not be evaluated, e.g. the diversity screen of
        :func:`inverse.search.run_bo_composite`)."""
        z = np.atleast_2d(np.asarray(z, dtype=np.float64))  # (B, L)
        keys = [variant_key(row, noise, shift) for row in z]
        todo = [i for i, k in enumerate(keys) if k not in self._cache]
        new: dict[bytes, Delivered] = {}
        if todo:
            zt = z[todo]  # (b, L)
            if noise and self.variant_texture == "bank":  # variant k: the k-th nearest stored texture
                probs = decode_probabilities(self.model, zt, noise - 1, texture="bank")  # (b, *shape)
            elif noise and self.variant_texture == "diffusion":  # variant k: a learned texture, seed k
                probs = decode_probabilities(self.model, zt, noise, texture="diffusion")  # (b, *shape)
            else:
                probs = decode_probabilities(self.model, zt, noise)  # (b, *shape)
            preds = self.regressor_raw(zt)  # (b, P)
            for i, prob, pr in zip(todo, probs, preds):
                pd_ = {n: float(v) for n, v in zip(self.norm.names, pr)}
                goal = float(np.clip(porosity_goal(self.threshold, self.target, pd_, prob, self.porosity_range)
                                     + shift, 0.0, 1.0))
                rule = "fixed" if self.threshold == "fixed" else "target"
                im, thr, info = binarize_clean(prob, rule, goal, self.fixed_threshold, self.clean, self.max_island)
                if self.porosity_range != (0.0, 1.0) and rule == "target":
                    im, thr, info = not_above(prob, goal, (im, thr, info), self.clean, self.max_island)
                new[keys[i]] = Delivered(im, float(thr), float(goal), float(prob.mean()), info)
        if store:
            self._cache.update(new)
        return [self._cache[k] if k in self._cache else new[k] for k in keys]


# --- property models of delivered structures ----------------------------------------------------
@torch.no_grad()
def reencode_properties(model, norm, ims: np.ndarray) -> np.ndarray:
    """Binary volumes (B, *shape) -> raw properties (B, P): encode, regressor on mu, porosity measured.

    The encoder gets the volumes as the training loader gives them: float {0, 1}, (B, 1, *shape).
    """
    p = next(model.parameters())
    x = torch.as_tensor(np.asarray(ims, dtype=np.float32), device=p.device).unsqueeze(1).to(p.dtype)  # (B, 1, *shape)
    mu, _ = model.encode(x)  # (B, L)
    raw = norm.inverse(model.predict_properties(mu).float().cpu().numpy())  # (B, P)
    return _with_measured(raw, norm.names, ims)


def surrogate_properties(surrogate, names: list[str], ims: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Binary volumes (B, *shape) -> raw properties (B, P) from the surrogate; porosity measured.

    Columns the surrogate does not predict take ``fallback`` (B, P) (the regressor's prediction
    for z); :func:`check_surrogate` makes sure no targeted property is among them.
    """
    rows = surrogate.predict(np.asarray(ims, dtype=bool))
    raw = np.array(fallback, dtype=np.float64, copy=True).reshape(len(rows), len(names))
    for i, r in enumerate(rows):
        for j, n in enumerate(names):
            if n != "porosity" and n in r:
                raw[i, j] = r[n]
    return _with_measured(raw, names, ims)


def solver_axes(components: list[str]) -> list[int]:
    """Driven axes (0 = x, 1 = y, 2 = z) that give every permeability component of ``components``.

    The solver fills k_ij when axis i or j is driven (the tensor is symmetric), so one axis per
    component suffices: its first index.
    """
    return sorted({component_index(c)[0] for c in components if c != "porosity"})


def solver_properties(names: list[str], ims: np.ndarray, components: list[str], solver: dict,
                      fallback: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Binary volumes (B, *shape) -> raw properties (B, P) computed by the LBM solver; porosity measured.

    Parameters
    ----------
    names : property columns of the result (the model's ``norm.names``)
    ims : (B, *shape) bool, True = pore
    components : permeability components to compute (k_xx, k_xy, ...); other permeability
        columns take ``fallback``
    solver : keyword arguments of ``permeability_batch`` (``axes`` is set here)
    fallback : (B, P) raw values for the columns not computed (the regressor's prediction for z)

    Returns
    -------
    raw : (B, P) porosity (-) and permeability (voxel^2, lattice units); a sample that is not
        percolating along a driven axis has k = 0 there; a sample the solver fails on gets k = 0
        (the worst value for a target) and its error message
    errors : (B,) "" or the solver's error for that sample
    """
    ks = [c for c in components if c != "porosity"]
    raw = np.array(fallback, dtype=np.float64, copy=True).reshape(len(ims), len(names))
    errors = [""] * len(ims)
    if ks:
        opts = {**solver, "axes": solver_axes(ks)}
        # one solve per volume: a shared batch runs until its slowest member converges (random search
        # hands over dozens of very different volumes at once: 2x slower batched, measured)
        recs = [verify_batch([im], opts)[0][0] for im in np.asarray(ims, dtype=bool)]
        for i, rec in enumerate(recs):
            errors[i] = rec["error"]
            vals = verified_values(rec, ks)
            for c in ks:
                if c in names:
                    v = vals[c]
                    raw[i, names.index(c)] = v if np.isfinite(v) else 0.0
    return _with_measured(raw, names, ims), errors


def _with_measured(raw: np.ndarray, names: list[str], ims: np.ndarray) -> np.ndarray:
    """``raw`` (B, P) with porosity and the learned morphology descriptors (``PVAEConfig.descriptors``)
    replaced by their values measured on the structures ``ims`` (B, *shape)."""
    ims = np.asarray(ims, dtype=bool)
    if "porosity" in names:
        j = names.index("porosity")
        raw[:, j] = ims.reshape(len(raw), -1).mean(axis=1)
    learned = [n for n in names if n in LEARNABLE]
    if learned:
        raw[:, [names.index(n) for n in learned]] = learnable_descriptors(ims, learned)
    return raw


def surrogate_components(surrogate) -> set[str]:
    """Properties a surrogate can estimate for a volume (porosity is always measured)."""
    return set(surrogate.components) | {"porosity"}


def check_surrogate(surrogate, model_cfg, folder: str, targeted: list[str] | None = None) -> None:
    """Raise ValueError when the surrogate cannot stand in for the solver on this pVAE's volumes."""
    scfg = surrogate.cfg
    shape_s = (int(scfg.input_size),) * int(scfg.dims)
    shape_m = (int(model_cfg.input_size),) * int(model_cfg.dims)
    if shape_s != shape_m:
        raise ValueError(f"surrogate {folder} takes volumes of shape {shape_s} but the pVAE decodes "
                         f"{shape_m}: train the surrogate at input_size {model_cfg.input_size} "
                         f"(dims {model_cfg.dims}) or pass a matching --surrogate")
    if targeted:
        missing = [p for p in targeted if p not in surrogate_components(surrogate)]
        if missing:
            raise ValueError(f"surrogate {folder} does not predict {missing} (it predicts "
                             f"{sorted(surrogate.components)}); retrain it with these components")


def load_design_surrogate(folder: str, model_cfg, device: str = "cpu"):
    """Load a surrogate checkpoint folder for a design with clear errors (missing, wrong kind, not the
    pVAE's volume size)."""
    from models.surrogate import load_surrogate

    try:
        sur = load_surrogate(folder, device=device)
    except (FileNotFoundError, ValueError) as exc:
        raise ValueError(f"surrogate {folder!r}: {exc}") from None
    check_surrogate(sur, model_cfg, folder)
    return sur


# --- the decoder-aware objective ----------------------------------------------------------------
class DeliveredObjective(Objective):
    """Objective of the delivered structure's estimated properties (``reencode``, ``surrogate`` or ``solver``).

    Same terms, tolerances and manifold penalty as :class:`Objective`; only the property estimate
    changes: ``predict(z)`` = the property model applied to ``delivery(z)``. Not differentiable
    (``torch_values`` raises): use it with bo / tpe / random.
    """

    def __init__(self, target: Target, model, norm, space: LatentSpace, delivery: Delivery,
                 property_model: str, manifold_weight: float = 1.0, surrogate=None, solver: dict | None = None):
        super().__init__(target, model, norm, space, manifold_weight)
        aware = tuple(m for m in PROPERTY_MODELS if m != "regressor")
        if property_model not in aware:
            raise ValueError(f"DeliveredObjective: property_model must be one of {aware}, got {property_model!r}")
        if property_model == "surrogate" and surrogate is None:
            raise ValueError("property_model 'surrogate' needs a loaded surrogate")
        self.delivery, self.property_model, self.surrogate = delivery, property_model, surrogate
        self.solver = dict(solver or {})
        self.solver_errors: dict[bytes, str] = {}  # z bytes -> solver error of its delivered structure
        self.solver_calls = 0  # structures solved by the LBM ("solver"; a cached z costs none)
        self._pred_cache: dict[bytes, np.ndarray] = {}

    def torch_values(self, z: torch.Tensor) -> torch.Tensor:
        raise TypeError(f"the {self.property_model!r} objective is not differentiable (binarization); "
                        "the gradient method uses the regressor objective")

    # --- the material's morphology as a penalty (maximize / minimize targets) ------------------
    _morph = None  # [(ratio function, low, high), ...]: one per morphology measure
    _morph_weight = 0.0

    def set_morphology(self, ratio, band: tuple[float, float], weight: float, extra=()) -> None:
        """Penalize delivered structures whose specific-surface ratio ``ratio(im)`` (to the training
        median at their porosity) lies outside ``band``: ``weight * (d / ln(band[1]))^2`` with d the
        distance of ln(ratio) outside [ln band[0], ln band[1]] (a ratio 10% beyond an edge of
        0.75-1.33 costs ~0.12 weight: at the default weight 100, more than any permeability gain).
        ``extra``: more (ratio function, band) measures penalized the same way and summed (the
        anisotropy of a maximize design against the training range: specific surface and the radial
        S2 do not see stretched grains or stripes). Added to every counted evaluation (``evaluate`` /
        ``values``: the recorded objective that ranks candidates). The composite BO's acquisition sees
        it through one Gaussian process per measure on ln(ratio) of the evaluated structures
        (:meth:`morphology_log_ratios`, :meth:`morphology_penalty_of`): decoding its thousands of
        candidates per step would not do."""
        checks = []
        for fn, b in [(ratio, band), *extra]:
            lo, hi = (float(v) for v in b)
            if not 0 < lo < 1 < hi:
                raise ValueError(f"morphology band must satisfy 0 < low < 1 < high, got {b}")
            checks.append((fn, lo, hi))
        self._morph, self._morph_weight = checks, float(weight)
        self._ratio_cache: dict[bytes, np.ndarray] = {}

    @property
    def n_morphology(self) -> int:
        """Number of morphology measures penalized (0 without set_morphology)."""
        return len(self._morph) if self._morph else 0

    def morphology_ratios(self, z: np.ndarray, noise: int = 0, shift: float = 0.0) -> np.ndarray:
        """(B, M) the ratios of the M morphology measures of the delivered structures of z (the first:
        specific surface); (B, 0) without set_morphology."""
        z = np.atleast_2d(np.asarray(z, dtype=np.float64))
        if not self._morph:
            return np.zeros((len(z), 0))
        keys = [variant_key(row, noise, shift) for row in z]
        todo = [i for i, k in enumerate(keys) if k not in self._ratio_cache]
        for i, d in zip(todo, self.delivery(z[todo], noise, shift) if todo else []):
            self._ratio_cache[keys[i]] = np.array([float(fn(d.im)) for fn, _, _ in self._morph])
        return np.stack([self._ratio_cache[k] for k in keys])

    @property
    def has_morphology(self) -> bool:
        """A morphology penalty is set (:meth:`set_morphology`)."""
        return bool(self._morph)

    def morphology_log_ratios(self, z: np.ndarray, noise: int = 0, shift: float = 0.0) -> np.ndarray:
        """(B, M) ln of the morphology ratios of the delivered structures of z, a ratio of 0, inf or
        nan (a structure without surface; one whose interface never crosses an axis) at ln 1e-3 or
        ln 1e3: far outside any band. What the composite BO models with Gaussian processes of its
        own (:func:`inverse.search.run_bo_composite`)."""
        r = self.morphology_ratios(z, noise, shift)
        r = np.where(np.isposinf(r), 1e3, r)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(np.where(np.isfinite(r) & (r > 0), r, 1e-3))

    def morphology_penalty_of(self, log_ratio: np.ndarray) -> np.ndarray:
        """The penalty of given ln morphology ratios (..., M), summed over the M measures: (...);
        0 without set_morphology."""
        lr = np.asarray(log_ratio, dtype=np.float64)
        if not self._morph:
            return np.zeros(lr.shape[:-1])
        total = np.zeros(lr.shape[:-1])
        for m, (_, lo, hi) in enumerate(self._morph):
            d = np.maximum(np.log(lo) - lr[..., m], 0.0) + np.maximum(lr[..., m] - np.log(hi), 0.0)
            total = total + self._morph_weight * (d / np.log(hi)) ** 2
        return total

    def morphology_penalty(self, z: np.ndarray, noise: int = 0, shift: float = 0.0) -> np.ndarray:
        """(B,) the morphology penalty of latents z (0 inside the bands or without set_morphology)."""
        z = np.atleast_2d(np.asarray(z, dtype=np.float64))
        if not self._morph:
            return np.zeros(len(z))
        return self.morphology_penalty_of(self.morphology_log_ratios(z, noise, shift))

    @torch.no_grad()
    def evaluate(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f, p = super().evaluate(z)
        return f + self.morphology_penalty(z), p

    @torch.no_grad()
    def evaluate_variants(self, z: np.ndarray, noise: int, shift: float = 0.0) -> np.ndarray:
        """Objective (B,) of the structures delivered from latents z (B, L) with noise field ``noise``
        (and porosity goal moved by ``shift``): the variants of :func:`inverse.design.select_step`,
        judged exactly like the search's evaluations (same estimate, penalties and tolerance) but
        not counted as search evaluations; each new variant is one solver call with property_model
        "solver" (``solver_calls``)."""
        z = np.atleast_2d(np.asarray(z, dtype=np.float64))
        p_norm = self.norm.transform(self._raw(z, noise, shift))  # (B, P)
        return self.objective_of(p_norm, z) + self.morphology_penalty(z, noise, shift)

    def predict_variants(self, z: np.ndarray, noise: int, shift: float = 0.0) -> np.ndarray:
        """Estimated raw properties (B, P) of the structures delivered from z with noise field
        ``noise`` and porosity shift ``shift``."""
        return self._raw(z, noise, shift)

    def _raw(self, z: np.ndarray, noise: int = 0, shift: float = 0.0) -> np.ndarray:
        z = np.atleast_2d(np.asarray(z, dtype=np.float64))  # (B, L)
        keys = [variant_key(row, noise, shift) for row in z]
        todo = [i for i, k in enumerate(keys) if k not in self._pred_cache]
        if todo:
            ims = np.stack([d.im for d in self.delivery(z[todo], noise, shift)])  # (b, *shape)
            if self.property_model == "reencode":
                raw = reencode_properties(self.model, self.norm, ims)
            elif self.property_model == "solver":
                self.solver_calls += len(todo)
                raw, errors = solver_properties(self.names, ims, self.target.properties, self.solver,
                                                self.delivery.regressor_raw(z[todo]))
                for i, e in zip(todo, errors):
                    if e:
                        self.solver_errors[keys[i]] = e
            else:
                raw = surrogate_properties(self.surrogate, self.names, ims, self.delivery.regressor_raw(z[todo]))
            for i, r in zip(todo, raw):
                self._pred_cache[keys[i]] = r
        return np.stack([self._pred_cache[k] for k in keys])  # (B, P)

    def predict(self, z: np.ndarray) -> np.ndarray:
        """Estimated raw properties (B, P) of the delivered structures of z (lattice units)."""
        return self._raw(z)

    def _norm_pred(self, z: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(self.norm.transform(self._raw(z)), dtype=torch.float64)  # (B, P)

    def values(self, z: np.ndarray) -> np.ndarray:
        """Objective (B,) of latents z (B, L); one counted evaluation each (no gradient path)."""
        return self.evaluate(z)[0]


def make_objective(property_model: str, target: Target, model, norm, space: LatentSpace, delivery: Delivery,
                   manifold_weight: float = 1.0, surrogate=None, solver: dict | None = None) -> Objective:
    """The search objective of ``property_model`` (see module doc); ``solver``: options of the
    ``solver`` property model (keyword arguments of ``permeability_batch``)."""
    if property_model == "regressor":
        return Objective(target, model, norm, space, manifold_weight)
    return DeliveredObjective(target, model, norm, space, delivery, property_model, manifold_weight, surrogate,
                              solver)


def screen_scores(objective: Objective, surrogate, delivery: Delivery, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Surrogate screening of latents z (B, L): (target distance (B,), raw estimates (B, P)).

    Each latent's delivered structure (the cached one the candidate will be) is labeled by the
    surrogate; the distance is the objective's target distance without the manifold penalty (the
    structure itself is judged, not where its latent lies).
    """
    z = np.atleast_2d(np.asarray(z, dtype=np.float64))
    ims = np.stack([d.im for d in delivery(z)])  # (B, *shape)
    return _surrogate_distance(objective, surrogate, ims, delivery.regressor_raw(z))


def screen_variants(objective: Objective, surrogate, delivery: Delivery, z0: np.ndarray,
                    seeds: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Surrogate screening of texture variants ``seeds`` of one latent z0 (L,): (target distance (S,),
    raw estimates (S, P)), as :func:`screen_scores` for each variant's delivered structure (cached,
    the one the solver will judge: ``delivery(z0, seed)``)."""
    z = np.asarray(z0, dtype=np.float64)[None]  # (1, L)
    ims = np.stack([delivery(z, s)[0].im for s in seeds])  # (S, *shape)
    return _surrogate_distance(objective, surrogate, ims, np.repeat(delivery.regressor_raw(z), len(seeds), 0))


def _surrogate_distance(objective: Objective, surrogate, ims: np.ndarray, fallback: np.ndarray):
    """Volumes (B, *shape) -> (the objective's target distance (B,), the surrogate's raw estimates (B, P))."""
    raw = surrogate_properties(surrogate, objective.names, ims, fallback)
    dist = objective.distance(torch.as_tensor(objective.norm.transform(raw), dtype=torch.float64)).numpy()
    return dist, raw
