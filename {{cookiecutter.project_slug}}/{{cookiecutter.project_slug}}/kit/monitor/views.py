"""The monitor's pages and actions.

Every page takes its filters from the query string, so any view can be
bookmarked or shared. ``?partial=1`` returns only the page's live part, which
``monitor.js`` fetches again every few seconds. Actions are POST forms: GET
never changes anything.
"""

from typing import Any

from flask import (
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from marshmallow import ValidationError
from werkzeug.wrappers import Response as BaseResponse

from .. import job_ids, queues, registry
from ..history import History, model
from ..queue import AlreadyRetried, QueueUnavailable, UnknownJob, enqueue
from ..state import kit_state
from . import present, security, sessions
from .audit import audit
from .blueprint import bp

# The lists the navigation offers; any status has a list, though.
MAIN_LISTS = (model.RUNNING, model.QUEUED, model.SCHEDULED, model.COMPLETE, model.FAILED)
LABELS = {
    model.QUEUED: "Queued",
    model.SCHEDULED: "Scheduled",
    model.RUNNING: "Running",
    model.RETRYING: "Retrying",
    model.COMPLETE: "Completed",
    model.FAILED: "Failed",
    model.RETRIED: "Retried",
    model.REVOKED: "Revoked",
    model.EXPIRED: "Expired",
    model.CANCELLED: "Cancelled",
}
FINAL = tuple(s for s in model.STATUSES if s not in model.ACTIVE)


def history() -> History:
    return kit_state().history


def setting(name: str) -> Any:
    return current_app.config[name]


def clamp(value: str | None, default: int, low: int, high: int) -> int:
    """Read a number from the query string and keep it within bounds."""
    try:
        number = int(value) if value is not None else default
    except ValueError:
        number = default
    return max(low, min(high, number))


def refresh_seconds() -> int:
    """The live-refresh interval, clamped here whatever the page asks for."""
    low, high = setting("MONITOR_REFRESH_MIN"), setting("MONITOR_REFRESH_MAX")
    return clamp(request.args.get("refresh"), setting("MONITOR_REFRESH_SECONDS"), low, high)


# The query parameters the pages read. Links built from the request carry
# these and nothing else: ``url_for`` gives meaning to some names of its own
# (``endpoint``, ``_method``, ``_external``...), and a stranger's query string
# must not reach it.
LINK_PARAMS = ("name", "queue", "q", "cursor", "limit", "refresh")


def render(page: str, partial: str, **context: Any) -> str:
    """The whole page, or just its live part when the script asks for it."""
    kept = {key: value for key in LINK_PARAMS if (value := request.args.get(key))}
    live_args = {**(request.view_args or {}), **kept, "partial": 1}
    context.update(
        live_url=url_for(request.endpoint, **live_args),
        labels=LABELS,
        main_lists=MAIN_LISTS,
        refresh=refresh_seconds(),
        refresh_choices=refresh_choices(),
        now=model.now(),
    )
    template = partial if request.args.get("partial") else page
    return render_template(f"monitor/{template}", **context)


def refresh_choices() -> list[int]:
    low, high = setting("MONITOR_REFRESH_MIN"), setting("MONITOR_REFRESH_MAX")
    return [s for s in (1, 2, 5, 10, 30, 60) if low <= s <= high]


def redacted(value: Any) -> Any:
    """Payloads and results with secret-looking keys masked (MONITOR_REDACT_KEYS)."""
    return present.redact(value, setting("MONITOR_REDACT_KEYS"))


# -- logging in ------------------------------------------------------------------


@bp.route("/login", methods=["GET", "POST"])
def login() -> str | BaseResponse:
    target = security.safe_next(request.args.get("next"), url_for("monitor.overview"))
    if security.access_mode() != "login" or sessions.session_user():
        return redirect(target)
    error = None
    if request.method == "POST":
        username = request.form.get("username", "")
        if security.check_credentials(username, request.form.get("password", "")):
            sessions.log_in(username)
            return redirect(target)
        error = "Wrong username or password."
    status = 401 if error else 200
    return render_template("monitor/login.html", error=error, next=target), status


@bp.post("/logout")
def logout() -> BaseResponse:
    sessions.log_out()
    return redirect(url_for("monitor.login"))


# -- pages -----------------------------------------------------------------------


@bp.get("/")
def overview() -> str:
    data = history().overview()
    workers = history().workers()
    return render(
        "overview.html",
        "_overview.html",
        data=data,
        chart=present.chart(data["per_minute"]),
        workers_alive=sum(1 for w in workers if w["alive"]),
        workers_total=len(workers),
        queue_depths=queue_depths(),
    )


def queue_depths() -> dict[str, int]:
    """How many jobs wait in each named queue (kit/queues.py)."""
    names = queues.known_queues(current_app.config, registry.all_jobs().values())
    sizes = kit_state().backend.queue_sizes(names, scan=1)
    return {name: sizes[name].depth for name in names}


@bp.get("/jobs/<status>")
def job_list(status: str) -> str:
    if status not in model.STATUSES:
        abort(404)
    filters = list_filters(status)
    rows, cursor, total, examined = query_list(status, filters)
    workers = {w["id"]: w for w in history().workers()} if status == model.RUNNING else {}
    return render(
        "jobs.html",
        "_jobs.html",
        status=status,
        rows=rows,
        next_cursor=cursor,
        total=total,
        examined=examined,
        filters=filters,
        workers=workers,
        job_names=sorted(set(registry.all_jobs()) | ({filters["name"]} - {None})),
        queue_names=queues.known_queues(current_app.config, registry.all_jobs().values()),
        job_queues={job.name: job.queue for job in registry.all_jobs().values()},
        counts=history().counts(),
    )


def query_list(status: str, filters: dict[str, Any]) -> tuple[list, Any, int | None, int | None]:
    """One page of a status list: ``(rows, next cursor, total, examined)``.

    A text search (failed jobs only) reads records newest first within a
    budget, so it reports how many it ``examined`` instead of a ``total``.
    """
    if filters["queue"] and not filters["name"] and not filters["q"]:
        return queue_page(status, filters)
    if filters["q"]:
        rows, cursor, examined = history().search_failed(
            filters["q"],
            filters["name"],
            filters["cursor"],
            filters["limit"],
            budget=setting("MONITOR_SEARCH_SCAN_LIMIT"),
        )
        return rows, cursor, None, examined
    rows, cursor, total = history().page(
        status, filters["name"], filters["cursor"], filters["limit"]
    )
    return rows, cursor, total, None


def queue_page(status: str, filters: dict[str, Any]) -> tuple[list, Any, None, int]:
    """A page of the jobs whose job waits in the named queue ``filters["queue"]``.

    Records keep the job name, not the queue: pages are read newest first
    and their rows kept by job name, within MONITOR_SEARCH_SCAN_LIMIT records.
    """
    names = {job.name for job in registry.all_jobs().values() if job.queue == filters["queue"]}
    rows: list = []
    cursor, examined = filters["cursor"], 0
    while len(rows) < filters["limit"] and examined < setting("MONITOR_SEARCH_SCAN_LIMIT"):
        page, cursor, _ = history().page(status, None, cursor, filters["limit"])
        examined += len(page)
        rows += [row for row in page if row["name"] in names]
        if cursor is None:
            break
    return rows, cursor, None, examined


def list_filters(status: str) -> dict[str, Any]:
    """The list's filters from the query string: name, queue, text, page position."""
    name = (request.args.get("name") or "").strip()[:200] or None
    queue = (request.args.get("queue") or "").strip()[:64] or None
    q = (request.args.get("q") or "").strip()[:200] if status == model.FAILED else ""
    size = setting("MONITOR_PAGE_SIZE")
    return {
        "name": name,
        "queue": queue,
        "q": q or None,
        "cursor": request.args.get("cursor") or None,
        "limit": clamp(request.args.get("limit"), size, 1, max(size, 200)),
    }


@bp.get("/find")
def find() -> BaseResponse:
    """Jump to a job by its id."""
    job_id = (request.args.get("id") or "").strip()
    if job_ids.is_job_id(job_id) and history().get(job_id) is not None:
        return redirect(url_for("monitor.job", job_id=job_id))
    if job_id:
        flash(f"No job has the id {job_ids.shown(job_id)}.", "error")
    else:
        flash("Type a job id to find it.", "error")
    return redirect(url_for("monitor.overview"))


@bp.get("/job/<job_id>")
def job(job_id: str) -> str:
    record = history().detail(job_id)
    if record is None:
        abort(404)
    record["payload"] = redacted(record.get("payload"))
    record["result"] = redacted(record.get("result"))
    return render("job.html", "_job.html", job=record, final=FINAL)


@bp.get("/workers")
def workers() -> str:
    return render("workers.html", "_workers.html", workers=history().workers())


# -- actions ---------------------------------------------------------------------


def retry(job_id: str) -> tuple[str | None, str]:
    """Queue a failed job again as a new job linked to it: (new id, message)."""
    record = history().detail(job_id)
    if record is None:
        return None, f"No job has the id {job_id}."
    if record["status"] != model.FAILED:
        return None, f"Only failed jobs can be retried; this one is {record['status']}."
    try:
        new_id = enqueue(
            record["name"], record.get("payload"), retry_of=job_id, queue=record["queue"]
        )
    except UnknownJob:
        return None, f"No job called {record['name']!r} is registered any more."
    except ValidationError as exc:
        return None, f"Its payload no longer passes the job's schema: {exc.messages}"
    except AlreadyRetried:
        return None, "It was retried already."
    except QueueUnavailable as exc:
        return None, f"The queue is unreachable, nothing was queued: {exc}"
    return new_id, f"Queued again as job {new_id}."


@bp.post("/job/<job_id>/retry")
def retry_job(job_id: str) -> BaseResponse:
    new_id, message = retry(job_id)
    if new_id:
        audit("retry", job_id, new_job=new_id)
    flash(message, "ok" if new_id else "error")
    return redirect(url_for("monitor.job", job_id=new_id or job_id))


@bp.post("/job/<job_id>/revoke")
def revoke_job(job_id: str) -> BaseResponse:
    if history().revoke(job_id):
        audit("revoke", job_id)
        flash("Revoked: a worker will drop this job instead of running it.", "ok")
    else:
        flash("Only queued or scheduled jobs can be revoked.", "error")
    return redirect(url_for("monitor.job", job_id=job_id))


@bp.post("/job/<job_id>/delete")
def delete_job(job_id: str) -> BaseResponse:
    record = history().get(job_id)
    if record is not None and history().delete(job_id):
        audit("delete", job_id, name=record["name"])
        flash(f"Deleted the record of job {job_id}.", "ok")
        return redirect(url_for("monitor.job_list", status=record["status"]))
    flash("Only finished jobs can be deleted; revoke a queued job first.", "error")
    return redirect(url_for("monitor.job", job_id=job_id))


def matching_failures() -> tuple[list[str], int, bool]:
    """Ids of the failures the current filter matches, up to the bulk limit.

    Returns the ids, how many match in all (as far as known) and whether
    that number is exact.
    """
    filters = list_filters(model.FAILED)
    limit = setting("MONITOR_BULK_LIMIT")
    if filters["q"]:
        rows, cursor, _ = history().search_failed(
            filters["q"], filters["name"], None, limit, budget=setting("MONITOR_SEARCH_SCAN_LIMIT")
        )
        return [row["id"] for row in rows], len(rows), cursor is None
    rows, _, total = history().page(model.FAILED, filters["name"], None, limit)
    return [row["id"] for row in rows], total, True


@bp.get("/jobs/failed/retry")
def confirm_retry_all() -> str:
    """Say how many jobs a bulk retry will touch before doing it."""
    ids, total, exact = matching_failures()
    return render(
        "confirm.html",
        "confirm.html",
        count=len(ids),
        total=total,
        exact=exact,
        filters=list_filters(model.FAILED),
    )


@bp.post("/jobs/failed/retry")
def retry_all() -> BaseResponse:
    ids, _, _ = matching_failures()
    retried = [new for new, _ in map(retry, ids) if new]
    skipped = len(ids) - len(retried)
    filters = list_filters(model.FAILED)
    audit("retry_all", "failed", count=len(retried), name=filters["name"], q=filters["q"])
    message = f"Queued {len(retried)} failed jobs again."
    if skipped:
        message += f" {skipped} could not be (retried already, or their job changed)."
    flash(message, "ok" if retried else "error")
    return redirect(
        url_for("monitor.job_list", status=model.FAILED, name=filters["name"], q=filters["q"])
    )
