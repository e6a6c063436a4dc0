"""Extreme but valid inputs for the API's time parameters: year 1, year 9999, any zone offset,
huge integers, epoch numbers in every unit. A 500 on any of them means a missing bound."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import strategies as st

# Query parameters that take a time (ISO 8601 or an epoch number), wherever they appear.
TIME_PARAMETERS = frozenset({"start", "end", "since", "until"})
# Body fields that take a time.
TIME_FIELDS = frozenset({"expires_at"})

EDGE_TIMES = (
    "0001-01-01",
    "0001-01-01T00:00:00+14:00",
    "0001-01-01T00:00:00-12:00",
    "9999-12-31",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59.999999-12:00",
    "1969-12-31T23:59:59Z",
    "1970-01-01T00:00:00+14:00",
    "0",
    "-1",
    "1e308",
    "99999999999999999999",  # the largest epoch in nanoseconds
    "100000000000000000000",  # one more: no unit fits
    str(2**63),
    str(10**40),
    "253402300799999",  # 9999-12-31T23:59:59.999Z in ms
)

_offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)


def time_texts() -> st.SearchStrategy[str]:
    """Any valid datetime from year 1 to 9999 (naive or with any offset), or a number."""
    dates = st.datetimes(
        min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999_999)
    )
    return st.one_of(
        st.sampled_from(EDGE_TIMES),
        dates.map(datetime.isoformat),
        st.tuples(dates, _offsets).map(lambda d: d[0].replace(tzinfo=d[1]).isoformat()),
        dates.map(lambda d: d.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")),
        st.integers(min_value=-(2**80), max_value=2**80).map(str),
        st.floats(allow_nan=False, allow_infinity=False).map(repr),
    )


def edge_time_texts() -> st.SearchStrategy[str]:
    """Times within days of the ends of Python's datetime (year 1, year 9999), in any form."""
    near = st.one_of(
        st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(1, 1, 3)),
        st.datetimes(min_value=datetime(9999, 12, 28), max_value=datetime(9999, 12, 31, 23, 59)),
    )
    return st.one_of(
        st.sampled_from(EDGE_TIMES),
        near.map(datetime.isoformat),
        st.tuples(near, _offsets).map(lambda d: d[0].replace(tzinfo=d[1]).isoformat()),
        near.map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")),
    )
