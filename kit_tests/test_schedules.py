"""Crontab schedules: the same matches as Huey's crontab, plus next run and words."""

import datetime

import pytest
from huey import crontab
from hypothesis import given, settings
from hypothesis import strategies as st

from acme_jobs.kit.schedules import cron, parse_field

UTC = datetime.UTC


def at(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text)


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("* * * * *", "every minute"),
        ("*/5 * * * *", "every 5 minutes"),
        ("0 * * * *", "every hour, on the hour"),
        ("15 * * * *", "every hour at :15"),
        ("0 */4 * * *", "every 4 hours at :00"),
        ("0 3 * * *", "at 03:00 every day"),
        ("30 9 * * 1-5", "at 09:30 on Monday to Friday"),
        ("0 9,17 * * *", "at 09:00, 17:00 every day"),
        ("0 0 1 * *", "at 00:00 on day 1 of the month"),
        ("0 12 * 1,7 0", "at 12:00 on Sunday, in January, July"),
        ("*/10 9-17 * * *", "every 10 minutes during hours 9-17"),
        ("* 3 * * *", "every minute during hour 03"),
    ],
)
def test_schedules_are_described_in_words(line, words):
    assert cron(line).describe() == words


def test_keyword_fields_and_a_crontab_line_are_the_same_schedule():
    assert cron(minute=0, hour=3) == cron("0 3 * * *")
    assert cron(minute=0, hour=3).expression == "0 3 * * *"


@pytest.mark.parametrize(
    "line", ["* * * *", "60 * * * *", "* 24 * * *", "x * * * *", "*/0 * * * *", "* * * * */2"]
)
def test_invalid_schedules_are_refused(line):
    with pytest.raises(ValueError):
        cron(line)


def test_unknown_fields_are_refused():
    with pytest.raises(TypeError):
        cron(minutes=5)


def test_day_of_week_7_is_sunday_as_in_huey():
    assert parse_field("day_of_week", "7") == {0}
    assert parse_field("day_of_week", "5-1") == {5, 6, 0, 1}


@pytest.mark.parametrize(
    ("line", "now", "expected"),
    [
        ("*/5 * * * *", "2026-03-01T10:02:30", "2026-03-01T10:05:00"),
        ("*/5 * * * *", "2026-03-01T10:05:00", "2026-03-01T10:10:00"),
        ("0 3 * * *", "2026-03-01T03:00:00", "2026-03-02T03:00:00"),
        ("0 3 * * *", "2026-12-31T23:59:00", "2027-01-01T03:00:00"),
        ("30 9 * * 1-5", "2026-11-27T10:00:00", "2026-11-30T09:30:00"),  # Friday -> Monday
        ("0 0 29 2 *", "2026-03-01T00:00:00", "2028-02-29T00:00:00"),
        ("0 0 13 * 5", "2026-01-01T00:00:00", "2026-02-13T00:00:00"),  # Friday the 13th
    ],
)
def test_next_run(line, now, expected):
    assert cron(line).next_after(at(now)) == at(expected)


def test_next_run_of_an_impossible_date_is_none():
    assert cron("0 0 30 2 *").next_after(at("2026-01-01T00:00:00")) is None


def test_next_run_accepts_an_aware_datetime():
    now = datetime.datetime(
        2026, 3, 1, 12, 2, tzinfo=datetime.timezone(datetime.timedelta(hours=2))
    )
    assert cron("*/5 * * * *").next_after(now) == at("2026-03-01T10:05:00")


def field(values: range, step_max: int):
    number = st.integers(values.start, values.stop - 1)
    return st.one_of(
        st.just("*"),
        number.map(str),
        st.tuples(number, number).map(lambda p: f"{p[0]}-{p[1]}"),
        st.tuples(number, number, st.integers(1, step_max)).map(lambda p: f"{p[0]}-{p[1]}/{p[2]}"),
        st.integers(1, step_max).map(lambda n: f"*/{n}"),
        st.lists(number, min_size=1, max_size=4).map(lambda ns: ",".join(map(str, ns))),
    )


def weekday_field():
    number = st.integers(0, 7)
    return st.one_of(
        st.just("*"),
        number.map(str),
        st.tuples(number, number).map(lambda p: f"{p[0]}-{p[1]}"),
        st.lists(number, min_size=1, max_size=3).map(lambda ns: ",".join(map(str, ns))),
    )


moments = st.datetimes(
    min_value=datetime.datetime(2024, 1, 1), max_value=datetime.datetime(2030, 12, 31)
)


@settings(max_examples=300, deadline=None)
@given(
    minute=field(range(60), 30),
    hour=field(range(24), 12),
    day=field(range(1, 32), 10),
    month=field(range(1, 13), 6),
    day_of_week=weekday_field(),
    moment=moments,
)
def test_a_schedule_matches_exactly_when_huey_crontab_does(
    minute, hour, day, month, day_of_week, moment
):
    fields = {"minute": minute, "hour": hour, "day": day, "month": month}
    fields["day_of_week"] = day_of_week
    try:
        huey_check = crontab(**fields, strict=True)
    except ValueError:
        with pytest.raises(ValueError):
            cron(**fields)
        return
    assert cron(**fields)(moment) == huey_check(moment)


@settings(max_examples=100, deadline=None)
@given(minute=field(range(60), 30), hour=field(range(24), 12), moment=moments)
def test_the_next_run_is_the_first_matching_minute(minute, hour, moment):
    schedule = cron(minute=minute, hour=hour)
    found = schedule.next_after(moment)
    assert found is not None and found > moment
    assert schedule(found)
    # No minute in between matches (a daily schedule is at most a day away).
    probe = moment.replace(second=0, microsecond=0) + datetime.timedelta(minutes=1)
    while probe < found:
        assert not schedule(probe)
        probe += datetime.timedelta(minutes=1)
