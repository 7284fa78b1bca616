"""Crontab schedules for periodic jobs, readable by people and by code.

``cron("*/5 * * * *")`` or ``cron(minute="0", hour="3")`` builds a
:class:`Cron`. Huey calls it once a minute to ask "run now?", as it calls its
own ``huey.crontab(...)``; unlike Huey's, a ``Cron`` can also say when it runs
next and describe itself in words, which the monitor and the jobs API show.

croniter reads the fields, answers "due now?" and finds the next run. Left
here: the words, and keeping the meaning Huey gives a line where croniter's
differs, so that a schedule written for ``huey.crontab`` runs at the same times:

* the day of the month and the day of the week must *both* match (croniter's
  ``day_or=False``), not either one as in classic cron;
* some ranges are handed to croniter as plain lists (see :func:`_as_listed`).

Syntax of a field: ``*``, a number, ``a-b``, ``a-b/step``, ``*/step``,
``a/step``, or a comma-separated list of those; months and days of the week
also by name (``jan``, ``mon-fri``). Days of the week run from 0 (Sunday) to 6
(Saturday); 7 is Sunday too. A range may wrap (``22-2``). croniter's
extensions that the words cannot say (``L``, ``W``, ``#``, ``H``, a seconds or
year field) are refused.

Times are UTC: the kit's Huey runs with ``utc=True``.
"""

import datetime
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from croniter import CroniterBadDateError, CroniterError, croniter

FIELDS = ("minute", "hour", "day", "month", "day_of_week")
WEEKDAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip

# Letters only name months and weekdays; elsewhere they are croniter's L, W, H.
_SYNTAX = {"minute": r"[\d*,/-]+", "hour": r"[\d*,/-]+", "day": r"[\d*,/?-]+"}
_RANGE = re.compile(r"(\w+)-(\w+)(?:/(\d+))?")


def _croniter_line(fields: dict[str, str]) -> str:
    return " ".join(
        ",".join(_as_listed(index, piece) for piece in fields[name].split(","))
        for index, name in enumerate(FIELDS)
    )


def _as_listed(index: int, piece: str) -> str:
    """A range croniter misreads, as the list of values Huey reads in it.

    croniter reads equal ends (``5-5``) as the whole field; and croniter 7
    drops or shifts the value after the wrap in a stepped range that wraps:
    ``22-2/3`` should be hours 22 and 1 (pallets-eco/croniter#268). Anything
    else, including what is wrong, is left for croniter to read or refuse.
    """
    match = _RANGE.fullmatch(piece)
    if not match or (match[3] is not None and int(match[3]) == 0):
        return piece
    names = croniter.ALPHACONV[index]
    try:
        low, high = (int(names.get(end.lower(), end)) for end in match.group(1, 2))
    except ValueError:
        return piece
    if index == FIELDS.index("day_of_week") and low == 7:  # Sunday: 7-2 is 0-2
        low, high = 0, high % 7
    if low == high:
        return str(low)
    first, last = croniter.RANGES[index]
    if not first <= high < low <= last:
        return piece
    values = [*range(low, last + 1), *range(first, high + 1)][:: int(match[3] or 1)]
    return ",".join(map(str, values))


def _expand(name: str, text: str) -> frozenset[int]:
    """The values one field matches; a ValueError naming the field if it is wrong.

    Each field is expanded alone (the others ``*``) so that the error says
    which field is at fault, and so that the words have every field's values.
    """
    if not re.fullmatch(_SYNTAX.get(name, r"\S+"), text):
        raise ValueError(f"{name}: {text!r} is not valid crontab syntax")
    index = FIELDS.index(name)
    line = _croniter_line({other: "*" for other in FIELDS} | {name: text})
    try:
        expanded, nth_weekdays = croniter.expand(line)
    except CroniterError as exc:
        raise ValueError(f"{name}: {text!r} is not valid crontab syntax ({exc})") from None
    if nth_weekdays:
        raise ValueError(f"{name}: {text!r}: L and # are not supported, list the days")
    values = expanded[index]
    if values == ["*"]:
        low, high = croniter.RANGES[index]
        return frozenset(range(low, high + 1))
    return frozenset(int(value) for value in values)


def _naive_utc(when: datetime.datetime) -> datetime.datetime:
    """Huey (``utc=True``) passes naive UTC; an aware datetime is converted to that."""
    if when.tzinfo is None:
        return when
    return when.astimezone(datetime.UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class Cron:
    """A crontab schedule; call it with a datetime to ask whether it is due."""

    minute: str = "*"
    hour: str = "*"
    day: str = "*"
    month: str = "*"
    day_of_week: str = "*"
    _sets: dict[str, frozenset[int]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        sets = {name: _expand(name, str(getattr(self, name))) for name in FIELDS}
        object.__setattr__(self, "_sets", sets)
        # Valid fields can still name no date (the 30th of February): refuse a
        # job that would never run rather than list it with no next run.
        try:
            croniter.expand(self._line, strict=True)
        except CroniterError as exc:
            raise ValueError(f"{self.expression!r} never runs: {exc}") from None

    def __call__(self, when: datetime.datetime) -> bool:
        """Huey's ``validate_datetime``: is ``when`` (UTC) in a minute to run in?"""
        return bool(croniter.match(self._line, _naive_utc(when), day_or=False))

    @property
    def expression(self) -> str:
        return " ".join(str(getattr(self, name)) for name in FIELDS)

    @property
    def _line(self) -> str:
        """The schedule as croniter is given it."""
        return _croniter_line({name: str(getattr(self, name)) for name in FIELDS})

    def values(self, name: str) -> list[int]:
        return sorted(self._sets[name])

    def next_after(self, when: datetime.datetime) -> datetime.datetime | None:
        """The first minute strictly after ``when`` that the schedule matches.

        ``when`` is a naive UTC datetime (or an aware one, converted); the
        answer is naive UTC, or None if croniter finds none (it looks 50 years
        ahead; impossible dates are already refused).
        """
        schedule = croniter(self._line, _naive_utc(when), day_or=False)
        try:
            return schedule.get_next(datetime.datetime)
        except CroniterBadDateError:
            return None

    def describe(self) -> str:
        """The schedule in plain English, such as "every day at 03:00"."""
        words = self._describe_time()
        dates = self._describe_dates()
        return f"{words} {dates}".strip() if dates else words

    def _describe_time(self) -> str:
        minutes, hours = self.values("minute"), self.values("hour")
        all_hours = len(hours) == 24
        if len(minutes) == 60:
            if all_hours:
                return "every minute"
            return f"every minute during {_hours_in_words(hours)}"
        step = _step_from_zero(minutes, 60)
        if step and all_hours:
            return f"every {step} minutes"
        if len(minutes) == 1:
            minute = minutes[0]
            if all_hours:
                return "every hour, on the hour" if minute == 0 else f"every hour at :{minute:02d}"
            hour_step = _step_from_zero(hours, 24)
            if hour_step:
                return f"every {hour_step} hours at :{minute:02d}"
        if len(minutes) * len(hours) <= 6:
            times = ", ".join(f"{h:02d}:{m:02d}" for h in hours for m in minutes)
            return f"at {times}"
        if step:
            return f"every {step} minutes during {_hours_in_words(hours)}"
        return f"at minutes {_compact(minutes)} of {_hours_in_words(hours)}"

    def _describe_dates(self) -> str:
        parts = []
        weekdays, days, months = (
            self.values("day_of_week"),
            self.values("day"),
            self.values("month"),
        )
        if len(days) < 31:
            label = "day" if len(days) == 1 else "days"
            parts.append(f"on {label} {_compact(days)} of the month")
        if len(weekdays) < 7:
            parts.append("on " + _compact(weekdays, WEEKDAYS))
        if len(months) < 12:
            parts.append("in " + _compact(months, MONTHS, offset=1))
        if not parts:
            return "" if self._describe_time().startswith("every") else "every day"
        return ", ".join(parts)


def cron(expression: str | None = None, **fields: str | int) -> Cron:
    """A schedule from a crontab line or from keyword fields.

    ``cron("0 3 * * *")`` and ``cron(minute=0, hour=3)`` are the same schedule:
    every day at 03:00 UTC.
    """
    if expression is not None:
        if fields:
            raise TypeError("give either a crontab line or keyword fields, not both")
        parts = expression.split()
        if len(parts) != 5:
            raise ValueError(f"a crontab line has 5 fields, not {len(parts)}: {expression!r}")
        fields = dict(zip(FIELDS, parts, strict=True))
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise TypeError(f"unknown crontab fields: {', '.join(sorted(unknown))}")
    return Cron(**{name: str(value) for name, value in fields.items()})


def _step_from_zero(values: list[int], size: int) -> int | None:
    """n when ``values`` is exactly 0, n, 2n... (what ``*/n`` gives), else None."""
    if len(values) < 2 or values[0] != 0:
        return None
    step = values[1]
    return step if values == list(range(0, size, step)) else None


def _hours_in_words(hours: list[int]) -> str:
    if len(hours) == 1:
        return f"hour {hours[0]:02d}"
    return f"hours {_compact(hours)}"


def _compact(values: Iterable[int], names: tuple[str, ...] | None = None, offset: int = 0) -> str:
    """1, 2, 3, 5 -> "1-3, 5"; with names, "Monday to Friday"."""

    def label(value: int) -> str:
        return names[value - offset] if names else str(value)

    ordered = sorted(values)
    runs: list[list[int]] = []
    for value in ordered:
        if runs and value == runs[-1][-1] + 1:
            runs[-1].append(value)
        else:
            runs.append([value])
    pieces = []
    for run in runs:
        if len(run) >= 3:
            joiner = " to " if names else "-"
            pieces.append(f"{label(run[0])}{joiner}{label(run[-1])}")
        else:
            pieces.extend(label(value) for value in run)
    return ", ".join(pieces)
