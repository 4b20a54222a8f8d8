"""PVAEConfig: flat, serializable, unknown keys fail at once."""
import dataclasses
import json
from pathlib import Path

import pytest

from models.config import PVAEConfig, load_config, parse_override

ROOT = Path(__file__).resolve().parents[2]


def test_roundtrip_through_json():
    cfg = PVAEConfig(dims=2, input_size=24, channels=[8, 16], latent_dim=4, dataset_size=100)
    again = PVAEConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg


def test_unknown_key_fails_naming_it():
    with pytest.raises(ValueError, match="Unknown config key 'foo'"):
        PVAEConfig.from_dict({"latent_dim": 4, "foo": 1})


def test_bad_value_names_the_field():
    with pytest.raises(ValueError, match="'norm'"):
        PVAEConfig(norm="layer")
    with pytest.raises(ValueError, match="'input_size'"):
        PVAEConfig(input_size=8, channels=[4, 4, 4, 4])


def test_search_space_values_are_coerced():
    import numpy as np
    cfg = PVAEConfig.from_dict({"latent_dim": 8.0, "dataset_size": np.int64(50), "lr": np.float64(1e-3)})
    assert cfg.latent_dim == 8 and isinstance(cfg.latent_dim, int)
    assert cfg.dataset_size == 50 and type(cfg.dataset_size) is int
    assert type(cfg.lr) is float
    json.dumps(cfg.to_dict())


def test_load_yaml_with_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("dims: 2\ninput_size: 16\nchannels: [4, 8]\n")
    cfg = load_config(p, latent_dim=3)
    assert (cfg.dims, cfg.input_size, cfg.channels, cfg.latent_dim) == (2, 16, [4, 8], 3)
    p.write_text("latent: 3\n")
    with pytest.raises(ValueError, match=r"c.yaml: Unknown config key 'latent'"):
        load_config(p)
    assert parse_override("channels=[8, 16]") == ("channels", [8, 16])
    assert parse_override("dataset_size=null") == ("dataset_size", None)
    # exponent notation without a dot is a string to YAML 1.1; a tolerance or lr must be a float
    assert parse_override("tol=1e-5") == ("tol", 1e-5) and parse_override("lr=3E-4") == ("lr", 3e-4)
    assert parse_override("device=cpu") == ("device", "cpu") and parse_override("x=1e5x") == ("x", "1e5x")
    assert parse_override("solver={tol: 1e-5, max_steps: 100}") == ("solver", {"tol": 1e-5, "max_steps": 100})


def test_config_files_read_exponent_notation_without_a_dot_as_floats(tmp_path):
    from core.config import read_yaml_mapping

    p = tmp_path / "c.yaml"
    p.write_text("lr: 3e-4\nsolver: {tol: 1e-5}\nlist: [1e2, 2.5, x1e2]\nname: run1e5\n")
    assert read_yaml_mapping(p) == {"lr": 3e-4, "solver": {"tol": 1e-5}, "list": [100.0, 2.5, "x1e2"],
                                    "name": "run1e5"}
    q = tmp_path / "pvae.yaml"
    q.write_text("lr: 3e-4\n")
    assert load_config(q).lr == 3e-4  # a float field, not the string '3e-4'


@pytest.mark.parametrize("name", ["pvae_smoke.yaml", "pvae_demo.yaml", "pvae_2d.yaml"])
def test_shipped_configs_load(name):
    cfg = load_config(ROOT / "configs" / name)
    assert cfg.epochs >= 1


def _dataset_2d(root):
    import pandas as pd

    from data_pipeline.io import write_properties, write_yaml

    root.mkdir()
    write_yaml(root / "dataset.yaml", {"dims": 2, "shape": [24, 24], "pore": "uint8"})
    write_properties(root, pd.DataFrame({"sample_id": ["a", "b"], "porosity": [0.5, 0.6], "k_xx": [0.1, 0.0],
                                         "k_yy": [0.2, 0.3], "k_xy": [0.0, 0.0], "status": ["ok", "ok"]}))
    return root


def test_train_config_takes_dims_size_and_properties_from_the_dataset(tmp_path):
    from models.config import fit_to_dataset, load_config_for_dataset

    ds = _dataset_2d(tmp_path / "ds")
    cfg = load_config_for_dataset(ROOT / "configs" / "pvae_2d.yaml", ds)
    assert (cfg.dims, cfg.input_size, cfg.properties) == (2, 24, ["porosity", "k_xx", "k_yy"])
    assert cfg.select_metric == "val_score"
    # a value the config fixes is kept when it agrees, and named with the file when it does not
    data, taken = fit_to_dataset({"properties": ["porosity", "k_xx"]}, ds)
    assert data["properties"] == ["porosity", "k_xx"] and set(taken) == {"dims", "input_size"}
    with pytest.raises(ValueError, match=r"cfg.yaml: properties .* name column\(s\) \['k_zz'\] .*2D"):
        fit_to_dataset({"properties": ["porosity", "k_zz"]}, ds, "cfg.yaml")
    with pytest.raises(ValueError, match=r"cfg.yaml: dims = 3 but .*dataset.yaml has dims 2"):
        fit_to_dataset({"dims": 3}, ds, "cfg.yaml")


def test_select_metric_is_checked():
    with pytest.raises(ValueError, match="select_metric"):
        PVAEConfig(select_metric="train_loss")


def test_descriptors_follow_the_properties_once_and_unknown_ones_are_named(tmp_path):
    from models.config import fit_to_dataset

    cfg = PVAEConfig(properties=["porosity", "k_xx"], descriptors=["specific_surface", "euler_density"])
    assert cfg.properties == ["porosity", "k_xx", "specific_surface", "euler_density"]
    assert cfg.labels == ["porosity", "k_xx"]
    again = PVAEConfig.from_dict(json.loads(json.dumps(dataclasses.asdict(cfg))))  # as a checkpoint stores it
    assert again.properties == cfg.properties and again.descriptors == cfg.descriptors
    with pytest.raises(ValueError, match=r"descriptors.*\['anisotropy'\] cannot be learned"):
        PVAEConfig(descriptors=["anisotropy"])
    ds = _dataset_2d(tmp_path / "ds")  # no descriptor column: a descriptor is measured, not read
    data, _ = fit_to_dataset({"properties": ["porosity", "k_xx", "chord_length"]}, ds)
    assert data["properties"] == ["porosity", "k_xx", "chord_length"]
