"""Crontab schedules for periodic jobs, readable by people and by code.

``cron("*/5 * * * *")`` or ``cron(minute="0", hour="3")`` builds a
:class:`Cron`. Huey calls it once a minute to ask "run now?", exactly as it
calls its own ``huey.crontab(...)``, and with the same syntax and the same
meaning; unlike Huey's, a ``Cron`` can also say when it runs next and
describe itself in words, which the monitor's periodic jobs page shows.

Syntax of each field: ``*``, a number, ``a-b``, ``a-b/step``, ``*/step``, or
a comma-separated list of those. Days of the week run from 0 (Sunday) to 6
(Saturday); 7 is Sunday too. As in Huey (and unlike classic cron), the day of
the month and the day of the week must *both* match.

Times are UTC: the kit's Huey runs with ``utc=True``.
"""

import datetime
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from huey import crontab

FIELDS = ("minute", "hour", "day", "month", "day_of_week")
RANGES = {
    "minute": range(60),
    "hour": range(24),
    "day": range(1, 32),
    "month": range(1, 13),
    "day_of_week": range(8),
}
_DASH = re.compile(r"(\d+)-(\d+)(?:/(\d+))?")
_EVERY = re.compile(r"\*/(\d+)")

WEEKDAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip

# How far ahead next_after() looks before deciding a schedule never fires
# (29 February on a Monday can be 28 years away).
HORIZON_DAYS = 366 * 28


def parse_field(name: str, text: str) -> frozenset[int]:
    """The values one crontab field matches, as Huey's ``crontab`` reads it."""
    acceptable = RANGES[name]
    values: set[int] = set()
    for piece in str(text).split(","):
        piece = piece.strip()
        if piece == "*":
            values.update(acceptable)
        elif piece.isdigit():
            number = int(piece)
            if number not in acceptable:
                raise ValueError(f"{name}: {number} is out of range")
            values.add(number)
        elif match := _DASH.fullmatch(piece):
            low, high, step = int(match[1]), int(match[2]), int(match[3] or 1)
            if low not in acceptable or high not in acceptable:
                raise ValueError(f"{name}: {piece} is out of range")
            if step < 1:
                raise ValueError(f"{name}: the step in {piece} must be at least 1")
            if low <= high:
                span = list(range(low, high + 1))
            else:  # wraps around, like Huey: 22-2 is 22, 23, 0, 1, 2
                top = 6 if name == "day_of_week" else acceptable[-1]
                span = list(range(low, top + 1)) + list(range(acceptable[0], high + 1))
            values.update(span[::step])
        elif match := _EVERY.fullmatch(piece):
            if name == "day_of_week":
                raise ValueError("day_of_week: */n is not supported")
            step = int(match[1])
            if step < 1:
                raise ValueError(f"{name}: the step in {piece} must be at least 1")
            values.update(acceptable[::step])
        else:
            raise ValueError(f"{name}: {piece!r} is not valid crontab syntax")
    if name == "day_of_week":
        values = {v % 7 for v in values}
    if not values:
        raise ValueError(f"{name}: {text!r} matches nothing")
    return frozenset(values)


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
        sets = {name: parse_field(name, getattr(self, name)) for name in FIELDS}
        object.__setattr__(self, "_sets", sets)
        # Huey's own parser must accept it too, and agree (it is what runs).
        crontab(**{name: str(getattr(self, name)) for name in FIELDS}, strict=True)

    def __call__(self, when: datetime.datetime) -> bool:
        """Huey's ``validate_datetime``: is ``when`` (UTC) a minute to run in?"""
        return (
            when.minute in self._sets["minute"]
            and when.hour in self._sets["hour"]
            and self._day_matches(when.date())
        )

    @property
    def expression(self) -> str:
        return " ".join(str(getattr(self, name)) for name in FIELDS)

    def values(self, name: str) -> list[int]:
        return sorted(self._sets[name])

    def _day_matches(self, day: datetime.date) -> bool:
        return (
            day.month in self._sets["month"]
            and day.day in self._sets["day"]
            and (day.weekday() + 1) % 7 in self._sets["day_of_week"]
        )

    def next_after(self, when: datetime.datetime) -> datetime.datetime | None:
        """The first minute strictly after ``when`` that the schedule matches.

        ``when`` is a naive UTC datetime (or an aware one, converted); the
        answer is naive UTC. None if nothing matches within the horizon
        (say, the 30th of February).
        """
        if when.tzinfo is not None:
            when = when.astimezone(datetime.UTC).replace(tzinfo=None)
        start = when.replace(second=0, microsecond=0) + datetime.timedelta(minutes=1)
        hours, minutes = self.values("hour"), self.values("minute")
        day = start.date()
        for _ in range(HORIZON_DAYS):
            if self._day_matches(day):
                for hour in hours:
                    if day == start.date() and hour < start.hour:
                        continue
                    for minute in minutes:
                        moment = datetime.datetime.combine(day, datetime.time(hour, minute))
                        if moment >= start:
                            return moment
            day += datetime.timedelta(days=1)
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
