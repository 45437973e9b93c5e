"""Documented dataclass fields: a config field's help text lives in its metadata.

``x: int = doc(3, "what x does")`` is ``dataclasses.field(default=3, metadata={"help": ...})``;
:func:`field_helps` reads the texts back, so ``msa models show``, the CLI flag help and the docs
describe a setting in the same words as the code, without parsing source text.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any

#: the metadata key that holds a field's help text
HELP_KEY = "help"
#: the metadata key of a field whose value "none" is a choice of its own, not the word for None
LITERAL_NONE_KEY = "literal_none"
#: mutable default types that need a default_factory (each instance gets its own copy)
_MUTABLE_DEFAULTS = (dict, list, set)


def doc(default: Any, help: str, literal_none: bool = False) -> Any:
    """A dataclass field with ``default`` and ``help`` in its metadata (a dict/list/set default is copied
    per instance through ``default_factory``). ``literal_none``: the string "none" given on the command
    line or in YAML stays the string (a value of the field's own, e.g. ``scheduler=none``: no schedule)
    instead of reading as None (the field's "not set")."""
    if not help or not help.strip():
        raise ValueError("doc(): the help text must not be empty")
    meta: dict[str, Any] = {HELP_KEY: help}
    if literal_none:
        meta[LITERAL_NONE_KEY] = True
    if isinstance(default, _MUTABLE_DEFAULTS):
        return dataclasses.field(default_factory=partial(type(default), default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def field_helps(cls: type) -> dict[str, str]:
    """Field name -> help text of dataclass ``cls``, in field order.

    A field a subclass redefines without help keeps the help of the nearest base class that has
    one; fields with no help anywhere are left out.
    """
    out: dict[str, str] = {}
    for f in dataclasses.fields(cls):
        text = f.metadata.get(HELP_KEY)
        if text is None:
            text = next((h for h in (_own_help(base, f.name) for base in cls.__mro__[1:]) if h), None)
        if text:
            out[f.name] = text
    return out


def _own_help(cls: type, name: str) -> str | None:
    """The help of field ``name`` as dataclass ``cls`` declares it (None if absent or not a dataclass)."""
    f = getattr(cls, "__dataclass_fields__", {}).get(name)
    return f.metadata.get(HELP_KEY) if f is not None else None
