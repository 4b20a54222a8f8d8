"""Latent search: box bounds, equal budgets, determinism, extrapolation flags (small untrained model)."""
import numpy as np
import pytest
import torch

from inverse.design import check_extrapolation, label_ranges
from inverse.objective import Objective, latent_space
from inverse.search import run_search, seed_latents, select_candidates
from inverse.targets import parse_target
from models.checkpoint import Normalizer
from models.pvae import PVAE

PROPS = ["porosity", "k_xx", "k_yy"]


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = PVAE(dims=2, input_size=8, n_properties=3, channels=[4], latent_dim=3, regressor_depth=1,
                 regressor_width=8).eval()
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(40, 3)) * [1.0, 0.5, 0.1]  # (N, L): one nearly unused dimension
    phi = rng.uniform(0.3, 0.7, 40)
    y = np.stack([phi, 10 ** rng.uniform(-1, 1, 40), 10 ** rng.uniform(-1, 1, 40)], axis=1)  # (N, P)
    norm = Normalizer.fit(PROPS, y)
    return model, norm, mu, y


@pytest.mark.parametrize("bounds", ["quantile", "prior"])
@pytest.mark.parametrize("method", ["bo", "tpe", "random", "gradient"])
def test_methods_stay_in_the_box_and_share_the_budget(setup, method, bounds):
    model, norm, mu, y = setup
    space = latent_space(mu, bounds=bounds, quantile=0.05, prior_radius=2.0)
    if bounds == "quantile":
        assert np.all(space.lo >= np.quantile(mu, 0.05, axis=0) - 0.1 * (space.hi - space.lo))
        assert space.hi[2] - space.lo[2] < space.hi[0] - space.lo[0]  # the box follows the data
    else:
        assert np.allclose(space.lo, -2.0) and np.allclose(space.hi, 2.0)
    obj = Objective(parse_target("porosity=0.5,k_xx=1.0"), model, norm, space)
    res = run_search(method, obj, y, n_calls=16, n_initial=6, seed=1, gradient_lr=0.5)
    assert res.n_evals <= 16 and res.info["objective_evals"] == res.n_evals
    assert res.n_evals >= 15  # gradient: 16 // 3 seeds = 5 steps x 3 starts
    assert space.inside(res.z).all()
    assert np.allclose(obj.values(res.z), res.f)  # the recorded objective is the objective of z


@pytest.mark.parametrize("method", ["bo", "tpe", "random", "gradient"])
def test_same_seed_same_search(setup, method):
    model, norm, mu, y = setup
    space = latent_space(mu)
    runs = []
    for _ in range(2):
        obj = Objective(parse_target("porosity=0.45,k_yy>=0.5"), model, norm, space)
        runs.append(run_search(method, obj, y, n_calls=12, n_initial=4, seed=7))
    assert np.array_equal(runs[0].z, runs[1].z) and np.array_equal(runs[0].f, runs[1].f)


def test_objective_is_zero_at_the_target_and_penalizes_leaving_the_manifold(setup):
    model, norm, mu, y = setup
    space = latent_space(mu, manifold_quantile=0.9)
    z = mu[:5]
    pred = Objective(parse_target("porosity=0.5"), model, norm, space).predict(z)
    t = parse_target(f"porosity={pred[0, 0]:.12f},k_xx={pred[0, 1]:.12g}")
    obj = Objective(t, model, norm, space, manifold_weight=1.0)
    d = obj.distances(z)
    assert d[0] == pytest.approx(0.0, abs=1e-6) and np.all(d[1:] >= 0)
    far = space.mean + 20 * (space.hi - space.lo)
    assert space.mahalanobis(far[None])[0] > space.radius
    assert obj.values(far[None])[0] - obj.distances(far[None])[0] > 1.0  # penalty active
    inside = mu[space.mahalanobis(mu) <= space.radius]
    assert np.allclose(obj.values(inside), obj.distances(inside))  # no penalty on the data


def test_seeds_come_from_the_labels_closest_to_the_target(setup):
    model, norm, mu, y = setup
    space = latent_space(mu, quantile=0.0, box_margin=0.0)
    i = 17
    t = parse_target(f"porosity={y[i, 0]},k_xx={y[i, 1]},k_yy={y[i, 2]}")
    seeds = seed_latents(Objective(t, model, norm, space), y, 3)
    assert np.allclose(seeds[0], mu[i])


def test_candidates_are_best_first_and_distinct():
    z = np.array([[0.0, 0.0], [0.01, 0.0], [1.0, 0.0], [2.0, 0.0], [0.0, 0.02]])
    f = np.array([0.1, 0.05, 0.3, 0.2, 0.0])
    assert select_candidates(z, f, 3, min_dist=0.5) == [4, 3, 2]
    assert select_candidates(z, f, 2, min_dist=0.0) == [4, 1]


def test_targets_outside_the_training_labels_are_flagged(setup):
    _, _, _, y = setup
    ranges = label_ranges(y, PROPS)
    assert check_extrapolation(parse_target("porosity=0.5,k_xx=1.0"), ranges) == []
    notes = check_extrapolation(parse_target("porosity=0.95,k_xx=1.0"), ranges)
    assert len(notes) == 1 and "porosity" in notes[0] and "outside the training labels" in notes[0]
    assert check_extrapolation(parse_target("k_xx>=1000"), ranges)
    assert check_extrapolation(parse_target("k_yy=1e-5:1e-4"), ranges)
    assert check_extrapolation(parse_target("maximize:k_xx"), ranges) == []
