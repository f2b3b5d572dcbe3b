"""Units of numeric measurements: parse the spellings test equipment uses and convert between them.

CFX gives a value, an expected value and two limits each with its own units (``28300 Ohm`` measured
against ``28.2 kOhm`` expected); WATS has one ``unit`` per measurement. A small table instead of a units
library: test equipment uses a few dozen units, and each report needs them parsed in microseconds.

Spelling rules: surrounding and inner spaces are ignored; ``µ``/``μ`` read as ``u`` and ``Ω`` as ``Ohm``.
SI prefixes are case-sensitive (``mV`` milli, ``MV`` mega) except ``K`` as kilo (``KOhm``); unit names
are case-insensitive (``ohm``, ``OHMS``, ``v``) unless the lower-case spelling names two units (``s``
second / ``S`` siemens, ``h`` hour / ``H`` henry). ``C`` is degrees Celsius, as testers use it, not
coulomb.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["Unit", "convert", "parse_unit"]


@dataclass(frozen=True)
class Unit:
    """A parsed unit: ``value_in_base = value * scale + offset`` in the base unit of `quantity`."""

    quantity: str
    scale: float
    offset: float = 0.0

    def same_as(self, other: Unit) -> bool:
        """Same quantity and same scale: numbers in either need no conversion."""
        return (
            self.quantity == other.quantity
            and math.isclose(self.scale, other.scale, rel_tol=1e-12)
            and math.isclose(self.offset, other.offset, rel_tol=1e-12, abs_tol=1e-12)
        )


_PREFIXES = {
    "f": 1e-15,
    "p": 1e-12,
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "c": 1e-2,
    "k": 1e3,
    "K": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
}

# spelling → (quantity, scale to the base unit, offset, takes SI prefixes)
_Entry = tuple[str, float, float, bool]


def _names(
    quantity: str, scale: float, spellings: str, *, prefixed: bool, offset: float = 0.0
) -> dict[str, _Entry]:
    return {s: (quantity, scale, offset, prefixed) for s in spellings.split()}


_KELVIN_PER_F = 5.0 / 9.0
_UNITS: dict[str, _Entry] = {
    **_names("resistance", 1.0, "Ohm Ohms ohm ohms", prefixed=True),
    **_names("voltage", 1.0, "V volt volts", prefixed=True),
    **_names("current", 1.0, "A amp amps ampere amperes", prefixed=True),
    **_names("power", 1.0, "W watt watts", prefixed=True),
    **_names("frequency", 1.0, "Hz hertz", prefixed=True),
    **_names("capacitance", 1.0, "F farad farads", prefixed=True),
    **_names("inductance", 1.0, "H henry henries henrys", prefixed=True),
    **_names("conductance", 1.0, "S siemens", prefixed=True),
    **_names("time", 1.0, "s sec secs second seconds", prefixed=True),
    **_names("time", 60.0, "min mins minute minutes", prefixed=False),
    **_names("time", 3600.0, "h hr hrs hour hours", prefixed=False),
    **_names("length", 1.0, "m meter meters metre metres", prefixed=True),
    **_names("length", 0.0254, "in inch inches", prefixed=False),
    **_names("length", 0.0000254, "mil mils thou", prefixed=False),
    **_names("mass", 1e-3, "g gram grams", prefixed=True),
    **_names("force", 1.0, "N newton newtons", prefixed=True),
    **_names("energy", 1.0, "J joule joules", prefixed=True),
    **_names("pressure", 1.0, "Pa pascal", prefixed=True),
    **_names("pressure", 1e5, "bar", prefixed=True),
    **_names("temperature", 1.0, "K kelvin", prefixed=True),
    **_names("temperature", 1.0, "degC °C C celsius Cel", prefixed=False, offset=273.15),
    **_names(
        "temperature", _KELVIN_PER_F, "degF °F fahrenheit", prefixed=False, offset=273.15 - 32 * _KELVIN_PER_F
    ),
    **_names("angle", math.pi / 180.0, "deg ° degree degrees", prefixed=False),
    **_names("angle", 1.0, "rad radian radians", prefixed=True),
    **_names("ratio", 0.01, "% percent pct", prefixed=False),
    **_names("ratio", 1e-6, "ppm", prefixed=False),
}


def _folded() -> dict[str, _Entry]:
    """Lower-case spellings naming exactly one unit; one-letter ones only where no other unit shares them."""
    seen: dict[str, set[_Entry]] = {}
    for spelling, entry in _UNITS.items():
        seen.setdefault(spelling.lower(), set()).add(entry)
    return {
        key: next(iter(entries))
        for key, entries in seen.items()
        if len(entries) == 1 and (len(key) > 1 or key in {"v", "a", "w", "f"})
    }


_FOLDED = _folded()
#: area and volume suffixes, longest first ("mm^2" must not be read as "mm^" squared)
_POWERS = {"^2": 2, "^3": 3, "²": 2, "³": 3, "2": 2, "3": 3}


def _clean(text: str) -> str:
    text = "".join(text.split())
    # micro sign, Greek mu; Greek capital omega, ohm sign
    for char, plain in (("\u00b5", "u"), ("\u03bc", "u"), ("\u03a9", "Ohm"), ("\u2126", "Ohm")):
        text = text.replace(char, plain)
    return text


def _plain(text: str) -> tuple[_Entry, float] | None:
    """(entry, prefix factor) of a unit without exponent: exact spelling, prefix + exact, then any case."""
    for table, key in ((_UNITS, text), (_FOLDED, text.lower())):
        if key in table:
            return table[key], 1.0
        if len(text) > 1 and text[0] in _PREFIXES:
            rest = text[1:] if table is _UNITS else text[1:].lower()
            entry = table.get(rest)
            if entry is not None and entry[3]:
                return entry, _PREFIXES[text[0]]
    return None


@lru_cache(maxsize=512)
def parse_unit(text: str | None) -> Unit | None:
    """The unit `text` names, or None when it is empty or not a unit this table knows."""
    if not text:
        return None
    text = _clean(text)
    power = 1
    for suffix, n in _POWERS.items():
        if text.endswith(suffix) and len(text) > len(suffix) and not text[: -len(suffix)][-1].isdigit():
            text, power = text[: -len(suffix)], n
            break
    found = _plain(text)
    if found is None:
        return None
    (quantity, scale, offset, _), factor = found
    if power == 1:
        return Unit(quantity, scale * factor, offset)
    if offset:  # "°C²" is not a unit
        return None
    return Unit(f"{quantity}^{power}", (scale * factor) ** power)


def convert(value: float, source: Unit, target: Unit) -> float:
    """`value` in `source` expressed in `target` (same quantity), to 12 significant digits: 28.4 kOhm is
    28400 Ohm, not 28400.000000000004."""
    if source.quantity != target.quantity:
        raise ValueError(f"cannot convert {source.quantity} to {target.quantity}")
    if source.same_as(target):
        return value
    converted = (value * source.scale + source.offset - target.offset) / target.scale
    return float(f"{converted:.12g}")
