"""Typed configs validated on load: mappings from YAML become frozen dataclasses, and unknown or
missing keys are errors that name the file and suggest the nearest known key."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

__all__ = ["ConfigError", "from_mapping", "load_yaml", "parse_yaml"]

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or mapping that does not match its typed spec."""


MAX_CONFIG_BYTES = 4 * 2**20  # a config file is a page of settings, not data
MAX_CONFIG_NODES = 200_000  # values after expanding YAML aliases ("billion laughs" stays small on disk)


def parse_yaml(text: str | bytes, where: str) -> Any:
    """Parse untrusted YAML text with `yaml.safe_load` only: object tags (`!!python/...`) are refused, never
    run; non-UTF-8 bytes, files over MAX_CONFIG_BYTES, self-referencing values and alias bombs are
    one-line errors that name `where`."""
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{where}: {len(text)} bytes; config files are capped at {MAX_CONFIG_BYTES} bytes")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(f"{where}: not UTF-8 text (byte {e.start}); save the file as UTF-8") from None
    try:
        data = yaml.safe_load(text)
    except yaml.constructor.ConstructorError as e:
        tag = (getattr(e, "problem", "") or "an unknown tag").strip()
        mark = getattr(e, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{where}{line}: refused {tag}: config files are plain YAML data") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: not valid YAML ({' '.join(str(e).split())})") from None
    _check_size(data, where)
    return data


def _check_size(data: Any, where: str) -> None:
    """Refuse values that refer to themselves or expand (through aliases) beyond MAX_CONFIG_NODES: the
    typed conversion walks the expanded tree. Shared sub-values are counted once per use, in linear time."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()

    def size(v: Any) -> int:
        if not isinstance(v, dict | list):
            return 1
        if id(v) in sizes:
            return sizes[id(v)]
        if id(v) in open_:
            raise ConfigError(f"{where}: a value contains itself (a recursive YAML alias)")
        open_.add(id(v))
        children = [*v.keys(), *v.values()] if isinstance(v, dict) else v
        total = 1
        for c in children:
            total += size(c)
            if total > MAX_CONFIG_NODES:
                raise ConfigError(
                    f"{where}: expands to over {MAX_CONFIG_NODES} values (YAML aliases?); "
                    "config files are capped"
                )
        open_.discard(id(v))
        sizes[id(v)] = total
        return total

    size(data)


def load_yaml(path: Path) -> Any:
    """Parse a YAML file (see `parse_yaml`), naming the file in any error."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    return parse_yaml(path.read_bytes(), str(path))


def _suggest(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (known keys: {', '.join(known)})"


def _same_shape(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if isinstance(value, dict):
        return origin is dict or (isinstance(tp, type) and dataclasses.is_dataclass(tp))
    if isinstance(value, list | tuple):
        return origin in (list, tuple)
    return False


def _convert(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except ConfigError as e:
                errors.append((arg, str(e)))
        # the one alternative of the value's own shape (a mapping for a dataclass, a list for a list) says
        # what is wrong inside it; otherwise none fits
        fits = [e for arg, e in errors if _same_shape(value, arg)]
        if len(errors) == 1 or len(fits) == 1:
            raise ConfigError((fits or [errors[0][1]])[0])
        raise ConfigError(f"{where}: {value!r} matches none of {tp}")
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{where}: {value!r} is not one of {list(typing.get_args(tp))}")
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return from_mapping(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        (arg, *_) = typing.get_args(tp) or (Any,)
        items = [_convert(v, arg, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        k_tp, v_tp = typing.get_args(tp) or (Any, Any)
        return {_convert(k, k_tp, where): _convert(v, v_tp, f"{where}.{k}") for k, v in value.items()}
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
    return value


def from_mapping(cls: type[T], data: Any, where: str) -> T:
    """Build the frozen dataclass `cls` from `data`; `where` (file and key path) prefixes every error."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in data:
        if key not in fields:
            raise ConfigError(f"{where}: unknown key {key!r}{_suggest(str(key), sorted(fields))}")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: missing required key {name!r}")
    obj = cls(**kwargs)
    check = getattr(obj, "check", None)
    if callable(check):
        try:
            check()
        except ValueError as e:
            raise ConfigError(f"{where}: {e}") from e
    return obj
