"""Dates the federation can speak of: nothing happened in it before it existed."""

from __future__ import annotations

from datetime import date

#: The federation's earliest date. Usage, cut-offs, proposals and allocations all lie on or after
#: it, so an earlier date in a request is a mistake (often a zero read as 1970-01-01).
FEDERATION_START = date(2024, 1, 1)
