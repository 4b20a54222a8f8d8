"""Target parsing: syntax, tolerances, units, CSV batches and clear errors."""
import math

import pytest

import numpy as np

from inverse.targets import (KNOWN_PROPERTIES, TargetError, build_targets, check_targets_for_model,
                             parse_target, read_targets_csv, with_training_bars)


def test_exact_values_get_default_tolerances():
    t = parse_target("porosity=0.6,k_xx=1.2", tol_porosity=0.02, tol_k=0.15)
    phi, k = t.condition("porosity"), t.condition("k_xx")
    assert (phi.kind, phi.value, phi.low, phi.high) == ("exact", 0.6, pytest.approx(0.58), pytest.approx(0.62))
    assert (k.kind, k.value) == ("exact", 1.2)
    assert (k.low, k.high) == (pytest.approx(1.2 * 0.85), pytest.approx(1.2 * 1.15))


def test_explicit_tolerances_ranges_inequalities_and_optimization():
    t = parse_target("porosity=0.5+-0.01;k_xx=2+-10%;k_yy=0.5:2;k_zz>=1")
    assert t.condition("porosity").interval() == (pytest.approx(0.49), pytest.approx(0.51))
    assert t.condition("k_xx").interval() == (pytest.approx(1.8), pytest.approx(2.2))
    assert t.condition("k_yy").kind == "range" and t.condition("k_yy").interval() == (0.5, 2.0)
    ge = t.condition("k_zz")
    assert ge.kind == "ge" and ge.interval() == (1.0, math.inf)
    assert parse_target("k_xx<0.3").condition("k_xx").interval() == (-math.inf, 0.3)
    assert parse_target("maximize:k_xx").condition("k_xx").kind == "max"
    assert parse_target("min:porosity").condition("porosity").kind == "min"
    assert parse_target("porosity=0.4±0.05").condition("porosity").high == pytest.approx(0.45)


def test_hit_test_uses_the_tolerance_interval():
    t = parse_target("porosity=0.5,k_xx=1.0", tol_porosity=0.02, tol_k=0.15)
    assert t.hit({"porosity": 0.515, "k_xx": 1.14})
    assert not t.hit({"porosity": 0.525, "k_xx": 1.0})
    assert not t.hit({"porosity": 0.5, "k_xx": 0.84})
    assert not t.hit({"porosity": 0.5, "k_xx": float("nan")})
    # maximize: hit when the verified value confirms the prediction within tolerance
    m = parse_target("maximize:k_xx", tol_k=0.15)
    assert m.hit({"k_xx": 2.2}, {"k_xx": 2.0}) and not m.hit({"k_xx": 1.5}, {"k_xx": 2.0})


def test_maximize_and_minimize_hit_means_beating_the_training_set():
    y = np.array([[0.5, 0.0], [0.6, 1.5], [0.7, 3.0]])  # (N, P): porosity, k_xx
    t = with_training_bars(parse_target("maximize:k_xx,porosity=0.5:0.8"), y, ["porosity", "k_xx"])
    assert t.optimizes and t.condition("k_xx").low == 3.0 and t.condition("porosity").kind == "range"
    assert t.hit({"k_xx": 3.1, "porosity": 0.6}, {"k_xx": 9.0})  # above the best sample, whatever was predicted
    assert not t.hit({"k_xx": 2.9, "porosity": 0.6}, {"k_xx": 2.9})  # confirmed but not better than training
    m = with_training_bars(parse_target("minimize:k_xx"), y, ["porosity", "k_xx"])
    assert m.condition("k_xx").high == 0.0 and not m.hit({"k_xx": 0.0}) and m.hit({"k_xx": -1e-9})
    assert not parse_target("k_xx=1").optimizes


def test_physical_units_convert_with_voxel_size():
    vs = 2e-6  # m
    (t,) = build_targets(["porosity=0.5,k_xx=4e-12"], units="physical", voxel_size=vs)
    assert t.condition("k_xx").value == pytest.approx(4e-12 / vs**2)  # = 1 voxel^2
    assert t.condition("porosity").value == 0.5  # porosity has no unit
    with pytest.raises(TargetError, match="voxel_size"):
        build_targets(["k_xx=1e-12"], units="physical", voxel_size=None)


def test_unknown_property_names_it_and_lists_the_known_ones():
    with pytest.raises(TargetError) as e:
        parse_target("porosity=0.5,tortuosity=2")
    msg = str(e.value)
    assert "'tortuosity'" in msg and all(p in msg for p in KNOWN_PROPERTIES)
    (t,) = build_targets(["k_xy=0.1"])
    with pytest.raises(TargetError, match="does not predict 'k_xy'.*porosity, k_xx"):
        check_targets_for_model([t], ["porosity", "k_xx", "k_yy", "k_zz"])


@pytest.mark.parametrize("bad", ["porosity", "porosity=abc", "k_xx=2:1", "porosity=0.5,porosity=0.6",
                                 "k_xx=-1", ""])
def test_malformed_targets_raise(bad):
    with pytest.raises(TargetError):
        parse_target(bad)


def test_csv_batches_by_spec_or_by_property_columns(tmp_path):
    a = tmp_path / "a.csv"
    a.write_text("target_id,spec\nlow,\"porosity=0.3,k_xx=0.1\"\nhigh,porosity=0.7\n")
    ts = read_targets_csv(a)
    assert [t.target_id for t in ts] == ["low", "high"] and ts[0].condition("k_xx").value == 0.1
    b = tmp_path / "b.csv"
    b.write_text("porosity,k_xx\n0.4,>=2\n0.5+-0.01,\n")
    ts = build_targets(["porosity=0.6"], csv=str(b))
    assert [t.target_id for t in ts] == ["t0", "t1", "t2"]
    assert ts[1].condition("k_xx").kind == "ge" and ts[2].properties == ["porosity"]
    c = tmp_path / "c.csv"
    c.write_text("porosity,permittivity\n0.4,2\n")
    with pytest.raises(TargetError, match="permittivity"):
        read_targets_csv(c)
    d = tmp_path / "d.csv"
    d.write_text("spec\nporosity=0.4\nk_xx=oops\n")
    with pytest.raises(TargetError, match=r"d.csv, row 3"):
        read_targets_csv(d)


def test_shipped_2d_design_config_loads():
    from pathlib import Path

    from inverse.config import load_design_config

    cfg = load_design_config(Path(__file__).resolve().parents[2] / "configs" / "inverse_2d.yaml")
    assert cfg.morphology_band == [0.75, 1.33] and cfg.max_island == 0 and cfg.property_model == "solver"
    with pytest.raises(ValueError, match="morphology_band"):
        load_design_config(None, morphology_band=[1.2, 1.5])


def test_free_porosity_goal_stays_in_the_given_range():
    from inverse.delivered import porosity_goal

    prob = np.full((4, 4), 0.5)
    t = parse_target("maximize:k_xx")
    assert porosity_goal("target", t, {"porosity": 0.9}, prob, (0.4, 0.74)) == 0.74
    assert porosity_goal("target", t, {"porosity": 0.9}, prob) == 0.9
