"""Design targets: parsing, units, tolerances and the hit test.

A target is a set of conditions on properties, written ``prop<op>value`` and joined by commas::

    porosity=0.6,k_xx=1.2            exact values with the default tolerances (config tol_porosity,
                                     absolute; tol_k, relative)
    porosity=0.6+-0.01,k_xx=1.2+-10% exact values with explicit tolerances ("±" works too; a
                                     tolerance ending in % is relative, otherwise absolute)
    k_xx=0.5:2                       a range (inclusive)
    k_xx>=1, porosity<0.4            inequalities (>, >=, <, <=; all inclusive)
    maximize:k_xx, min:k_zz          maximize / minimize (the original 2D tool maximized k)

Properties are ``porosity`` and the permeability components ``k_xx, k_yy, k_zz, k_xy, k_xz, k_yz``
(tensor indices (x, y, z), x the fastest array axis). Permeability is in lattice units (voxel^2)
unless ``units="physical"``: then values are m^2 and are divided by voxel_size^2 (m).

A batch of targets comes from a CSV (:func:`read_targets_csv`): either a ``spec`` column holding
strings like the above, or one column per property whose cells hold the right-hand side
(``0.6``, ``0.5:2``, ``>=1``, ``max``, ``1.2+-10%``); an optional ``target_id`` column names rows.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core.properties import K_COLUMNS, is_diagonal, is_k_component

KNOWN_PROPERTIES = ["porosity"] + K_COLUMNS[3]
KINDS = ("exact", "range", "ge", "le", "max", "min")


class TargetError(ValueError):
    """A target that cannot be parsed or that names a property the model does not know."""


@dataclass(frozen=True)
class Condition:
    """One condition of a target, in lattice units.

    kind "exact": value, accepted interval [low, high] (from the tolerance);
    "range": [low, high]; "ge": >= low; "le": <= high; "max" / "min": optimize; their bar (set
    by :func:`with_training_bars` from the training labels: ``low`` of "max" = the largest
    training value, ``high`` of "min" = the smallest) is what a verified value must beat to count.
    tol: the tolerance of the hit test (porosity absolute, k relative), also the soft scale of
    the objective outside the interval.
    """

    prop: str
    kind: str
    value: float | None = None
    low: float | None = None
    high: float | None = None
    tol: float = 0.0

    def interval(self) -> tuple[float, float]:
        """(low, high) of the accepted values; -inf / +inf where unbounded (max/min: both)."""
        lo = -math.inf if self.low is None else self.low
        hi = math.inf if self.high is None else self.high
        return lo, hi

    def satisfied(self, value: float, predicted: float | None = None) -> bool:
        """Hit test of a verified ``value``. max / min with a bar (the training set's best value):
        the verified value beats it (max: > low; min: < high). Without a bar: verified within
        tolerance of ``predicted``."""
        if value is None or not np.isfinite(value):
            return False
        if self.kind == "max" and self.low is not None:
            return bool(value > self.low)
        if self.kind == "min" and self.high is not None:
            return bool(value < self.high)
        if self.kind in ("max", "min"):
            if predicted is None:
                return True
            return _within(self.prop, value, predicted, self.tol)
        lo, hi = self.interval()
        return bool(lo <= value <= hi)

    def describe(self) -> str:
        if self.kind == "exact":
            t = f"{self.tol:g}" if self.prop == "porosity" else f"{100 * self.tol:g}%"
            return f"{self.prop}={self.value:g}+-{t}"
        if self.kind == "range":
            return f"{self.prop}={self.low:g}:{self.high:g}"
        if self.kind == "ge":
            return f"{self.prop}>={self.low:g}"
        if self.kind == "le":
            return f"{self.prop}<={self.high:g}"
        return f"{'maximize' if self.kind == 'max' else 'minimize'}:{self.prop}"


def _within(prop: str, value: float, ref: float, tol: float) -> bool:
    if prop == "porosity":
        return abs(value - ref) <= tol + 1e-12
    return abs(value - ref) <= tol * abs(ref) + 1e-300


@dataclass
class Target:
    """A named set of conditions (at most one per property)."""

    target_id: str
    conditions: list[Condition] = field(default_factory=list)
    spec: str = ""
    reference: str | None = None  # sample id of the structure whose properties are asked for (ref=...)

    @property
    def properties(self) -> list[str]:
        return [c.prop for c in self.conditions]

    @property
    def optimizes(self) -> bool:
        """The target maximizes or minimizes a property (its designs are then held to the
        material's morphology, see DesignConfig.morphology_band)."""
        return any(c.kind in ("max", "min") for c in self.conditions)

    def condition(self, prop: str) -> Condition | None:
        return next((c for c in self.conditions if c.prop == prop), None)

    def describe(self) -> str:
        return ",".join(c.describe() for c in self.conditions)

    def hit(self, verified: dict[str, float], predicted: dict[str, float] | None = None) -> bool:
        """All conditions satisfied by the verified values (see :meth:`Condition.satisfied`)."""
        predicted = predicted or {}
        return all(c.satisfied(verified.get(c.prop), predicted.get(c.prop)) for c in self.conditions)


_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_OPT = re.compile(r"^(maximize|maximise|max|minimize|minimise|min)\s*:\s*(\w+)$", re.I)
_CMP = re.compile(r"^(\w+)\s*(>=|<=|>|<|=)\s*(.+)$")
_TOL = re.compile(rf"^({_NUM})\s*(?:\+-|\+/-|±)\s*({_NUM})\s*(%?)$")
_RANGE = re.compile(rf"^({_NUM})\s*:\s*({_NUM})$")


def _number(text: str, item: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise TargetError(f"target {item!r}: {text!r} is not a number") from None
    if not math.isfinite(v):
        raise TargetError(f"target {item!r}: value must be finite, got {text!r}")
    return v


def check_property(prop: str, known=KNOWN_PROPERTIES, what: str = "known properties") -> None:
    if prop not in known:
        raise TargetError(f"unknown property {prop!r} in target; {what}: {', '.join(known)}")


def parse_condition(item: str, tol_porosity: float = 0.02, tol_k: float = 0.15,
                    k_scale: float = 1.0) -> Condition:
    """Parse one ``prop<op>value`` item into a :class:`Condition` (lattice units).

    Parameters
    ----------
    item : e.g. ``"k_xx=1.2+-10%"``, ``"porosity=0.4:0.6"``, ``"k_xx>=1"``, ``"maximize:k_xx"``
    tol_porosity : default absolute porosity tolerance of an exact target (-)
    tol_k : default relative permeability tolerance of an exact target (-)
    k_scale : multiplies permeability values into lattice units (1 for lattice units,
        1 / voxel_size^2 for values in m^2)
    """
    item = item.strip()
    m = _OPT.match(item)
    if m:
        prop = m.group(2)
        check_property(prop)
        kind = "max" if m.group(1).lower().startswith("max") else "min"
        return Condition(prop, kind, tol=tol_porosity if prop == "porosity" else tol_k)
    m = _CMP.match(item)
    if not m:
        raise TargetError(f"cannot parse target {item!r}; expected prop=value, prop=a:b, prop>=a, "
                          "prop<=b or maximize:prop")
    prop, op, rhs = m.group(1), m.group(2), m.group(3).strip()
    check_property(prop)
    is_k = is_k_component(prop)
    scale = k_scale if is_k else 1.0
    default_tol = tol_k if is_k else tol_porosity
    if op == "=" and rhs.lower() in ("max", "maximize", "min", "minimize"):
        return parse_condition(f"{rhs}:{prop}", tol_porosity, tol_k, k_scale)
    if op in (">=", ">"):
        return Condition(prop, "ge", low=_number(rhs, item) * scale, tol=default_tol)
    if op in ("<=", "<"):
        return Condition(prop, "le", high=_number(rhs, item) * scale, tol=default_tol)
    m = _RANGE.match(rhs)
    if m:
        lo, hi = _number(m.group(1), item) * scale, _number(m.group(2), item) * scale
        if lo > hi:
            raise TargetError(f"target {item!r}: empty range ({m.group(1)} > {m.group(2)})")
        return Condition(prop, "range", low=lo, high=hi, tol=default_tol)
    m = _TOL.match(rhs)
    if m:
        value = _number(m.group(1), item) * scale
        t = _number(m.group(2), item)
        if t < 0:
            raise TargetError(f"target {item!r}: tolerance must be >= 0")
        if m.group(3):  # relative, percent
            rel = t / 100.0
            tol = rel * abs(value) if not is_k else rel
        else:  # absolute, in the same units as the value
            tol = t if not is_k else (t * scale) / max(abs(value), 1e-300)
    else:
        value = _number(rhs, item) * scale
        tol = default_tol
    if value <= 0 and is_diagonal(prop):
        raise TargetError(f"target {item!r}: a diagonal permeability must be > 0")
    if is_k:
        low, high = value - tol * abs(value), value + tol * abs(value)
    else:
        low, high = value - tol, value + tol
    return Condition(prop, "exact", value=value, low=low, high=high, tol=tol)


def parse_target(spec: str, target_id: str = "t0", tol_porosity: float = 0.02, tol_k: float = 0.15,
                 k_scale: float = 1.0) -> Target:
    """Parse ``"porosity=0.6,k_xx=1.2"`` (items joined by commas or semicolons) into a Target.

    An item ``ref=<sample_id>`` names a sample of the model's dataset as the reference structure:
    the candidates' morphology is compared with it (results.csv, figures) and, with
    DesignConfig.match_reference, the search holds designs to its specific surface (a penalty, not a
    property condition: HIT reads the property conditions only).
    """
    items = [s.strip() for s in re.split(r"[,;]", spec) if s.strip()]
    refs = [s.split("=", 1)[1].strip() for s in items if s.lower().startswith("ref=")]
    items = [s for s in items if not s.lower().startswith("ref=")]
    if len(refs) > 1:
        raise TargetError(f"target {spec!r}: at most one ref=<sample_id>")
    if not items:
        raise TargetError(f"target {target_id!r}: empty specification")
    conds = [parse_condition(s, tol_porosity, tol_k, k_scale) for s in items]
    props = [c.prop for c in conds]
    dup = sorted({p for p in props if props.count(p) > 1})
    if dup:
        raise TargetError(f"target {spec!r}: property {dup[0]!r} appears twice; use a range a:b instead")
    return Target(str(target_id), conds, spec, refs[0] if refs else None)


def read_targets_csv(path: str | Path, tol_porosity: float = 0.02, tol_k: float = 0.15,
                     k_scale: float = 1.0, first_index: int = 0) -> list[Target]:
    """Targets from a CSV, one per row (``spec`` column, or one column per property)."""
    path = Path(path)
    if not path.is_file():
        raise TargetError(f"{path}: targets CSV not found")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    if df.empty:
        raise TargetError(f"{path}: no target rows")
    targets = []
    for i, row in df.iterrows():
        tid = row.get("target_id", "") or f"t{first_index + i}"
        if "spec" in df.columns:
            spec = row["spec"]
        else:
            items = []
            for col in df.columns:
                if col == "target_id" or not str(row[col]).strip():
                    continue
                if col not in KNOWN_PROPERTIES:
                    raise TargetError(f"{path}: unknown property column {col!r}; known properties: "
                                      f"{', '.join(KNOWN_PROPERTIES)} (or a 'spec' column)")
                cell = str(row[col]).strip()
                items.append(col + cell if cell[0] in "<>=" else f"{col}={cell}")
            spec = ",".join(items)
        try:
            targets.append(parse_target(spec, tid, tol_porosity, tol_k, k_scale))
        except TargetError as exc:
            raise TargetError(f"{path}, row {i + 2}: {exc}") from None
    return targets


def k_scale_for(units: str, voxel_size: float | None) -> float:
    """Factor from the user's permeability unit to lattice units (voxel^2)."""
    if units == "lattice":
        return 1.0
    if units != "physical":
        raise TargetError(f"units must be 'lattice' or 'physical', got {units!r}")
    if not voxel_size or voxel_size <= 0:
        raise TargetError("units='physical' needs the dataset's voxel_size (metres) in dataset.yaml; "
                          "it is missing: give targets in lattice units instead")
    return 1.0 / float(voxel_size) ** 2


def build_targets(specs: list[str], csv: str | None = None, units: str = "lattice",
                  voxel_size: float | None = None, tol_porosity: float = 0.02,
                  tol_k: float = 0.15) -> list[Target]:
    """All targets of a run: the specs (ids t0, t1, ...) then the CSV rows."""
    scale = k_scale_for(units, voxel_size) if (units == "physical") else 1.0
    targets = [parse_target(s, f"t{i}", tol_porosity, tol_k, scale) for i, s in enumerate(specs)]
    if csv:
        targets += read_targets_csv(csv, tol_porosity, tol_k, scale, first_index=len(targets))
    if not targets:
        raise TargetError("no targets: give --target SPEC (repeatable) or --targets-csv FILE")
    ids = [t.target_id for t in targets]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise TargetError(f"target id {dup[0]!r} is used twice")
    return targets


def check_targets_for_model(targets: list[Target], model_properties: list[str]) -> None:
    """Every targeted property must be one the model's regressor predicts."""
    for t in targets:
        for p in t.properties:
            if p not in model_properties:
                raise TargetError(f"target {t.target_id} ({t.spec}): the model does not predict {p!r}; "
                                  f"it predicts: {', '.join(model_properties)}")


def with_training_bars(target: Target, y_train: np.ndarray, properties: list[str]) -> Target:
    """``target`` with the bar of each maximize / minimize condition set from the training labels
    ``y_train`` (N, P) (columns ``properties``): max -> ``low`` = the largest training value, min ->
    ``high`` = the smallest. A verified design then hits a max/min condition when it beats every
    training sample (:meth:`Condition.satisfied`). Other conditions are returned unchanged."""
    import dataclasses

    conds = []
    for c in target.conditions:
        if c.kind in ("max", "min") and c.prop in properties:
            col = np.asarray(y_train, dtype=float)[:, properties.index(c.prop)]
            col = col[np.isfinite(col)]
            if col.size:
                c = dataclasses.replace(c, low=float(col.max())) if c.kind == "max" else \
                    dataclasses.replace(c, high=float(col.min()))
        conds.append(c)
    return dataclasses.replace(target, conditions=conds)
