"""Options read from files and the command line, as the types their dataclasses annotate.

Shared by the training config (:mod:`segcore.training.config`) and the models' options
(:func:`segcore.models.model_options`), so that both read "1e-3" from YAML as a number and refuse the same
things in the same sentence.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from segcore.errors import SegcoreError


def shown(value: Any) -> str:
    """A value as one line of a message: its repr with whitespace runs made single spaces, cut to 60
    characters (a tensor or a long list read from a file would otherwise fill the screen)."""
    text = " ".join(repr(value).split())
    return text if len(text) <= 60 else text[:57] + "..."



def coerce(key: str, value: Any, hint: Any) -> Any:
    """``value`` as the type the option is annotated with, e.g. YAML's string "1e-3" as a float."""
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None and type(None) in allowed:
        return None
    annotated = next(a for a in allowed if a is not type(None))
    kind = typing.get_origin(annotated) or annotated
    if kind is list and typing.get_args(annotated):  # list[int], list[float]: each item, and at least one
        item = typing.get_args(annotated)[0]
        if not isinstance(value, list) or not value:
            raise SegcoreError(f"option {key} must be a list of at least one {item.__name__}, got {shown(value)}.")
        try:
            return [coerce(key, v, item) for v in value]
        except SegcoreError:
            raise SegcoreError(f"option {key} must be a list of {item.__name__} values, got {shown(value)}.") from None
    try:
        if kind is bool and isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
            return value.lower() in ("true", "yes")
        if kind in (int, float) and not isinstance(value, bool) and isinstance(value, (int, float, str)):
            number = float(value)
            if kind is int and not number.is_integer():
                raise ValueError
            return kind(number)
        if isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):  # True is no count
            return value
    except (ValueError, OverflowError):  # text that is no number; an infinite count
        pass
    article = "an" if kind.__name__[0] in "aeiou" else "a"
    raise SegcoreError(f"option {key} must be {article} {kind.__name__}, got {shown(value)}.")
