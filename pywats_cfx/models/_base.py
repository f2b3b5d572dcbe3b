"""Base model and lenient field types shared by all CFX models.

Field names are the CFX property names, so ``msg.TestedUnits[0].Tests`` reads like the standard. Keys are
matched case-insensitively; unknown keys are kept (``extra="allow"``); a value that cannot be read
(a placeholder ``"string"`` in a number field) becomes None instead of failing the whole message.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, model_validator

from .._json import canonicalize_keys
from .._names import CANONICAL_NAMES, register_names
from .._values import (
    parse_datetime,
    parse_float,
    parse_int,
    parse_resource_state,
    parse_str,
    parse_timespan,
)

__all__ = [
    "Bool",
    "CFXDateTime",
    "CFXList",
    "CFXModel",
    "CFXTimeSpan",
    "Float",
    "Int",
    "ResourceStateCode",
    "Str",
]

T = TypeVar("T")


def _bool_or_none(v: Any) -> bool | None:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    return None


def _list_or_empty(v: Any) -> Any:
    return [] if v is None else v


#: timezone-aware; naive wire values are taken as UTC; unreadable → None
CFXDateTime = Annotated[datetime | None, BeforeValidator(parse_datetime)]
#: .NET TimeSpan text (``"00:29:01.0840472"``, ``"6.00:00:00"``)
CFXTimeSpan = Annotated[timedelta | None, BeforeValidator(parse_timespan)]
#: SEMI E10/E58 code from a number, numeric string, ``"22A0"``/``"22B0"`` or member name
ResourceStateCode = Annotated[int | None, BeforeValidator(parse_resource_state)]
Float = Annotated[float | None, BeforeValidator(parse_float)]
Int = Annotated[int | None, BeforeValidator(parse_int)]
#: text; enums are kept as their member names
Str = Annotated[str | None, BeforeValidator(parse_str)]
Bool = Annotated[bool | None, BeforeValidator(_bool_or_none)]
#: a list where null means empty
CFXList = Annotated[list[T], BeforeValidator(_list_or_empty)]


class CFXModel(BaseModel):
    """Base of every CFX structure and message."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, arbitrary_types_allowed=False)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        # Keep the parser's canonical-name table in step with the models' fields.
        register_names(set(cls.model_fields))

    @model_validator(mode="before")
    @classmethod
    def _canonical_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and not CANONICAL_NAMES.issuperset(data):
            return canonicalize_keys(data)
        return data

    @property
    def cfx_type(self) -> str | None:
        """The ``$type`` discriminator as sent (None for base types)."""
        extra = self.__pydantic_extra__ or {}
        value = extra.get("$type")
        return value if isinstance(value, str) else None
