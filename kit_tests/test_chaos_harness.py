"""The chaos harness's own arithmetic: what counts as lost, recovered or a
duplicate, and when the disturbances fall. No processes are started."""

import itertools
import random

from chaos_harness import RECORD_WINDOW, Scenario, plan, tally


def entry(event: str, job_id: str, pid: int, at: float) -> dict:
    return {"event": event, "id": job_id, "attempt": 1, "pid": pid, "at": at, "tag": ""}


def test_a_run_cut_by_a_kill_and_started_again_is_a_recovery_not_a_duplicate():
    ledger = [
        entry("start", "a", 10, 1.0),
        entry("start", "a", 20, 5.0),
        entry("end", "a", 20, 6.0),
    ]

    counted = tally(["a"], ledger, deaths={10: 2.0})

    assert (counted.cut, counted.restarted, counted.recoveries) == (1, 1, [3.0])
    assert counted.duplicates == []
    assert counted.unended == {}


def test_a_second_run_that_no_kill_explains_is_a_duplicate():
    ledger = [entry("start", "a", 10, 1.0), entry("end", "a", 10, 1.5)]
    ledger += [entry("start", "a", 20, 5.0), entry("end", "a", 20, 6.0)]

    counted = tally(["a"], ledger, deaths={10: 1.5 + RECORD_WINDOW + 1})

    assert counted.duplicates == ["a"]
    assert counted.ended_twice == 1


def test_a_kill_just_after_a_run_ended_explains_a_second_run_but_cuts_nothing():
    # The kit records the end just after the function returns: a kill in
    # between leaves a job that must run again.
    ledger = [entry("start", "a", 10, 1.0), entry("end", "a", 10, 1.5)]
    ledger += [entry("start", "a", 20, 5.0), entry("end", "a", 20, 6.0)]

    counted = tally(["a"], ledger, deaths={10: 1.6})

    assert counted.duplicates == []
    assert counted.recoveries == [5.0 - 1.6]
    assert counted.cut == 0


def test_jobs_with_no_end_are_lost_with_what_became_of_their_runs():
    ledger = [entry("start", "cut", 10, 1.0), entry("start", "stuck", 11, 1.0)]

    counted = tally(["cut", "stuck", "never"], ledger, deaths={10: 2.0})

    assert counted.unended == {
        "cut": "started 1x, last run cut by a kill",
        "stuck": "started 1x, no end",
        "never": "never started",
    }
    assert counted.recoveries == []


def test_the_plan_kills_both_ways_and_never_overlaps_redis_disturbances():
    scenario = Scenario(backend="redis", seed=1, kills=15, duration=60, outage=20, freeze=5)

    events = plan(scenario, random.Random(scenario.seed))

    kills = [e.action for e in events if e.action.startswith("kill-")]
    assert len(kills) == 15
    assert {"kill-consumer", "kill-process"} <= set(kills)
    spans = sorted((e.at, e.at + e.pause) for e in events if e.action.startswith("redis-"))
    assert len(spans) == 3
    assert all(end + 5 <= start for (_, end), (start, _) in itertools.pairwise(spans))
    assert all(2 <= e.at <= 60 for e in events)
