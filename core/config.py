"""Flat config dataclasses: one per stage, every field a plain value, unknown keys fail at once.

:class:`FlatConfig` gives a dataclass ``from_dict`` (unknown key -> ValueError naming it and the
source), ``to_dict``, ``replace`` and ``to_json``; :func:`load_config_file` reads a flat YAML (or
JSON) file into one, errors naming the file and the key; :func:`parse_override` reads the
``--set key=value`` of a command line.
"""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import yaml


def unknown_key_error(key: str, valid, source: str | None = None, phrase: str = "Unknown config key",
                      error: type[Exception] = ValueError, detail: str = "") -> Exception:
    """The one wording of an unknown key: ``<source>: <phrase> 'k'<detail>; valid keys: ...``."""
    prefix = f"{source}: " if source else ""
    return error(f"{prefix}{phrase} {key!r}{detail}; valid keys: {', '.join(sorted(valid))}")


_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")  # 1e-5: a string to YAML 1.1 (no dot)


def exponent_floats(value):
    """``value`` as loaded by YAML, with every string in exponent notation without a dot (``1e-5``,
    which YAML 1.1 leaves a string) made a float, in nested mappings and lists too: nobody means
    the string, and as one it failed deep in the solver (``solver: {tol: 1e-5}``)."""
    if isinstance(value, str):
        return float(value) if _FLOAT.fullmatch(value.strip()) else value
    if isinstance(value, dict):
        return {k: exponent_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [exponent_floats(v) for v in value]
    return value


def read_yaml_mapping(path, error: type[Exception] = ValueError, what: str = "config file") -> dict:
    """The mapping of a YAML (or JSON) file; ``error`` naming the file when missing or not a mapping.
    Exponent notation without a dot is read as a float (:func:`exponent_floats`)."""
    path = Path(path)
    if not path.is_file():
        raise (FileNotFoundError if error is ValueError else error)(f"{path}: {what} not found")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise error(f"{path}: a {what} must be a flat mapping of key: value")
    return exponent_floats(data)


def _plain(v, kind: str):
    """``v`` as a plain value of a field annotated ``kind``: numpy scalars unwrapped, sequences as
    lists (of ints for ``list[int]``; a string is left to the config's own validation), integral
    floats of int fields as ints."""
    if hasattr(v, "item") and not isinstance(v, (list, dict, str)):  # numpy scalars
        v = v.item()
    if kind.startswith("list") and v is not None and not isinstance(v, str):
        return [int(x) for x in v] if kind == "list[int]" else list(v)
    if kind.startswith("int") and isinstance(v, float) and v.is_integer():
        return int(v)
    return v


class FlatConfig:
    """Mixin for a flat config dataclass: from_dict (unknown key -> ValueError naming it),
    to_dict, replace, to_json. Values that searchers hand back as numpy scalars or as floats
    of int fields (hyperopt's quniform) are coerced to plain Python values of the field's type."""

    #: the words before the key in an unknown-key error
    UNKNOWN = "Unknown config key"
    #: the exception of every error from_dict / load_config_file raise (a ValueError subclass)
    ERROR: type[ValueError] = ValueError

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def unknown_keys_error(cls, unknown: list[str], valid, source: str | None) -> Exception:
        """The error for the unknown keys of a dict (the first one named)."""
        return unknown_key_error(unknown[0], valid, source, cls.UNKNOWN, cls.ERROR)

    @classmethod
    def from_dict(cls, d: dict, source: str | None = None):
        """Build a config from a flat dict; an unknown key, a missing required field or a bad value
        raises ``ERROR`` naming it (prefixed with ``source``, e.g. the file, when given)."""
        fields = {f.name: str(f.type) for f in dataclasses.fields(cls)}
        unknown = [key for key in d if key not in fields]
        if unknown:
            raise cls.unknown_keys_error(unknown, fields, source)
        prefix = f"{source}: " if source else ""
        for f in dataclasses.fields(cls):
            if f.name not in d and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                what = f" ({f.metadata['help']})" if "help" in f.metadata else ""
                raise cls.ERROR(f"{prefix}{f.name!r}{what} is required")
        try:
            return cls(**{k: _plain(v, fields[k]) for k, v in d.items()})
        except (TypeError, ValueError) as exc:
            if source is None:
                raise
            raise cls.ERROR(f"{source}: {exc}") from None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes):
        """A copy with some fields changed (unknown keys raise, like from_dict)."""
        return type(self).from_dict({**self.to_dict(), **changes}, source="<replace>")

    def to_json(self, path: str | Path) -> None:
        from core.io import atomic_path
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=2))


def load_config_file(cls, path=None, overrides: dict | None = None, skip_none: bool = False,
                     what: str = "config file"):
    """A ``cls`` (a FlatConfig) from a flat YAML/JSON file (None = the defaults) and overrides.

    Errors name the file (``<defaults>`` without one) and the key. ``skip_none``: override values
    that are None (command-line options not given) leave the file's value. ``what``: the file in
    the not-found error.
    """
    data = read_yaml_mapping(path, cls.ERROR, what) if path is not None else {}
    data.update({k: v for k, v in (overrides or {}).items() if not (skip_none and v is None)})
    return cls.from_dict(data, source=str(path) if path is not None else "<defaults>")


def parse_override(text: str) -> tuple[str, object]:
    """``key=value`` from the command line; the value is parsed as YAML (numbers, lists, null),
    and exponent notation without a dot (``1e-5``, which YAML 1.1 leaves a string) as a float."""
    if "=" not in text:
        raise ValueError(f"--set expects key=value, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), exponent_floats(yaml.safe_load(value))


class Check:
    """``bad(name, why)`` of a config's ``validate``: raises ValueError naming the field and its value."""

    def __init__(self, cfg, what: str = "config field"):
        self.cfg, self.what = cfg, what

    def bad(self, name: str, why: str):
        raise ValueError(f"{self.what} {name!r} = {getattr(self.cfg, name)!r}: {why}")

    def one_of(self, name: str, allowed) -> None:
        if getattr(self.cfg, name) not in allowed:
            self.bad(name, f"must be one of {tuple(allowed)}")

    def at_least(self, names, low, why: str | None = None) -> None:
        for name in names:
            if float(getattr(self.cfg, name)) < low:
                self.bad(name, why or f"must be >= {low}")

    def device(self, name: str = "device") -> None:
        value = getattr(self.cfg, name)
        if value not in ("auto", "cpu") and not str(value).startswith("cuda"):
            self.bad(name, "must be 'auto', 'cpu' or 'cuda[:N]'")

    def fractions(self, name: str = "split_fractions") -> None:
        value = getattr(self.cfg, name)
        if len(value) != 3 or abs(sum(value) - 1) > 1e-6:
            self.bad(name, "must be three fractions summing to 1")
