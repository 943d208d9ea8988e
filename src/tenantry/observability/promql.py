"""Names put into PromQL as label values, quoted so they stay values (pure).

Tenant and service names are DNS labels by the time they get here (the repository
loader refuses anything else), but a selector built by string formatting must not
rely on that: ``service="web"} or up{tenant="payments"`` is valid PromQL that reads
another tenant's series. Every generated query and rule quotes its label values with
`label_value`, so a hostile value can at worst match nothing.
"""

from __future__ import annotations

# What a double-quoted PromQL string literal needs escaped: the backslash, the closing
# quote, and the newline, which ends a string unterminated; anything else may stand as
# it is. One pass per character (translate), so no escape is escaped again. The text
# exposition format and Alertmanager's matchers read these three escapes the same way.
_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n"})


def label_value(value: str) -> str:
    """``value`` as a double-quoted PromQL string literal, e.g. ``"a\\"b"`` for ``a"b``."""
    return '"' + value.translate(_ESCAPES) + '"'


def matchers(**labels: str) -> str:
    """``name="value",...`` (the inside of a selector's braces), every value quoted; one
    label gives one Alertmanager matcher."""
    return ",".join(f"{name}={label_value(value)}" for name, value in labels.items())
