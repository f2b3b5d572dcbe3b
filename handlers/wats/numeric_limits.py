"""A numeric measurement's expected value and limits in the unit of its value, for one WATS ``unit``.

CFX gives each of value, expected value and limits its own units; WATS shows one unit per measurement and
compares ``value`` with ``lowLimit``/``highLimit`` as plain numbers. Sending ``28300 Ohm`` with limits
``28.0..28.4`` (meant in kOhm) writes a passed measurement a thousand times outside its limits, which
skews yield and statistics. So limits and expected values are converted to the value's unit; where that
is impossible the numbers stay as sent and `NumericLimits.problem` says why, for the report to show.
"""

from __future__ import annotations

from dataclasses import dataclass

from pywats_events.payloads import Measurement

from .measurement_units import Unit, convert, parse_unit

__all__ = ["NumericLimits", "numeric_limits"]


@dataclass(frozen=True)
class NumericLimits:
    """What a WATS numeric measurement shows beside its value."""

    #: the unit of the value and (unless `problem`) of everything below
    unit: str | None
    expected: float | str | bool | None
    low: float | None
    high: float | None
    #: why the numbers are not all in `unit` (they are then as sent), for the report
    problem: str | None = None
    #: short label of the problem for metrics: "quantity", "unknown_unit" or "ambiguous_unit"
    reason: str | None = None


def _text(units: str | None) -> str | None:
    return (units.strip() or None) if isinstance(units, str) else None


def _key(units: str) -> object:
    """Spellings of one unit compare equal ("kOhm", "kΩ"); unknown ones by their text."""
    parsed = parse_unit(units)
    return (parsed.quantity, round(parsed.scale, 15), round(parsed.offset, 9)) if parsed else units


def _limit_unit(own: str | None, limit_side: list[str]) -> tuple[str | None, str | None]:
    """(units, ambiguity) of a minimum/maximum: its own, else the one unit the limit side names."""
    if own is not None:
        return own, None
    distinct = {_key(u): u for u in limit_side}
    if len(distinct) > 1:
        return None, ", ".join(f"'{u}'" for u in distinct.values())
    return next(iter(distinct.values()), None), None


def numeric_limits(m: Measurement) -> NumericLimits:
    """`m`'s expected value and limits in the unit of its value.

    A minimum or maximum without units takes the units the rest of the limit side names (CFX 1.x has no
    limit units: ``ExpectedValueUnits`` then speaks for the limits); an expected value without units is
    in the value's unit. A value without units takes the first unit its limit side names."""
    expected = m.expected_value if isinstance(m.expected_value, float) else None
    expected_units = _text(m.expected_units) if expected is not None else None
    low_own = _text(m.low_limit_units) if m.low_limit is not None else None
    high_own = _text(m.high_limit_units) if m.high_limit is not None else None
    limit_side = [u for u in (expected_units, low_own, high_own) if u is not None]
    low_units, low_ambiguous = _limit_unit(low_own, limit_side) if m.low_limit is not None else (None, None)
    high_units, high_ambiguous = (
        _limit_unit(high_own, limit_side) if m.high_limit is not None else (None, None)
    )
    value_units = _text(m.units)
    target = value_units or next(iter(limit_side), None)
    as_sent = NumericLimits(value_units, m.expected_value, m.low_limit, m.high_limit)

    ambiguous = low_ambiguous or high_ambiguous
    if ambiguous:
        return _problem(
            as_sent,
            "ambiguous_unit",
            f"limits without units beside limits in {ambiguous}; numbers kept as sent",
        )
    if target is None:
        return as_sent
    target_unit = parse_unit(target)
    converted: dict[str, float | None] = {}
    for label, number, units in (
        ("expected value", expected, expected_units),
        ("minimum", m.low_limit, low_units),
        ("maximum", m.high_limit, high_units),
    ):
        if number is None or units is None or units == target:
            converted[label] = number
            continue
        source = parse_unit(units)
        if source is None or target_unit is None:
            unknown = units if source is None else target
            return _problem(
                as_sent,
                "unknown_unit",
                f"{label} in '{units}', value in '{target}': unknown unit '{unknown}'; numbers kept as sent",
            )
        if source.quantity != target_unit.quantity:
            return _problem(
                as_sent,
                "quantity",
                f"{label} in '{units}' is not comparable with the value in '{target}' "
                f"({_quantity(source)} vs {_quantity(target_unit)}); numbers kept as sent",
            )
        converted[label] = convert(number, source, target_unit)
    return NumericLimits(
        target,
        converted["expected value"] if expected is not None else m.expected_value,
        converted["minimum"],
        converted["maximum"],
    )


def _quantity(unit: Unit) -> str:
    return unit.quantity.replace("^2", " squared").replace("^3", " cubed")


def _problem(as_sent: NumericLimits, reason: str, text: str) -> NumericLimits:
    return NumericLimits(
        as_sent.unit, as_sent.expected, as_sent.low, as_sent.high, problem=text, reason=reason
    )
