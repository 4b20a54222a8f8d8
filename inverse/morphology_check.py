"""Does a design look like the material? Morphology of each candidate against the training
structures and, when the target names one (``ref=<sample_id>``), against that sample.

Columns written per candidate into results.csv (see data_pipeline.morphology for the units):
``porosity_m``, ``specific_surface``, ``chord_length``, ``euler_density`` of the delivered
structure; ``s2_nearest_train`` (RMS S2 distance to the nearest training structure);
``ss_ratio_train`` (specific surface over the median of the training structures within +-0.05
porosity, the 8 nearest in porosity when fewer); ``anisotropy`` (largest over smallest pore-solid
face density along the axes), ``anisotropy_ratio_train`` (over the training median) and
``anisotropy_ok`` (inside :attr:`MorphologyReference.anisotropy_band`, the training range: the
stretched grains and stripes that specific surface and radial S2 miss); ``spread`` (the local
porosity spread, :func:`data_pipeline.morphology.local_porosity_spread`), ``spread_ratio_train``
(over the median of the training structures within +-0.05 porosity, as ``ss_ratio_train``) and
``spread_ok`` (inside :attr:`MorphologyReference.spread_band`, the training structures' own range
of that ratio: solid gathered into clumps beside an open band, which the other measures miss);
with a reference sample ``ss_ratio_ref`` and
``s2_distance_ref``, and ``looks_like_ref`` = 0.8 <= ss_ratio_ref <= 1.25 and s2_distance_ref <= 0.05
(the criterion of the generative-fidelity benchmark).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from data_pipeline import morphology as mo
from data_pipeline.io import read_volume, volume_path

SS_BAND = (0.8, 1.25)  # specific-surface ratio counted as "the same material"
S2_MAX = 0.05  # largest RMS S2 distance counted as "the same material"
TRAIN_PREFIX = "train:"  # a reference id of the model's own dataset when the references live elsewhere


class MorphologyReference:
    """Morphology of (up to ``n``, seeded) training structures of ``dataset`` and of named samples.

    Named samples (a target's ``ref=<sample_id>``) are read from ``reference_dataset`` (default
    ``dataset``): targets drawn from an evaluation set built apart from the training data name
    samples of that set."""

    def __init__(self, dataset: str | Path, train_ids: list[str], n: int = 256, seed: int = 0,
                 reference_dataset: str | Path | None = None):
        self.dataset = Path(dataset)
        self.reference_dataset = Path(reference_dataset) if reference_dataset else self.dataset
        rng = np.random.default_rng(seed)
        ids = list(train_ids)
        if len(ids) > n:
            ids = [ids[i] for i in np.sort(rng.choice(len(ids), n, replace=False))]
        vols = [self._volume(i, self.dataset) for i in ids]
        self.train = mo.describe_set(vols)
        self._samples: dict[str, dict] = {}
        a = self.train["scalars"]["anisotropy"]
        a = a[np.isfinite(a)] if np.isfinite(a).any() else np.ones(1)
        self.anisotropy_median = float(np.median(a))
        #: the training structures' range of anisotropy / its median, at least 0.95-1.05 (a band of
        #: near-identical structures would otherwise make any deviation infinitely costly)
        self.anisotropy_band = (min(float(a.min()) / self.anisotropy_median, 0.95),
                                max(float(a.max()) / self.anisotropy_median, 1.05))
        #: the training structures' local porosity spread, and the range of its ratio to the median
        #: at each one's porosity (at least 0.95-1.05, as the anisotropy band)
        self.train_spread = np.array([mo.local_porosity_spread(v) for v in vols])
        own = np.array([self.spread_ratio_at(sp, phi) for sp, phi in
                        zip(self.train_spread, self.train["scalars"]["porosity"])])
        own = own[np.isfinite(own)] if np.isfinite(own).any() else np.ones(1)
        self.spread_band = (min(float(own.min()), 0.95), max(float(own.max()), 1.05))

    @staticmethod
    def _volume(sample_id: str, dataset: Path) -> np.ndarray:
        path = volume_path(dataset, sample_id)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: reference sample {sample_id!r} not found in {dataset}")
        return read_volume(path).astype(bool)

    def sample(self, sample_id: str) -> tuple[np.ndarray, dict]:
        """(volume, morphology) of one sample of the reference dataset (any split), cached; an id
        ``train:<id>`` names a sample of the model's dataset (a maximize target's bar sample)."""
        if sample_id not in self._samples:
            own = sample_id.startswith(TRAIN_PREFIX)
            im = self._volume(sample_id[len(TRAIN_PREFIX):] if own else sample_id,
                              self.dataset if own else self.reference_dataset)
            self._samples[sample_id] = {"im": im, "m": mo.morphology(im)}
        rec = self._samples[sample_id]
        return rec["im"], rec["m"]

    def _near(self, porosity: float):
        """The training structures within +-0.05 of ``porosity`` (the 8 nearest when fewer)."""
        phi_t = self.train["scalars"]["porosity"]
        near = np.abs(phi_t - porosity) <= 0.05
        return near if near.sum() >= 8 else np.argsort(np.abs(phi_t - porosity))[:8]

    def ss_median(self, porosity: float) -> float:
        """Median specific surface (1/voxel) of the training structures within +-0.05 of
        ``porosity`` (the 8 nearest in porosity when fewer)."""
        return float(np.median(self.train["scalars"]["specific_surface"][self._near(porosity)]))

    def spread_ratio_at(self, spread: float, porosity: float) -> float:
        """``spread`` over the median local porosity spread of the training structures near
        ``porosity`` (as :meth:`ss_median`); nan when that median is 0."""
        ref = float(np.median(self.train_spread[self._near(porosity)]))
        return spread / ref if ref > 0 else float("nan")

    def spread_ratio(self, im: np.ndarray) -> float:
        """Local porosity spread of ``im`` over the training median at its porosity
        (``spread_ratio_train``); inside :attr:`spread_band` its solid is spread like the material's."""
        im = np.asarray(im, dtype=bool)
        return self.spread_ratio_at(mo.local_porosity_spread(im), float(im.mean()))

    def ss_ratio(self, im: np.ndarray) -> float:
        """Specific surface of ``im`` over :meth:`ss_median` at its porosity (``ss_ratio_train``;
        cheap: no S2); nan when the reference median is 0. Same estimator as the median
        (:func:`data_pipeline.morphology.surface_from_faces`)."""
        im = np.asarray(im, dtype=bool)
        ss_ref = self.ss_median(float(im.mean()))
        return mo.surface_from_faces(im) / ss_ref if ss_ref > 0 else float("nan")

    def anisotropy_ratio(self, im: np.ndarray) -> float:
        """Anisotropy of ``im`` (:func:`data_pipeline.morphology.anisotropy`) over the training median
        (``anisotropy_ratio_train``); inside :attr:`anisotropy_band` it is as isotropic as the material."""
        return mo.anisotropy(np.asarray(im, dtype=bool)) / self.anisotropy_median

    def ss_ratio_to(self, sample_id: str):
        """A function ``im -> specific surface of im / that of sample_id`` (``ss_ratio_ref``; same
        estimator), for holding a design to the morphology of the sample its target names."""
        ss_ref = self.sample(sample_id)[1]["specific_surface"]
        if not ss_ref > 0:
            raise ValueError(f"reference sample {sample_id!r} has no pore-solid surface; it cannot set a morphology")
        return lambda im: mo.surface_from_faces(np.asarray(im, dtype=bool)) / ss_ref

    def columns(self, im: np.ndarray, reference: str | None = None) -> dict:
        """The morphology columns of one delivered structure (see module doc)."""
        m = mo.morphology(np.asarray(im, dtype=bool))
        ss_ref = self.ss_median(m["porosity"])
        out = {"porosity_m": m["porosity"], "specific_surface": m["specific_surface"],
               "chord_length": m["chord_length"], "euler_density": m["euler_density"],
               "s2_nearest_train": float(mo.nearest_s2_distances(m["s2"][None], self.train["s2"])[0]),
               "ss_ratio_train": m["specific_surface"] / ss_ref if ss_ref > 0 else float("nan"),
               "anisotropy": m["anisotropy"], "anisotropy_ratio_train": m["anisotropy"] / self.anisotropy_median}
        lo, hi = self.anisotropy_band
        out["anisotropy_ok"] = bool(lo <= out["anisotropy_ratio_train"] <= hi)
        out["spread"] = mo.local_porosity_spread(np.asarray(im, dtype=bool))
        out["spread_ratio_train"] = self.spread_ratio_at(out["spread"], m["porosity"])
        lo, hi = self.spread_band
        out["spread_ok"] = bool(lo <= out["spread_ratio_train"] <= hi)
        if reference:
            _, r = self.sample(reference)
            ratio = m["specific_surface"] / r["specific_surface"] if r["specific_surface"] > 0 else float("nan")
            d = mo.s2_distance(m["s2"], r["s2"])
            out.update({"reference": reference, "ss_ratio_ref": ratio, "s2_distance_ref": d,
                        "looks_like_ref": bool(SS_BAND[0] <= ratio <= SS_BAND[1] and d <= S2_MAX)})
        return out
