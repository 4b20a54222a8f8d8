"""The search objective: distance of the regressor's prediction to the target, plus a manifold penalty.

Pure core: a latent ``z`` (B, L) goes through the pVAE regressor to normalized properties
(B, P); each condition of the target becomes a term measured in units of its tolerance, so that
a term of 1 means "at the edge of the tolerance" whatever the property:

* exact ``v +- tol``: d = (p - T(v)) / (T(v +- tol) - T(v)) (one-sided scales, so log-space
  asymmetry of a relative tolerance is respected); term d^2. |d| <= 1 <=> predicted hit.
* range ``a:b`` and inequalities: d = distance outside the interval shrunk by a margin of one
  tolerance (or a quarter of the range, whichever is smaller), in tolerance units; term d^2.
* maximize / minimize: term -p / +p (p is standardized, so one unit = one training std).

``T`` is the model's own normalization (log10 for diagonal permeabilities, then standardized), so
targets and predictions are compared in the space the regressor was trained in.

Manifold penalty: ``manifold_weight * max(0, m(z) - r)^2`` with m the Mahalanobis distance of z to
the training latents (shrunk covariance) and r the ``manifold_quantile`` quantile of m over the
training latents themselves: candidates far from where the decoder saw data are discouraged.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from inverse.targets import Condition, Target


@dataclass
class LatentSpace:
    """Statistics of the training latents (means of q(z|x)) that bound and penalize the search.

    lo, hi : (L,) the search box; mean (L,), prec (L, L) shrunk inverse covariance; radius: the
    Mahalanobis radius of the manifold penalty; scale: median nearest-neighbour distance of the
    training latents (latent units), the unit of candidate diversity.
    """

    mu: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    mean: np.ndarray
    prec: np.ndarray
    radius: float
    scale: float

    @property
    def dim(self) -> int:
        return int(self.mu.shape[1])

    def mahalanobis(self, z: np.ndarray) -> np.ndarray:
        """(B, L) -> (B,) Mahalanobis distance to the training latents."""
        d = np.atleast_2d(z) - self.mean  # (B, L)
        return np.sqrt(np.maximum(np.einsum("bi,ij,bj->b", d, self.prec, d), 0.0))

    def inside(self, z: np.ndarray, atol: float = 1e-9) -> np.ndarray:
        z = np.atleast_2d(z)
        return np.all((z >= self.lo - atol) & (z <= self.hi + atol), axis=1)

    def clip(self, z: np.ndarray) -> np.ndarray:
        return np.clip(z, self.lo, self.hi)


def latent_space(mu: np.ndarray, bounds: str = "quantile", quantile: float = 0.01,
                 box_margin: float = 0.05, prior_radius: float = 3.0,
                 manifold_quantile: float = 0.95, shrinkage: float = 0.1) -> LatentSpace:
    """Build the search box and manifold statistics from the training latents ``mu`` (N, L)."""
    mu = np.asarray(mu, dtype=np.float64)
    if mu.ndim != 2 or mu.shape[0] < 2:
        raise ValueError(f"need at least 2 training latents (N, L), got shape {mu.shape}")
    n, dim = mu.shape
    if bounds == "quantile":
        lo, hi = np.quantile(mu, quantile, axis=0), np.quantile(mu, 1 - quantile, axis=0)  # (L,)
        width = np.maximum(hi - lo, 1e-3)
        lo, hi = lo - box_margin * width, hi + box_margin * width
        hi = np.maximum(hi, lo + 1e-3)
    elif bounds == "prior":
        lo, hi = np.full(dim, -prior_radius), np.full(dim, prior_radius)
    else:
        raise ValueError(f"bounds must be 'quantile' or 'prior', got {bounds!r}")
    mean = mu.mean(axis=0)
    cov = np.cov(mu, rowvar=False).reshape(dim, dim)
    cov = (1 - shrinkage) * cov + shrinkage * np.diag(np.diag(cov))
    cov += 1e-6 * max(np.trace(cov) / dim, 1e-12) * np.eye(dim)
    prec = np.linalg.inv(cov)
    space = LatentSpace(mu, lo, hi, mean, prec, 0.0, 1.0)
    m = space.mahalanobis(mu)
    space.radius = float(np.quantile(m, manifold_quantile))
    d = np.linalg.norm(mu[:, None, :] - mu[None, :, :], axis=-1)  # (N, N)
    np.fill_diagonal(d, np.inf)
    space.scale = float(max(np.median(d.min(axis=1)), 1e-6))
    return space


class Objective:
    """Objective of one target over latents: ``values(z)`` (numpy) and ``torch_values(z)``.

    Parameters
    ----------
    target : the target (lattice units)
    model : the pVAE (its ``predict_properties`` is the regressor)
    norm : the model's Normalizer (raw <-> normalized properties)
    space : the training-latent statistics (manifold penalty)
    manifold_weight : weight of the manifold penalty
    """

    def __init__(self, target: Target, model, norm, space: LatentSpace, manifold_weight: float = 1.0):
        self.target, self.model, self.norm, self.space = target, model, norm, space
        self.manifold_weight = float(manifold_weight)
        self.names = list(norm.names)
        self.n_evals = 0
        self._terms = [self._term(c) for c in target.conditions]
        p = next(self.model.parameters())
        self._device, self._dtype = p.device, p.dtype
        self._mean = torch.as_tensor(space.mean, dtype=torch.float64)
        self._prec = torch.as_tensor(space.prec, dtype=torch.float64)

    # --- target conditions in normalized units ---------------------------------------------
    def _to_norm(self, prop: str, value: float) -> float:
        j = self.names.index(prop)
        row = np.array(self.norm.mean, dtype=np.float64)  # any finite row; only column j is used
        raw = self.norm.from_log(row[None])  # (1, P)
        raw[0, j] = value
        return float(self.norm.transform(raw)[0, j])

    def _tol_scale(self, c: Condition, at: float) -> float:
        """Tolerance width in normalized units at raw value ``at``."""
        if c.prop == "porosity" or not self.norm.log[self.names.index(c.prop)]:
            width = c.tol if c.prop == "porosity" else c.tol * max(abs(at), 1e-12)
            return abs(self._to_norm(c.prop, at + width) - self._to_norm(c.prop, at))
        return abs(self._to_norm(c.prop, at * (1 + c.tol)) - self._to_norm(c.prop, at))

    def _term(self, c: Condition) -> dict:
        j = self.names.index(c.prop)
        if c.kind in ("max", "min"):
            return {"j": j, "kind": c.kind}
        if c.kind == "exact":
            center = self._to_norm(c.prop, c.value)
            lo, hi = self._to_norm(c.prop, c.low), self._to_norm(c.prop, c.high)
            return {"j": j, "kind": "exact", "c": center, "s_lo": max(center - lo, 1e-9),
                    "s_hi": max(hi - center, 1e-9)}
        lo = -np.inf if c.low is None else self._to_norm(c.prop, c.low)
        hi = np.inf if c.high is None else self._to_norm(c.prop, c.high)
        ref = c.low if c.low is not None else c.high
        w = max(self._tol_scale(c, ref), 1e-9)
        margin = w if c.kind != "range" else min(w, 0.25 * (hi - lo))
        return {"j": j, "kind": "interval", "lo": lo + margin, "hi": hi - margin, "w": w}

    # --- evaluation ---------------------------------------------------------------------
    def _penalty(self, z: torch.Tensor) -> torch.Tensor:
        d = z.double() - self._mean  # (B, L)
        m = torch.sqrt(torch.clamp(torch.einsum("bi,ij,bj->b", d, self._prec, d), min=1e-18))  # (B,)
        return self.manifold_weight * torch.clamp(m - self.space.radius, min=0.0) ** 2

    def distance(self, p: torch.Tensor) -> torch.Tensor:
        """Normalized predictions (B, P) -> objective without penalty (B,)."""
        total = torch.zeros(p.shape[0], dtype=torch.float64, device=p.device)
        for t in self._terms:
            x = p[:, t["j"]].double()  # (B,)
            if t["kind"] == "max":
                total = total - x
            elif t["kind"] == "min":
                total = total + x
            elif t["kind"] == "exact":
                d = torch.where(x >= t["c"], (x - t["c"]) / t["s_hi"], (t["c"] - x) / t["s_lo"])
                total = total + d ** 2
            else:
                d = (torch.clamp(t["lo"] - x, min=0.0) + torch.clamp(x - t["hi"], min=0.0)) / t["w"]
                total = total + d ** 2
        return total

    def torch_values(self, z: torch.Tensor) -> torch.Tensor:
        """Differentiable objective (B,) of latents z (B, L) (float64)."""
        self.n_evals += int(z.shape[0])
        p = self.model.predict_properties(z.to(self._device, self._dtype))  # (B, P)
        return self.distance(p) + self._penalty(z.to(self._device))

    @property
    def target_columns(self) -> list[int]:
        """Columns (into ``names``) of the properties the target's conditions read."""
        return sorted({t["j"] for t in self._terms})

    def objective_of(self, p_norm: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Objective (B,) for given normalized properties (B, P) at latents z (B, L): no model call.

        The composite BO (:func:`inverse.search.run_bo_composite`) scores property samples drawn
        from its Gaussian processes with it; only the target's columns of ``p_norm`` are read.
        """
        p = torch.as_tensor(np.atleast_2d(p_norm), dtype=torch.float64)
        return (self.distance(p) + self._penalty(torch.as_tensor(np.atleast_2d(z), dtype=torch.float64))).numpy()

    @torch.no_grad()
    def evaluate(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One counted evaluation of latents z (B, L): (objective (B,), normalized properties (B, P))."""
        z = np.atleast_2d(np.asarray(z, dtype=np.float64))
        self.n_evals += int(z.shape[0])
        p = self._norm_pred(z)  # (B, P)
        return (self.distance(p) + self._penalty(torch.as_tensor(z))).numpy(), p.numpy()

    @torch.no_grad()
    def _norm_pred(self, z: np.ndarray) -> torch.Tensor:
        zt = torch.as_tensor(np.atleast_2d(z), dtype=self._dtype, device=self._device)
        return self.model.predict_properties(zt).double().cpu()  # (B, P)

    @torch.no_grad()
    def values(self, z: np.ndarray) -> np.ndarray:
        """Objective (B,) of latents z (B, L) (numpy, float64)."""
        zt = torch.as_tensor(np.atleast_2d(z), dtype=self._dtype, device=self._device)
        return self.torch_values(zt).cpu().numpy()

    @torch.no_grad()
    def predict(self, z: np.ndarray) -> np.ndarray:
        """Raw predicted properties (B, P) in lattice units (column order: ``self.names``)."""
        zt = torch.as_tensor(np.atleast_2d(z), dtype=self._dtype, device=self._device)
        return self.norm.inverse(self.model.predict_properties(zt).cpu().numpy())

    @torch.no_grad()
    def distances(self, z: np.ndarray) -> np.ndarray:
        """Target distance without the manifold penalty (B,) (not counted as an evaluation)."""
        return self.distance(self._norm_pred(z)).numpy()

    def predicted_hit(self, z: np.ndarray) -> np.ndarray:
        """(B,) bool: the prediction (``predict``) satisfies every condition of the target."""
        return self.hits_of(self.predict(z))

    def hits_of(self, raw: np.ndarray) -> np.ndarray:
        """(B,) bool: raw properties (B, P) (column order ``names``) satisfy every condition of the target."""
        out = []
        for row in np.atleast_2d(raw):
            d = {n: float(v) for n, v in zip(self.names, row)}
            out.append(self.target.hit(d, d))
        return np.array(out, dtype=bool)
