"""Kubernetes resource quantities ("500m", "2Gi", "1e3"), parsed the way the API server does.

Pure. We validate quantities before anything is applied so a typo in a tenant
file is reported with its file and field, not as an API error half-way through.
"""

from __future__ import annotations

import re
from decimal import Decimal, DecimalException, InvalidOperation

# The API server's own grammar (k8s.io/apimachinery/pkg/api/resource): a signed
# decimal number, then a binary SI suffix, a decimal SI suffix, or an exponent.
_QUANTITY = re.compile(
    r"^(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$"
)

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}


class QuantityError(ValueError):
    """The text is not a Kubernetes quantity."""


def parse(text: str) -> Decimal:
    """The value of a quantity in base units (cores, bytes, count).

    >>> parse("500m"), parse("2Gi"), parse("1e3")
    (Decimal('0.500'), Decimal('2147483648'), Decimal('1E+3'))
    """
    match = _QUANTITY.match(text.strip()) if isinstance(text, str) else None
    if not match:
        raise QuantityError(
            f"{text!r} is not a Kubernetes quantity (examples: 500m, 2, 1.5, 256Mi, 10Gi)"
        )
    try:
        number = Decimal(match.group("number"))
    except InvalidOperation as e:  # pragma: no cover - the regex admits only decimals
        raise QuantityError(f"{text!r} is not a number") from e
    suffix = match.group("suffix") or ""
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix in _DECIMAL:
        return number * _DECIMAL[suffix]
    try:
        return number * (Decimal(10) ** int(suffix[1:]))
    except (DecimalException, ValueError) as e:
        # 1e99999999 overflows Decimal (and a 5000-digit exponent int()): far beyond
        # any quantity the API server takes, and a typo, not a crash.
        raise QuantityError(
            f"{text!r} is too large or too small for a Kubernetes quantity "
            "(examples: 500m, 2, 1.5, 256Mi, 10Gi)"
        ) from e


def is_quantity(text: str) -> bool:
    """Whether ``text`` parses as a quantity."""
    try:
        parse(text)
    except QuantityError:
        return False
    return True
