"""Judging inverse design (inverse/evaluation.py): intervals, diversity, the ladder, target kinds.

Pure functions on constructed data; the solver-backed parts (lookup, convergence) are in
test_design.py next to the trained tiny model.
"""
import numpy as np
import pandas as pd
import pytest

from inverse.evaluation import (aggregate, bootstrap_ci, compare, distinct_hits, ladder_hit, make_targets,
                                paired_difference_ci, phase_iou, pore_iou, porosity_bin_max, shift_iou)


# --- bootstrap intervals ---------------------------------------------------------------------------
def test_bootstrap_interval_brackets_the_mean_and_degenerates_on_constant_scores():
    x = np.r_[np.ones(37), np.zeros(13)]
    m, lo, hi = bootstrap_ci(x, seed=1)
    assert m == pytest.approx(0.74) and lo < m < hi
    # a binomial proportion's 95% interval is about +-1.96 sqrt(p (1 - p) / n) = +-0.12 here
    assert 0.18 < hi - lo < 0.30
    assert bootstrap_ci(np.ones(20)) == (1.0, 1.0, 1.0)
    assert all(np.isnan(v) for v in bootstrap_ci([]))


def test_bootstrap_interval_covers_a_known_bernoulli_rate_95_percent_of_the_time():
    p, n, reps = 0.8, 60, 400
    rng = np.random.default_rng(0)
    covered = 0
    for r in range(reps):
        x = (rng.random(n) < p).astype(float)
        _, lo, hi = bootstrap_ci(x, n_boot=1000, seed=r)
        covered += lo <= p <= hi
    # percentile bootstrap of a proportion at n = 60 covers a little under the nominal 95%;
    # 400 replications: binomial sd of the coverage ~0.011
    assert 0.90 <= covered / reps <= 0.98


def test_paired_difference_keeps_the_pairing():
    a = np.r_[np.ones(30), np.zeros(10)]
    m, lo, hi = paired_difference_ci(a, a)
    assert (m, lo, hi) == (0.0, 0.0, 0.0)
    b = a.copy()
    b[:5] = 0  # b misses 5 targets a hits, nothing else differs
    m, lo, hi = paired_difference_ci(a, b)
    assert m == pytest.approx(5 / 40) and 0 < lo <= m <= hi
    with pytest.raises(ValueError, match="different lengths"):
        paired_difference_ci(a, a[:-1])


# --- diversity ------------------------------------------------------------------------------------
def test_pore_iou_of_small_arrays():
    a = np.array([1, 1, 0, 0], bool)
    b = np.array([1, 0, 1, 0], bool)
    assert pore_iou(a, b) == pytest.approx(1 / 3)
    assert pore_iou(a, a) == 1.0 and pore_iou(a, ~a) == 0.0
    assert pore_iou(np.zeros(4, bool), np.zeros(4, bool)) == 1.0
    with pytest.raises(ValueError, match="shapes"):
        pore_iou(a, np.ones(3, bool))


def test_distinct_hits_counts_structures_pairwise_below_the_iou_bound():
    rng = np.random.default_rng(0)
    shape = (16, 16, 16)
    base = rng.random(shape) < 0.5
    near = base.copy()
    flip = rng.random(shape) < 0.03  # 3% of voxels flipped: IoU ~0.94 with base
    near[flip] = ~near[flip]
    others = [rng.random(shape) < 0.5 for _ in range(6)]  # independent: IoU ~1/3 with anything
    assert pore_iou(base, near) > 0.9 and pore_iou(base, others[0]) < 0.4
    # the near copy is not distinct from base; independent structures are, up to the cap of 5
    assert distinct_hits([base, near, others[0]]) == [0, 2]
    assert distinct_hits([base, near] + others) == [0, 2, 3, 4, 5]
    assert len(distinct_hits(others + others)) == 5
    assert distinct_hits([base, base, base]) == [0]
    assert distinct_hits([base, near], max_iou=0.95) == [0, 1]
    assert distinct_hits([]) == []


def test_phase_iou_scores_independent_structures_low_at_any_porosity():
    """On the pores two independent structures of porosity 0.8 score phi / (2 - phi) = 0.67; on the
    minority phase (the solid, 0.2) they score 0.2 / 1.8 = 0.11: distinct, as they are."""
    rng = np.random.default_rng(1)
    a, b = (rng.random((24, 24, 24)) < 0.8 for _ in range(2))
    assert pore_iou(a, b) == pytest.approx(0.8 / 1.2, abs=0.02)
    assert phase_iou(a, b) == pytest.approx(0.2 / 1.8, abs=0.02)
    assert phase_iou(a, b) == pytest.approx(phase_iou(~a, ~b))  # symmetric in pore and solid
    assert phase_iou(a, a) == 1.0
    assert distinct_hits([a, b]) == [0, 1]  # pore IoU would have called them the same structure
    with pytest.raises(ValueError, match="shapes"):
        phase_iou(a, a[:-1])


def test_a_translated_copy_is_not_distinct_when_translations_are_searched():
    """A periodic structure rolled by any shift has the same porosity and k tensor: shift_iou finds
    the translation (IoU 1) where the plain IoU scores it like an unrelated structure; near copies
    keep their IoU, unrelated structures stay low."""
    rng = np.random.default_rng(2)
    from scipy.ndimage import gaussian_filter

    field = gaussian_filter(rng.standard_normal((20, 20, 20)), 2.0, mode="wrap")
    a = field > np.quantile(field, 0.6)  # a periodic blob structure, porosity 0.4
    moved = np.roll(a, (5, -3, 7), axis=(0, 1, 2))
    other = np.roll(gaussian_filter(rng.standard_normal((20, 20, 20)), 2.0, mode="wrap") > 0.25, 1, 0)
    assert phase_iou(a, moved) < 0.5  # plain IoU: "distinct"
    assert shift_iou(a, moved) == pytest.approx(1.0) and phase_iou(a, moved, shifts=True) == pytest.approx(1.0)
    assert shift_iou(a, a) == 1.0 and shift_iou(a, other) < 0.6
    assert shift_iou(a, other) >= pore_iou(a, other)  # the unshifted pair is one of the translations
    assert distinct_hits([a, moved, other]) == [0, 1, 2]
    assert distinct_hits([a, moved, other], shifts=True) == [0, 2]
    im2 = rng.random((12, 12)) < 0.3  # 2D as well
    assert shift_iou(im2, np.roll(im2, (4, 9), axis=(0, 1))) == pytest.approx(1.0)


# --- the tolerance ladder ------------------------------------------------------------------------
def test_a_hit_needs_convergence_and_the_rungs_tolerances():
    spec = "porosity=0.5,k_xx=1.0"
    ver = {"porosity": 0.515, "k_xx": 1.08}
    assert ladder_hit(spec, ver, True, "", 0.02, 0.10)
    assert not ladder_hit(spec, ver, True, "", 0.02, 0.05)  # 8% off: not within 5%
    assert not ladder_hit(spec, ver, True, "", 0.01, 0.10)  # porosity 0.015 off
    assert not ladder_hit(spec, ver, False, "", 0.02, 0.15)  # not converged: no measurement
    assert not ladder_hit(spec, ver, True, "SolverError: Mach", 0.02, 0.15)
    # every component of a multi-property target counts; explicit tolerances are replaced by the rung's
    multi = "porosity=0.5,k_xx=1.0,k_yy=2.0+-50%,k_zz=3.0"
    assert ladder_hit(multi, {"porosity": 0.5, "k_xx": 1.0, "k_yy": 2.1, "k_zz": 3.2}, True, "", 0.02, 0.10)
    assert not ladder_hit(multi, {"porosity": 0.5, "k_xx": 1.0, "k_yy": 2.5, "k_zz": 3.0}, True, "", 0.02, 0.15)


# --- target kinds ----------------------------------------------------------------------------------
@pytest.fixture()
def labels():
    rng = np.random.default_rng(1)
    n = 400
    phi = rng.uniform(0.35, 0.85, n)
    k = 10 ** (4 * phi - 3 + 0.3 * rng.standard_normal(n))  # (n,) voxel^2, grows with porosity
    train = pd.DataFrame({"porosity": phi[:300], "k_xx": k[:300]})
    held = pd.DataFrame({"sample_id": [f"e{i:03d}" for i in range(100)], "porosity": phi[300:],
                         "k_xx": k[300:], "k_yy": 1.1 * k[300:], "k_zz": 0.9 * k[300:], "status": "ok"})
    held.loc[[3, 7], "k_xx"] = 0.0  # not percolating along x: no target
    held.loc[11, "status"] = "failed"
    held.loc[12, "k_zz"] = 0.0  # not percolating along z: no multi target
    return train, held


def test_target_kinds_in_distribution_ood_beyond_the_training_bin_and_multi(labels):
    train, held = labels
    t, notes = make_targets(held, train, {"in": 10, "ood": 8, "multi": 6}, seed=0, prefix="eval_",
                            properties=["porosity", "k_xx", "k_yy", "k_zz"])
    assert notes == [] and t["kind"].value_counts().to_dict() == {"in": 10, "ood": 8, "multi": 6}
    assert t["sample_id"].is_unique and not set(t["sample_id"]) & {"e003", "e007", "e011"}
    assert t["target_id"].str.startswith("eval_").all() and t["target_id"].is_unique
    src = held.set_index("sample_id")
    for _, r in t.iterrows():
        s = src.loc[r["sample_id"]]
        assert r["porosity"] == pytest.approx(s["porosity"], abs=1e-6)
        if r["kind"] == "in":
            assert r["spec"].count("=") == 2 and r["k_xx"] == pytest.approx(s["k_xx"], rel=1e-5)
        elif r["kind"] == "multi":
            assert r["spec"].count("=") == 4 and "k_zz=" in r["spec"] and r["sample_id"] != "e012"
        else:
            near = train[(train["porosity"] - r["porosity"]).abs() <= 0.025]
            kmax = near["k_xx"].max()
            assert r["k_bin_max"] == pytest.approx(kmax) and r["bin_n"] == len(near) >= 5
            assert 1.5 * kmax <= r["k_xx"] <= 2.0 * kmax and r["k_xx"] == pytest.approx(r["ood_factor"] * kmax)
            # beyond every training sample within the loosest porosity tolerance (0.02) by more than 15%
            close = train[(train["porosity"] - r["porosity"]).abs() <= 0.02]["k_xx"]
            assert (r["k_xx"] > 1.15 * close).all()
    # seeded: the same call gives the same targets; shuffle=False keeps the table order
    again, _ = make_targets(held, train, {"in": 10, "ood": 8, "multi": 6}, seed=0, prefix="eval_",
                            properties=["porosity", "k_xx", "k_yy", "k_zz"])
    pd.testing.assert_frame_equal(t, again)
    ordered, _ = make_targets(held, train, {"in": 4}, shuffle=False)
    assert list(ordered["sample_id"]) == ["e000", "e001", "e002", "e004"]


def test_target_kinds_say_what_they_cannot_draw(labels):
    train, held = labels
    t, notes = make_targets(held, train, {"in": 2, "multi": 3}, properties=["porosity", "k_xx"])
    assert list(t["kind"]) == ["in", "in"] and "multi targets skipped" in notes[0]
    t, notes = make_targets(held.iloc[:5], train, {"in": 9})
    assert len(t) == 4 and "only 4 of 9" in notes[0]  # e000-e004 less e003 (not percolating along x)
    # samples one kind cannot use (no ood bin with enough training samples) stay available to the next
    t, notes = make_targets(held, train, {"ood": 2, "multi": 3}, min_bin=10**6,
                            properties=["porosity", "k_xx", "k_yy", "k_zz"])
    assert list(t["kind"]) == ["multi"] * 3 and "only 0 of 2 ood" in notes[0]
    with pytest.raises(ValueError, match="unknown target kind"):
        make_targets(held, train, {"outliers": 2})
    kmax, n = porosity_bin_max(0.99, train["porosity"], train["k_xx"], 0.001)
    assert np.isnan(kmax) and n == 0


# --- aggregation ---------------------------------------------------------------------------------
def test_aggregate_averages_seeds_per_target_then_targets():
    rows = []
    for seed in range(3):
        for tid, kind, hit, distinct in (("a", "in", True, 4), ("b", "in", seed == 0, 1), ("c", "ood", False, 0)):
            rows.append({"set": "eval", "kind": kind, "target_id": tid, "method": "bo", "seed": seed,
                         "hit1_p0.02_k10": hit, "hitN_p0.02_k10": hit, "n_hits": int(hit),
                         "distinct_hits": distinct if hit else 0, "solver_calls": 68,
                         "calls_per_hit": 68.0 if hit else np.inf, "wall_s": 10.0 + seed, "max_abs_dphi": 0.0})
            rows.append({**rows[-1], "method": "random", "hit1_p0.02_k10": False, "hitN_p0.02_k10": tid == "a",
                         "calls_per_hit": 68.0 if tid == "a" else np.inf, "distinct_hits": 0})
    rec = pd.DataFrame(rows)
    s = aggregate(rec).set_index(["kind", "method"])
    assert s.loc[("in", "bo"), "hitN_p0.02_k10"] == pytest.approx((1 + 1 / 3) / 2)
    assert s.loc[("all", "bo"), "hitN_p0.02_k10"] == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert s.loc[("all", "bo"), "targets"] == 3 and s.loc[("all", "bo"), "seeds"] == 3
    assert s.loc[("in", "bo"), "ge3_distinct"] == pytest.approx(0.5)  # a: 3 of 3 seeds, b: none
    assert "ge3_distinct_shift" not in s  # records without distinct_hits_shift (written before it)
    shifted = aggregate(rec.assign(distinct_hits_shift=np.where(rec["target_id"] == "a", 2, rec["distinct_hits"])))
    shifted = shifted.set_index(["kind", "method"])  # a's 4 distinct hits are 2 translated pairs
    assert shifted.loc[("in", "bo"), "ge3_distinct"] == pytest.approx(0.5)
    assert shifted.loc[("in", "bo"), "ge3_distinct_shift"] == 0.0
    assert shifted.loc[("in", "bo"), "ge3_distinct_shift_lo"] <= 0.0 <= shifted.loc[("in", "bo"), "ge3_distinct_shift_hi"]
    lo, hi = s.loc[("all", "bo"), "hitN_p0.02_k10_lo"], s.loc[("all", "bo"), "hitN_p0.02_k10_hi"]
    assert lo <= s.loc[("all", "bo"), "hitN_p0.02_k10"] <= hi
    # 9 target x seed rows, 4 with a hit: the median calls per hit is infinite
    assert s.loc[("all", "bo"), "median_calls_per_hit"] == np.inf
    assert s.loc[("in", "bo"), "median_calls_per_hit"] == 68.0  # 6 rows, 4 hit
    assert s.loc[("all", "bo"), "wall_s_per_target"] == pytest.approx(11.0)
    c = compare(rec, "bo", "random").set_index("kind")
    assert c.loc["in", "diff"] == pytest.approx(1 / 6) and c.loc["ood", "diff"] == 0.0
