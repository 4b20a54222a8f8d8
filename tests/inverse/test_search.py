"""Latent search: box bounds, equal budgets, determinism, extrapolation flags (small untrained model)."""
import numpy as np
import pytest
import torch

from inverse.delivered import DeliveredObjective
from inverse.design import check_extrapolation, label_ranges
from inverse.objective import Objective, latent_space
from inverse.search import (run_gradient_screened, run_search, seed_latents, select_candidates,
                            trajectory_points)
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


METHODS = ["bo", "bo:gp_minimize", "tpe", "random", "gradient"]  # "bo" = the composite engine


def search(method, *args, **kw):
    m, _, engine = method.partition(":")
    return run_search(m, *args, **kw, **({"bo_engine": engine} if engine else {}))


@pytest.mark.parametrize("bounds", ["quantile", "prior"])
@pytest.mark.parametrize("method", METHODS)
def test_methods_stay_in_the_box_and_share_the_budget(setup, method, bounds):
    model, norm, mu, y = setup
    space = latent_space(mu, bounds=bounds, quantile=0.05, prior_radius=2.0)
    if bounds == "quantile":
        assert np.all(space.lo >= np.quantile(mu, 0.05, axis=0) - 0.1 * (space.hi - space.lo))
        assert space.hi[2] - space.lo[2] < space.hi[0] - space.lo[0]  # the box follows the data
    else:
        assert np.allclose(space.lo, -2.0) and np.allclose(space.hi, 2.0)
    obj = Objective(parse_target("porosity=0.5,k_xx=1.0"), model, norm, space)
    res = search(method, obj, y, n_calls=16, n_initial=6, seed=1, gradient_lr=0.5)
    assert res.n_evals <= 16 and res.info["objective_evals"] == res.n_evals
    assert res.n_evals >= 15  # gradient: 16 // 3 seeds = 5 steps x 3 starts
    assert space.inside(res.z).all()
    assert np.allclose(obj.values(res.z), res.f)  # the recorded objective is the objective of z


@pytest.mark.parametrize("method", METHODS)
def test_same_seed_same_search(setup, method):
    model, norm, mu, y = setup
    space = latent_space(mu)
    runs = []
    for _ in range(2):
        obj = Objective(parse_target("porosity=0.45,k_yy>=0.5"), model, norm, space)
        runs.append(search(method, obj, y, n_calls=12, n_initial=4, seed=7))
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


def test_composite_bo_models_the_properties_and_finds_a_reachable_target(setup):
    """The GPs model the targeted properties; the objective is recomputed from them exactly."""
    model, norm, mu, y = setup
    space = latent_space(mu)
    probe = Objective(parse_target("porosity=0.5"), model, norm, space)
    rng = np.random.default_rng(3)
    z_goal = space.lo + rng.random(space.dim) * (space.hi - space.lo)  # a point inside the box
    p = probe.predict(z_goal[None])[0]
    t = parse_target(f"porosity={p[0]:.6f}+-0.01,k_xx={p[1]:.6g}+-5%")  # reachable by construction
    obj = Objective(t, model, norm, space, manifold_weight=0.0)
    assert obj.target_columns == [0, 1]
    f, pn = obj.evaluate(mu[:4])  # counted; the objective of the properties it returns
    assert obj.n_evals == 4 and np.allclose(f, obj.objective_of(pn, mu[:4])) and np.allclose(f, obj.values(mu[:4]))
    res = run_search("bo", obj, y, n_calls=30, n_initial=6, seed=0)
    assert res.info["bo"] == "composite" and res.n_evals == 30
    f_init = res.f[:6].min()
    assert res.f.min() < f_init  # the model-guided proposals improve on the initial design
    assert obj.predicted_hit(res.z[[int(np.argmin(res.f))]])[0]  # and meet the (predicted) target
    rnd = run_search("random", Objective(t, model, norm, space, manifold_weight=0.0), y, n_calls=30, n_initial=6, seed=0)
    assert res.f.min() <= rnd.f.min()


class HeldObjective(Objective):
    """maximize:k_xx held to a specific-surface band, the shape of a 2D design's objective: the
    recorded objective adds DeliveredObjective's morphology penalty of ln(ratio), and ln(ratio)
    falls as the predicted k rises (a coarser structure conducts more): the band caps k. ``aware``
    False hides the penalty from the acquisition (the composite BO before issue 16's fix)."""

    morphology_penalty_of = DeliveredObjective.morphology_penalty_of

    def __init__(self, *args, aware=True, **kw):
        super().__init__(*args, **kw)
        self._morph, self._morph_weight, self.aware = [(None, 0.75, 1.33)], 100.0, aware
        z = self.space.lo + np.random.default_rng(0).random((2000, self.space.dim)) * (self.space.hi - self.space.lo)
        p = self._norm_pred(z)[:, 1].numpy()
        self._p10, self._p50 = np.quantile(p, 0.1), np.quantile(p, 0.5)  # ratio 1 at p10, 0.75 at the median

    n_morphology = 1

    @property
    def has_morphology(self):
        return self.aware

    def morphology_log_ratios(self, z):  # (B, 1)
        p = self._norm_pred(np.atleast_2d(z))[:, 1].numpy()
        return (np.log(0.75) * (p - self._p10) / (self._p50 - self._p10))[:, None]

    def evaluate(self, z):
        f, p = super().evaluate(z)
        return f + self.morphology_penalty_of(self.morphology_log_ratios(z)), p


def test_composite_bo_acquisition_sees_the_morphology_penalty(setup):
    """With the penalty in its acquisition (a GP on ln ratio) the composite BO proposes structures
    inside the band; blind to it, EI keeps proposing high-k latents the penalty then rejects."""
    model, norm, mu, y = setup
    space = latent_space(mu)
    t = parse_target("maximize:k_xx")
    runs = {}
    for aware in (True, False):
        obj = HeldObjective(t, model, norm, space, manifold_weight=0.0, aware=aware)
        res = run_search("bo", obj, y, n_calls=30, n_initial=6, seed=0)
        assert res.info["acquisition_morphology"] is aware and res.n_evals == 30
        pen = obj.morphology_penalty_of(obj.morphology_log_ratios(res.z))
        assert np.allclose(res.f, obj.distances(res.z) + pen)  # the recorded objective holds the penalty
        runs[aware] = (res, int((pen[6:] > 1.0).sum()))
    (aware, out_aware), (blind, out_blind) = runs[True], runs[False]
    assert out_aware < out_blind and out_aware <= 6  # proposals that leave the band
    assert aware.f.min() <= blind.f.min()


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


def test_trajectory_points_spread_along_each_start():
    idx = trajectory_points(3, 10, 8)  # 3 + 3 + 2 points over three trajectories of 10
    assert list(idx) == [0, 4, 9, 10, 14, 19, 20, 29]
    assert list(trajectory_points(2, 2, 10)) == [0, 1, 2, 3]  # shorter trajectories: all their points
    assert len(trajectory_points(6, 100, 60)) == 60


def test_screened_gradient_spends_n_calls_evaluations_of_the_screen_objective(setup):
    model, norm, mu, y = setup
    space = latent_space(mu)
    drive = Objective(parse_target("porosity=0.5,k_xx=1.0"), model, norm, space, manifold_weight=0.0)
    screen = Objective(parse_target("porosity=0.45,k_xx=2.0"), model, norm, space, manifold_weight=0.0)
    seeds = seed_latents(drive, y, 3)
    res = run_gradient_screened(drive, screen, 12, seeds, steps=40, lr=0.05, seed=0)
    assert res.n_evals == 12 and screen.n_evals == 12  # the screen objective's counted evaluations
    assert res.info["trajectory_points"] == 120 and res.info["gradient_steps"] == 40
    assert np.allclose(res.f, screen.values(res.z))  # f is the screen objective, not the driving one
    assert np.allclose(res.z[[0, 4, 8]], seeds) and space.inside(res.z, atol=1e-9).all()  # each start screened
    # run_search routes gradient through the screen when one is given
    via = run_search("gradient", drive, y, 12, 6, screen=screen, gradient_steps=40)
    assert np.allclose(via.z, res.z) and via.info["objective_evals"] == 12


def test_lookup_ranks_training_samples_by_label_distance(setup):
    model, norm, mu, y = setup
    space = latent_space(mu)
    obj = Objective(parse_target(f"porosity={y[7, 0]},k_xx={y[7, 1]}"), model, norm, space)
    res = run_search("lookup", obj, y, 5, 4)
    assert res.info["train_index"][0] == 7 and res.f[0] == pytest.approx(0.0, abs=1e-12)
    assert np.all(np.diff(res.f) >= 0) and np.allclose(res.z, mu[res.info["train_index"]])
    assert res.n_evals == 5 and res.info["objective_evals"] == 0  # no model call
