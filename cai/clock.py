"""Engine timestamps and age thresholds. Pure functions; dateutil is imported on first use."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from cai import output
from cai.errors import CaiError, ExitCode

# Docker's "never happened" time (FinishedAt of a never-started container). It parses, to a date
# in year 1, so it must be caught by name, not by arithmetic.
ZERO_TIME_PREFIX = "0001-01-01"

_UNIT_SECONDS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60}
# Units once each, largest first: `30d`, `1d12h`, `2w`, `90m`. `D`/`H` as the original allows;
# `M` is refused so that nobody reads it as months.
# ASCII digits only: `\d` and int() would take fullwidth and other Unicode digits.
_AGE_RE = re.compile(r"(?:(?P<w>[0-9]+)[wW])?(?:(?P<d>[0-9]+)[dD])?(?:(?P<h>[0-9]+)[hH])?(?:(?P<m>[0-9]+)m)?")


def is_zero_time(text: str) -> bool:
    return not text or text.startswith(ZERO_TIME_PREFIX)


def parse_rfc3339(text: str) -> datetime:
    """An aware datetime from an RFC 3339 timestamp with any fraction (nanoseconds are cut to
    microseconds) and `Z` or a numeric offset. A timestamp without an offset is taken as UTC,
    since the engine's clock, not this host's zone, is what ages are measured against.
    Raises ValueError for anything that is not a date with a time."""
    from dateutil.parser import isoparse

    if len(text) < 11 or text[10] not in "Tt ":
        raise ValueError(f"not a timestamp: {text!r}")
    parsed = isoparse(text)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


def epoch_seconds(text: str) -> int:
    """Whole seconds since the epoch, the fraction dropped (as the original's `int(ts)`)."""
    return int(parse_rfc3339(text).timestamp())


def parse_age(text: str) -> int:
    """Seconds in an age such as `30d`, `24h`, `2w`, `90m` or `1d12h`; the original's errors."""
    if text == "":
        raise CaiError(ExitCode.ERROR, "--age requires a value")
    match = _AGE_RE.fullmatch(text)
    if match is None or not any(match.groupdict().values()):
        raise CaiError(ExitCode.ERROR, f"Invalid age format: {output.shown(text)} (expected Nd or Nh, e.g., 30d, 7d, 24h)",
                       "Also accepted: Nw (weeks), Nm (minutes) and combinations such as 1d12h")
    return sum(int(value) * _UNIT_SECONDS[unit] for unit, value in match.groupdict().items() if value)


_DURATION_RE = re.compile(r"(?:(?P<w>[0-9]+)w)?(?:(?P<d>[0-9]+)d)?(?:(?P<h>[0-9]+)h)?(?:(?P<m>[0-9]+)m)?(?:(?P<s>[0-9]+)s)?")


def parse_since(text: str, now: float) -> int:
    """Epoch seconds for `--since`: an RFC 3339 time, or a duration back from `now` such as `10m`,
    `2h`, `1d12h` or `90s` (gc's units, plus seconds)."""
    match = _DURATION_RE.fullmatch(text)
    found: int | None = None
    if match is not None and any(match.groupdict().values()):
        units = {**_UNIT_SECONDS, "s": 1}
        found = int(now) - sum(int(value) * units[unit] for unit, value in match.groupdict().items() if value)
    else:
        try:
            found = epoch_seconds(text)
        except ValueError:
            pass
    if found is None or found <= 0:  # the engine takes 0 for "no --since" and refuses less
        raise CaiError(ExitCode.ERROR, f"Invalid --since value: {output.shown(text)}",
                       "Use an RFC 3339 time after 1970 (2026-12-01T10:00:00Z) or a duration such as 10m, 2h or 1d12h")
    return found


def format_uptime(started_at: str, now: datetime) -> str | None:
    """`3d 4h 12m`, `2h 5m` or `45m`; None for Docker's zero time or an unreadable value."""
    if is_zero_time(started_at):
        return None
    try:
        started = parse_rfc3339(started_at)
    except ValueError:
        return None
    minutes = max(0, int((now - started).total_seconds() // 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h {mins}m"
    if hours:
        return f"{hours}h {mins}m"
    return f"{mins}m"


def seconds_since(stamp: str, now: datetime) -> int | None:
    """Whole seconds from an engine timestamp to `now`; None for the zero time or an unreadable one."""
    if is_zero_time(stamp):
        return None
    try:
        return max(0, int((now - parse_rfc3339(stamp)).total_seconds()))
    except ValueError:
        return None


def format_age(seconds: int) -> str:
    """`3d 4h` or `5h`; under an hour is `0h`, as the original prints it."""
    seconds = max(0, seconds)
    days, rest = divmod(seconds, 86400)
    hours = rest // 3600
    return f"{days}d {hours}h" if days > 0 else f"{hours}h"
