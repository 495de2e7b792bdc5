"""Typed, frozen configuration loaded from TOML, with unknown keys as errors (STYLE.md §4).

`build_config` turns a mapping into a (nested) frozen dataclass: each key must name a
field, values are checked against the field's type, and every error names the dotted key.
Stage configs subclass nothing: any ``@dataclass(frozen=True, kw_only=True)`` works, and its
``__post_init__`` does the range checks.
"""

from __future__ import annotations

import dataclasses
import enum
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from bonelesion.errors import ConfigError

__all__ = ["build_config", "read_toml", "config_to_dict", "configs_dir", "shipped_config",
           "check_positive", "check_non_negative", "check_fraction", "check_ordered"]

T = TypeVar("T")


# ---- range checks of config values (each error names the key: ``prefix.name``) ----
def check_positive(prefix: str, **values: float) -> None:
    """Raise `ConfigError` unless every value is > 0."""
    for name, value in values.items():
        if not value > 0:
            raise ConfigError(f"{prefix}.{name}: must be > 0, found {value}.")


def check_non_negative(prefix: str, **values: float) -> None:
    """Raise `ConfigError` unless every value is ≥ 0."""
    for name, value in values.items():
        if not value >= 0:
            raise ConfigError(f"{prefix}.{name}: must be ≥ 0, found {value}.")


def check_fraction(prefix: str, **values: float) -> None:
    """Raise `ConfigError` unless every value is in [0, 1]."""
    for name, value in values.items():
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"{prefix}.{name}: must be in [0, 1], found {value}.")


def check_ordered(prefix: str, low_name: str, low: float, high_name: str, high: float) -> None:
    """Raise `ConfigError` unless ``low < high``."""
    if not low < high:
        raise ConfigError(f"{prefix}.{low_name} ({low}) must be < {prefix}.{high_name} ({high}).")


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file; a syntax error becomes a `ConfigError` naming the file."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(
            f"Config file {path} does not exist. Potential fix: check the path."
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Config file {path} is not valid TOML: {exc}.") from exc


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a table, found {type(value).__name__} {value!r}")
        return build_config(tp, value, prefix=key)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, found {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{key}: expected {len(args)} values, found {len(value)}")
        pairs = enumerate(zip(value, args, strict=True))
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in pairs)
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a table, found {value!r}")
        vt = args[1] if len(args) == 2 else Any
        return types.MappingProxyType({k: _coerce(v, vt, f"{key}.{k}") for k, v in value.items()})
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, found {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, found {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, found {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, found {value!r}")
        return value
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError as exc:
            allowed = ", ".join(repr(m.value) for m in list(tp))
            raise ConfigError(f"{key}: {value!r} is not one of {allowed}") from exc
    return value


def build_config(cls: type[T], data: Mapping[str, Any], *, prefix: str = "") -> T:
    """Build the frozen dataclass ``cls`` from ``data``; unknown keys are errors.

    Raises
    ------
    ConfigError
        On an unknown key, a value of the wrong type, or a failed range check; the message
        names the dotted key (``stages.dwi_adc.b_min_s_per_mm2``).
    """
    if not (dataclasses.is_dataclass(cls) and isinstance(cls, type)):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    dotted = (prefix + ".") if prefix else ""
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{dotted}{unknown[0]}: unknown key (allowed keys: {', '.join(sorted(fields))}). "
            "Potential fix: check the spelling; unknown keys are refused so a typo cannot pass."
        )
    kwargs = {name: _coerce(value, hints[name], f"{dotted}{name}") for name, value in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        if prefix and not str(exc).startswith(prefix):
            raise ConfigError(f"{prefix}.{exc}") from exc
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{prefix or cls.__name__}: {exc}") from exc


def config_to_dict(config: Any) -> Any:
    """Plain JSON-able form of a config dataclass (for reports and hashing)."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {f.name: config_to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, Mapping):
        return {str(k): config_to_dict(v) for k, v in config.items()}
    if isinstance(config, (list, tuple)):
        return [config_to_dict(v) for v in config]
    if isinstance(config, enum.Enum):
        return config.value
    return config


def configs_dir() -> Path:
    """Folder of the shipped configuration files (package data; ``configs/`` in the source).

    ``default.toml`` (measuring stages), ``classifier.toml`` (thresholds with citations) and
    ``qa/*.toml`` (phantom QA specs, regression tolerances), each number with its source.
    """
    return Path(__file__).resolve().parent / "configs"


def shipped_config(name_or_path: str | Path, *, folder: str = "") -> Path:
    """Resolve a configuration file given as a path or as the name of a shipped one.

    ``shipped_config("digital_phantom", folder="qa")`` is the installed
    ``configs/qa/digital_phantom.toml``, so QA recipes work from a wheel as from a checkout.
    An existing path wins over a shipped name.

    Raises
    ------
    ConfigError
        Neither an existing file nor a shipped name; the message lists the shipped names.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    base = configs_dir() / folder
    candidate = base / (path.name if path.suffix == ".toml" else f"{path.name}.toml")
    if str(path) == path.name and candidate.is_file():
        return candidate
    shipped = ", ".join(sorted(p.stem for p in base.glob("*.toml"))) or "none"
    raise ConfigError(
        f"Config file {name_or_path}: neither an existing file nor a shipped configuration "
        f"(shipped in {folder or 'configs'}: {shipped}). Potential fix: give a path to a .toml "
        "file or one of the shipped names."
    )
