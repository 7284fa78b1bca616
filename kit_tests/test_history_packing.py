"""Finished records on Redis are packed into one short string (history/redis_codec.py).

The monitor must show a packed record exactly as it showed the hash it came
from, records written before packing existed (hashes) must still read, list,
search, retry and prune, and a packed record must take later changes.
"""

import json
import uuid

import pytest

from acme_jobs.kit.history import model
from test_history_store import build, dispatch, fail_for_good, run_next

# A finished record as the kit wrote it before packing: a hash, times at full
# precision, the timeline as JSON lines (two attempts on two workers, a
# traceback), an API key, retry links and a field this codec has no code for.
LEGACY_FAILED = {
    "name": "explode",
    "status": "failed",
    "payload": json.dumps({"nome": "João", "itens": [1, 2, 3]}, ensure_ascii=False),
    "error": json.dumps({"type": "Boom", "message": 'disk "full"'}),
    "enqueued_at": "1796310161.0518694",
    "state_at": "1796310172.5",
    "started_at": "1796310170.1234567",
    "finished_at": "1796310172.5",
    "duration": "2.3765433",
    "eta": "1796310165.25",
    "attempt": "2",
    "worker": "host-b:22",
    "retry_of": "11111111-2222-4333-8444-555555555555",
    "recovered": "1",
    "queue": "reports",
    "events": model.event_lines(
        [
            model.event("queued", 1796310161.0518694, api_key_name="ops key"),
            model.event("started", 1796310161.2, worker="host-a:11"),
            model.event("worker_lost", 1796310164.0, message="worker stopped", worker="host-a:11"),
            model.event("scheduled", 1796310164.1, eta=1796310165.25),
            model.event("started", 1796310170.1234567, worker="host-b:22"),
            model.event(
                "failed",
                1796310172.5,
                error={
                    "type": "Boom",
                    "message": 'disk "full"',
                    "traceback": 'Traceback (most recent call last):\n  File "x.py"\nBoom',
                },
                duration=2.376543,
            ),
            model.event("note", 1796310173.0, message="seen by ops", by="alice"),
        ]
    ),
}


@pytest.fixture
def history(request, tmp_path):
    return build("redis", request, tmp_path)


def key(history, job_id):
    return f"{history.store.prefix}:job:{job_id}"


def write_legacy(history, fields, job_id=None):
    """Write a record the way the previous version left it: a hash and its indexes."""
    job_id = job_id or str(uuid.uuid4())
    conn, prefix = history.store.conn, history.store.prefix
    conn.hset(key(history, job_id), mapping=fields)
    at = float(fields["state_at"])
    conn.zadd(f"{prefix}:state:{fields['status']}", {job_id: at})
    conn.zadd(f"{prefix}:state:{fields['status']}:{fields['name']}", {job_id: at})
    return job_id


def repack(history, job_id):
    """A write that changes nothing; it packs a finished record, as any write does."""
    change = model.Change(job_id, "", model.now(), only_from=model.STATUSES)
    assert history.store.apply([change])


def assert_same(shown, expected):
    """Equal, times to the microsecond."""
    if isinstance(expected, dict):
        assert shown.keys() == expected.keys()
        for name in expected:
            assert_same(shown[name], expected[name])
    elif isinstance(expected, list | tuple):
        assert len(shown) == len(expected)
        for one, other in zip(shown, expected, strict=True):
            assert_same(one, other)
    elif isinstance(expected, float):
        assert shown == pytest.approx(expected, abs=1e-6)
    else:
        assert shown == expected


def test_a_finished_record_is_packed_into_one_short_string(history):
    conn = history.store.conn
    done = dispatch(history, "greet", {"name": "Ana"})
    waiting = dispatch(history, "greet", {"name": "Bo"})
    run_next(history)

    assert conn.type(key(history, done)) == b"string"
    assert conn.strlen(key(history, done)) < 250
    assert conn.type(key(history, waiting)) == b"hash"  # active records change at every step


def test_a_packed_record_shows_everything_its_hash_showed(history):
    job_id = write_legacy(history, LEGACY_FAILED)
    before = (history.detail(job_id), history.get(job_id), history.page("failed")[0])

    repack(history, job_id)

    assert history.store.conn.type(key(history, job_id)) == b"string"
    after = (history.detail(job_id), history.get(job_id), history.page("failed")[0])
    assert_same(after, before)
    assert after[0]["api_key_name"] == "ops key"
    assert [a["worker"] for a in after[0]["attempts"]] == ["host-a:11", "host-b:22"]


def test_records_written_before_packing_still_read_list_search_and_prune(request, tmp_path):
    history = build("redis", request, tmp_path, HISTORY_FAILED_MAX_COUNT=1)
    old = write_legacy(history, LEGACY_FAILED)

    assert history.detail(old)["attempt"] == 2
    assert [row["id"] for row in history.search_failed("DISK")[0]] == [old]
    assert history.counts("explode")["failed"] == 1

    fail_for_good(history)  # one failure over the limit: the oldest goes

    assert history.get(old) is None
    assert history.counts()["failed"] == 1


def test_a_packed_record_takes_later_changes_and_stays_packed(history):
    conn = history.store.conn
    failed = fail_for_good(history, "disk full")
    assert conn.type(key(history, failed)) == b"string"

    assert history.record_event(failed, "note", "seen by ops", by="alice")
    new_id = dispatch(history, "greet", {"name": "again"}, retry_of=failed)

    record = history.detail(failed)
    assert conn.type(key(history, failed)) == b"string"
    assert (record["status"], record["retried_by"]) == ("retried", new_id)
    assert [e["kind"] for e in record["events"]][-2:] == ["note", "retried"]
    assert record["attempts"][-1]["error"]["message"] == "disk full"
    assert history.delete(failed)
    assert history.get(failed) is None


def test_an_old_record_is_packed_by_its_next_write(history):
    old = write_legacy(history, LEGACY_FAILED)

    new_id = dispatch(history, "greet", {"name": "again"}, retry_of=old)

    assert history.store.conn.type(key(history, old)) == b"string"
    assert history.get(old)["retried_by"] == new_id


@pytest.mark.parametrize("worker", ["host\x1eb:22", ""])
def test_a_record_whose_text_cannot_be_packed_stays_a_hash(history, worker):
    # Packed fields are split on control bytes, which JSON text never holds
    # raw, and an empty worker stands for the timeline's: a record that
    # holds either is left as it is.
    job_id = write_legacy(history, dict(LEGACY_FAILED, worker=worker))
    before = history.detail(job_id)

    repack(history, job_id)

    assert history.store.conn.type(key(history, job_id)) == b"hash"
    assert history.detail(job_id) == before


def test_a_completed_record_reads_the_same_packed_on_every_field(history):
    job_id = dispatch(history, "greet", {"name": "Ana"})
    run_next(history)
    record = history.detail(job_id)

    assert record["status"] == "complete"
    assert record["result"] == {"greeting": "Hello, Ana!"}
    assert record["payload"] == {"name": "Ana"}
    assert record["worker"] == model.worker_id()
    took = record["finished_at"] - record["started_at"]
    assert record["duration"] == pytest.approx(took, abs=2e-6)
    assert record["state_at"] == record["finished_at"]
    assert [e["kind"] for e in record["events"]] == ["queued", "started", "completed"]
    assert record["events"][-1]["at"] == pytest.approx(record["finished_at"], abs=2e-6)
