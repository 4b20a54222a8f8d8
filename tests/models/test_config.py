"""PVAEConfig: flat, serializable, unknown keys fail at once."""
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


@pytest.mark.parametrize("name", ["pvae_smoke.yaml", "pvae_demo.yaml"])
def test_shipped_configs_load(name):
    cfg = load_config(ROOT / "configs" / name)
    assert cfg.epochs >= 1
