"""Crontab schedules: Huey's crontab meaning (via croniter), next run and words."""

import datetime

import pytest
from huey import crontab
from hypothesis import given, settings
from hypothesis import strategies as st

from acme_jobs.kit.schedules import cron


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
        ("30 9 * * mon-fri", "at 09:30 on Monday to Friday"),
        ("0 9,17 * * *", "at 09:00, 17:00 every day"),
        ("0 0 1 * *", "at 00:00 on day 1 of the month"),
        ("0 12 * 1,7 0", "at 12:00 on Sunday, in January, July"),
        ("0 12 * jan,jul sun", "at 12:00 on Sunday, in January, July"),
        ("*/10 9-17 * * *", "every 10 minutes during hours 9-17"),
        ("* 3 * * *", "every minute during hour 03"),
        ("0 0 * * 5-1", "at 00:00 on Sunday, Monday, Friday, Saturday"),
        ("0 0 * * 7", "at 00:00 on Sunday"),
        ("5-5 * * * *", "every hour at :05"),
        ("0 22-2/3 * * *", "at 01:00, 22:00 every day"),
    ],
)
def test_schedules_are_described_in_words(line, words):
    assert cron(line).describe() == words


def test_keyword_fields_and_a_crontab_line_are_the_same_schedule():
    assert cron(minute=0, hour=3) == cron("0 3 * * *")
    assert cron(minute=0, hour=3).expression == "0 3 * * *"


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("* * * *", "5 fields"),
        ("* * * * * *", "5 fields"),
        ("60 * * * *", "minute: '60'"),
        ("* 24 * * *", "hour: '24'"),
        ("* * 0 * *", "day: '0'"),
        ("* * * 13 *", "month: '13'"),
        ("* * * * 8", "day_of_week: '8'"),
        ("x * * * *", "minute: 'x'"),
        ("*/0 * * * *", "minute: '*/0'"),
        ("* * * foo *", "month: 'foo'"),
        # croniter's extensions that the words cannot say.
        ("0 0 L * *", "day: 'L'"),
        ("0 0 15W * *", "day: '15W'"),
        ("0 0 * * 5#2", "day_of_week: '5#2'"),
        ("0 0 * * 5L", "day_of_week: '5L'"),
        ("H * * * *", "minute: 'H'"),
        # Valid fields, but no such date.
        ("0 0 30 2 *", "never runs"),
    ],
)
def test_invalid_schedules_are_refused_with_the_problem_named(line, problem):
    with pytest.raises(ValueError, match=problem.replace("*", r"\*")):
        cron(line)


def test_a_keyword_field_with_spaces_is_refused():
    with pytest.raises(ValueError, match="minute"):
        cron(minute="1, 2")


def test_unknown_fields_and_a_line_with_fields_are_refused():
    with pytest.raises(TypeError):
        cron(minutes=5)
    with pytest.raises(TypeError):
        cron("* * * * *", minute=5)


@pytest.mark.parametrize(
    ("line", "due", "not_due"),
    [
        ("*/5 * * * *", ["2026-03-01T10:05", "2026-03-01T10:05:59.999"], ["2026-03-01T10:06"]),
        ("0 3 * * *", ["2026-03-01T03:00:30"], ["2026-03-01T04:00:00", "2026-03-01T03:01:00"]),
        # 7 is Sunday, as 0 is; 2026-03-01 is a Sunday.
        ("0 0 * * 7", ["2026-03-01T00:00:00"], ["2026-03-02T00:00:00"]),
        # A range that wraps: Friday to Monday.
        ("0 0 * * 5-1", ["2026-02-27T00:00", "2026-03-02T00:00"], ["2026-03-03T00:00"]),
        ("0 22-2 * * *", ["2026-03-01T23:00", "2026-03-01T01:00"], ["2026-03-01T03:00"]),
        # With a step, counted across the wrap: 22, 01 (croniter 7 alone says 22, 02).
        ("0 22-2/3 * * *", ["2026-03-01T22:00", "2026-03-01T01:00"], ["2026-03-01T02:00"]),
        ("0 0 1 nov-feb/3 *", ["2026-11-01T00:00", "2026-02-01T00:00"], ["2026-01-01T00:00"]),
        # Equal ends name that value alone (croniter alone would read every minute).
        ("5-5 * * * *", ["2026-03-01T10:05:00"], ["2026-03-01T10:06:00"]),
        # Day of the month AND day of the week, as in Huey: Friday the 13th only.
        ("0 0 13 * 5", ["2026-02-13", "2026-03-13"], ["2026-04-13", "2026-02-20"]),
        # */n on days of the week, which Huey's crontab refuses: Sun, Tue, Thu, Sat.
        ("0 0 * * */2", ["2026-03-03T00:00"], ["2026-03-02T00:00"]),
        ("0 0 29 2 *", ["2028-02-29T00:00"], ["2028-03-01T00:00"]),
    ],
)
def test_a_schedule_is_due_in_its_minutes_only(line, due, not_due):
    schedule = cron(line)
    assert all(schedule(at(moment)) for moment in due)
    assert not any(schedule(at(moment)) for moment in not_due)


def test_an_aware_datetime_is_read_in_utc():
    noon_in_paris = datetime.datetime(
        2026, 3, 1, 12, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=1))
    )
    assert cron("0 11 * * *")(noon_in_paris)
    assert not cron("0 12 * * *")(noon_in_paris)


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
        ("0 0 29 2 1", "2026-01-01T00:00:00", "2044-02-29T00:00:00"),  # a Monday 29 February
    ],
)
def test_next_run(line, now, expected):
    assert cron(line).next_after(at(now)) == at(expected)


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
        st.tuples(number, number, st.integers(1, 3)).map(lambda p: f"{p[0]}-{p[1]}/{p[2]}"),
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
def test_a_schedule_huey_accepts_means_what_it_means_to_huey(
    minute, hour, day, month, day_of_week, moment
):
    """Schedules written for Huey's crontab keep their meaning on croniter."""
    fields = {"minute": minute, "hour": hour, "day": day, "month": month}
    fields["day_of_week"] = day_of_week
    huey_check = crontab(**fields, strict=True)
    try:
        schedule = cron(**fields)
    except ValueError as exc:  # only a date that never comes, like 30 February
        assert "never runs" in str(exc)
        return
    assert schedule(moment) == huey_check(moment)


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
