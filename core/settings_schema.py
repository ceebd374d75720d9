"""Validation of TOML tables into dataclasses: unknown keys, wrong types and out-of-range values name
the exact key and what it expects, never the value (a secret typed into the wrong key must not reach
a log line or ``/healthz``)."""
from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from typing import Any, Literal, get_args, get_origin, get_type_hints


class ConfigError(ValueError):
    """Invalid settings; each message names the key (``plugins.weather.timeout``), never its value.

    ``errors`` holds one line per problem found; ``str()`` joins them with newlines.
    """

    def __init__(self, *errors: str) -> None:
        self.errors = [line for error in errors for line in str(error).splitlines() if line] or ["invalid settings"]
        super().__init__("\n".join(self.errors))


def _type_name(value: Any) -> str:
    """What a TOML value is, for messages that must not show the value itself."""
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "a list", dict: "a table"}
    for kind, name in names.items():
        if type(value) is kind:
            return name
    return "a date or time" if hasattr(value, "isoformat") else type(value).__name__


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
        raise ConfigError(errors[0] if errors else f"{where}: invalid value ({_type_name(value)})")
    if origin is Literal:
        if value not in get_args(hint):
            choices = ", ".join(repr(c) for c in get_args(hint))
            raise ConfigError(f"{where}: expected one of {choices}")
        return value
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table")
        return from_table(hint, value, where)
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {_type_name(value)}")
        (item,) = get_args(hint)[:1] or (Any,)
        return [_check(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {_type_name(value)}")
        key_hint, value_hint = get_args(hint) or (str, Any)
        return {k: _check(v, value_hint, f"{where}.{k}") for k, v in value.items()}
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {_type_name(value)}")
        if not math.isfinite(value):  # TOML allows nan and inf; no setting means either
            raise ConfigError(f"{where}: expected a finite number, got nan or inf")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {_type_name(value)}")
        return value
    if hint in (str, bool):
        if not isinstance(value, hint):
            raise ConfigError(f"{where}: expected {_type_name(hint())}, got {_type_name(value)}")
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
    errors = [f"{where}.{name}: unknown setting (known: {', '.join(sorted(fields))})"
              for name in sorted(set(table) - set(fields))]
    for name, f in fields.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and name not in table:
            errors.append(f"{where}.{name}: required")
    values = {}
    for name, value in table.items():
        if name in fields:
            try:
                values[name] = _check(value, hints[name], f"{where}.{name}")
            except ConfigError as exc:
                errors.extend(exc.errors)
    if errors:  # every key's problem at once, so one edit fixes the file
        raise ConfigError(*errors)
    try:
        instance = cls(**values)
    except TypeError:
        raise ConfigError(f"{where}: does not match its schema") from None
    validate = getattr(instance, "validate", None)
    if callable(validate):
        try:
            validate()
        except ValueError as exc:
            message = str(exc)
            # "timeout: must be > 0" or "timeout must be > 0" from validate() reads best as
            # "where.timeout: must be > 0": the message starts with the key it is about
            head = re.split(r"[\s\[.:]", message, maxsplit=1)[0]
            joiner = "." if head in fields else ": "
            raise ConfigError(f"{where}{joiner}{message}") from None
    return instance
