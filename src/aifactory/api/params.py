"""Shared path, query and body parameter types: ids within the columns' range, federation dates.

An id outside ``1..MAX_ID`` or a date before :data:`FEDERATION_START` is refused here with a 422
naming the parameter, so it never reaches a service or the database.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import AfterValidator, BeforeValidator, Field
from pydantic_core import PydanticCustomError

from aifactory.domain.dates import FEDERATION_START

#: The largest id a row can have (the id columns are 32-bit integers on PostgreSQL).
MAX_ID = 2**31 - 1
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_ISO_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}([T ].+)?")
_DATE_HELP = f"a date as YYYY-MM-DD, on or after {FEDERATION_START} (when the federation began)"
_TIME_HELP = f"an ISO 8601 date and time, on or after {FEDERATION_START} (the federation's start)"


def _iso_only(value: Any) -> Any:
    """Only ``YYYY-MM-DD`` text (or a date): no numbers read as seconds since 1970."""
    if isinstance(value, date) or (isinstance(value, str) and _ISO_DATE.fullmatch(value)):
        return value
    raise PydanticCustomError("date_format", "expected a date as YYYY-MM-DD")


def _iso_time_only(value: Any) -> Any:
    """Only ISO 8601 text (or a datetime): no numbers read as seconds since 1970."""
    if isinstance(value, datetime) or (isinstance(value, str) and _ISO_DATETIME.fullmatch(value)):
        return value
    raise PydanticCustomError("datetime_format", "expected an ISO 8601 date and time")


def _not_before_federation(value: date) -> date:
    day = value.date() if isinstance(value, datetime) else value
    if day < FEDERATION_START:
        raise PydanticCustomError(
            "not_before_federation",
            "{value} is before {start}, when the federation began",
            {"value": str(value), "start": str(FEDERATION_START)},
        )
    return value


#: A date in a request: ISO text, on or after the federation's start.
FederationDate = Annotated[
    date,
    BeforeValidator(_iso_only),
    AfterValidator(_not_before_federation),
    Field(description=_DATE_HELP),
]
#: An optional date query parameter (``?start=2025-01-01``).
DateQuery = Annotated[FederationDate | None, Query(description=_DATE_HELP)]
#: A moment in a request: ISO text, on or after the federation's start.
FederationDateTime = Annotated[
    datetime,
    BeforeValidator(_iso_time_only),
    AfterValidator(_not_before_federation),
    Field(description=_TIME_HELP),
]
#: An optional moment as a query parameter (``?since=2025-01-01T00:00:00Z``).
DateTimeQuery = Annotated[FederationDateTime | None, Query(description=_TIME_HELP)]
#: A row id in the path (``/jobs/{job_id}``).
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]
#: An optional row id in the query (``?before=123``).
IdQuery = Annotated[int | None, Query(ge=1, le=MAX_ID)]
