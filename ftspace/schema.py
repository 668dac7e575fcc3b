"""The schema machinery: `option()` declares a field with everything a CLI flag, a UI control and a docs row need;
coercion and bounds turn what was typed (a flag, a YAML value, a form field) into the field's type or one line
naming the field and the fix; `--set key=value` parsing. No schema of its own: RunConfig and GenerationSettings
are in ftspace.config, CreateSettings in ftspace.data.create.settings.

>>> from dataclasses import dataclass
>>> @dataclass
... class Knobs:
...     steps: int = option(10, "Steps.", group="training", low=1)
...     def __post_init__(self):
...         coerce_fields(self)
>>> Knobs(steps="20").steps
20
>>> Knobs(steps=0)
Traceback (most recent call last):
...
ftspace.errors.ConfigError: steps = 0 is out of range: use an integer of at least 1.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import field, fields
from typing import Any

import yaml

from ftspace.errors import ConfigError


def option(default, help: str, *, group: str, label: str = "", choices=None, low=None, high=None, advanced=False):
    """A schema field with everything a CLI flag, a UI control and a docs row need. `label` is what the app
    calls it for people ("LoRA rank"); the field name stays the key in YAML, flags and the API."""
    meta = dict(help=help, group=group, label=label, choices=choices, low=low, high=high, advanced=advanced)
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def default_of(f: dataclasses.Field):
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def parse_overrides(pairs) -> dict[str, Any]:
    """`--set key=value` pairs; values are read as YAML scalars (`1e-4`, `true`, `[a, b]`)."""
    out = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {pair!r}: write it as key=value, e.g. --set max_steps=20.")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            out[key.strip()] = raw
    return out


def field_type(f: dataclasses.Field, schema: type) -> type:
    """The declared type of a field of `schema`."""
    return typing.get_type_hints(schema)[f.name]


def coerce_fields(obj):
    """Coerce every field of a schema dataclass to its type and check its bounds (ConfigError names it)."""
    for f in fields(obj):
        value = _coerce(f, getattr(obj, f.name), field_type(f, type(obj)))
        _check_bounds(f, value, field_type(f, type(obj)))
        setattr(obj, f.name, value)


def _coerce(f: dataclasses.Field, value, kind: type):
    name = f.name
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return value.strip().lower() in ("true", "yes", "1", "on")
        raise ConfigError(f"{name} = {value!r} is not a boolean: use true or false.")
    if kind is int:
        if isinstance(value, bool):
            raise ConfigError(f"{name} = {value!r} is not an integer: use a whole number.")
        try:
            as_float = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} = {value!r} is not an integer: use a whole number.") from None
        if as_float != int(as_float):
            raise ConfigError(f"{name} = {value!r} is not an integer: use a whole number.")
        return int(as_float)
    if kind is float:
        if isinstance(value, bool):
            raise ConfigError(f"{name} = {value!r} is not a number.")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} = {value!r} is not a number: use e.g. 2e-4.") from None
    if kind is list:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{name} = {value!r} must be a list of names, e.g. [q_proj, v_proj].")
        return list(value)
    if value is None:
        value = ""
    if not isinstance(value, (str, int, float)):
        raise ConfigError(f"{name} = {value!r} must be text.")
    value = str(value)
    choices = f.metadata.get("choices")
    if choices and value not in choices and value.replace("-", "_") in choices:
        value = value.replace("-", "_")  # `--on hf-jobs` as people type it
    if choices and value not in choices:
        raise ConfigError(f"{name} = {value!r} is not one of {', '.join(choices)}: pick one of those.")
    return value


def _check_bounds(f: dataclasses.Field, value, kind: type):
    low, high = f.metadata.get("low"), f.metadata.get("high")
    if low is None and high is None:
        return
    if (low is not None and value < low) or (high is not None and value > high):
        what = "an integer" if kind is int else "a number"
        if low is not None and high is not None:
            span = f"from {low:g} to {high:g}"
        elif low is not None:
            span = f"of at least {low:g}"
        else:
            span = f"of at most {high:g}"
        raise ConfigError(f"{f.name} = {value!r} is out of range: use {what} {span}.")
