"""Validation of TOML tables into dataclasses: unknown keys and wrong types name the exact key."""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, get_args, get_origin, get_type_hints


class ConfigError(ValueError):
    """An invalid settings value; the message names the key (``plugins.weather.timeout``)."""


def _check(value: Any, hint: Any, where: str) -> Any:
    origin = get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in get_args(hint):
            if option is type(None):
                if value is None:
                    return None
                continue
            try:
                return _check(value, option, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is Literal:
        if value not in get_args(hint):
            choices = ", ".join(repr(c) for c in get_args(hint))
            raise ConfigError(f"{where}: {value!r} is not one of {choices}")
        return value
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table")
        return from_table(hint, value, where)
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        (item,) = get_args(hint)[:1] or (Any,)
        return [_check(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {type(value).__name__}")
        key_hint, value_hint = get_args(hint) or (str, Any)
        return {k: _check(v, value_hint, f"{where}.{k}") for k, v in value.items()}
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint in (str, bool):
        if not isinstance(value, hint):
            raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
        return value
    return value


def from_table(cls: type, table: dict[str, Any] | None, where: str) -> Any:
    """Build dataclass ``cls`` from a TOML table, with its defaults for missing keys.

    After building, a ``validate()`` method on the instance (if any) may raise ``ValueError``;
    its message is reported with ``where`` in front.
    """
    table = table or {}
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown setting (known: {', '.join(sorted(fields))})")
    for name, f in fields.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and name not in table:
            raise ConfigError(f"{where}.{name}: required")
    values = {name: _check(value, hints[name], f"{where}.{name}") for name, value in table.items()}
    try:
        instance = cls(**values)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    validate = getattr(instance, "validate", None)
    if callable(validate):
        try:
            validate()
        except ValueError as exc:
            message = str(exc)
            # "timeout: must be > 0" from validate() reads best as "where.timeout: must be > 0"
            head = message.split(":", 1)[0]
            joiner = "." if head.split("[", 1)[0].split(".", 1)[0] in fields else ": "
            raise ConfigError(f"{where}{joiner}{message}") from None
    return instance
