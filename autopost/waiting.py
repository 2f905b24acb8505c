"""Why a job has not gone out yet: one reason, the time it ends (where there is one) and
a line for a person (`show JOB`, and "waiting" in `show --json`).

A pending job goes out at the latest of: its own time (scheduled, or a retry's), the end
of the operator's pause of its account, the end of a platform block on it, and the time
its account's full quota window frees a place. The reason given is the one that ends
last; a tie goes to the pause, the block or the quota (a job a run deferred to the free
slot has that slot as its time). An account that needs re-auth, a pause with no end
(until `accounts resume`) and a thread part whose part before is not posted hold the job
with no end until that changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from autopost.models import PAUSED_FOREVER, Account, Job, JobStatus
from autopost.quota import WindowState
from autopost.render import ago, local, utc

# Every reason, for docs/json.md and the tests.
REASONS = ("running", "reconciling", "unknown", "needs_reauth", "paused", "thread",
           "blocked", "over_quota", "scheduled", "retrying", "due")


@dataclass(frozen=True)
class Waiting:
    reason: str
    message: str
    until: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"reason": self.reason, "until": utc(self.until), "message": self.message}


def explain(job: Job, account: Account | None, now: datetime, *,
            hour: WindowState | None = None, day: WindowState | None = None,
            parent: Job | None = None) -> Waiting | None:
    """None once the job is settled (posted, failed, cancelled, missed). `parent` is the
    thread part a later part replies to."""
    status = job.status
    if status == JobStatus.RUNNING:
        until = f" (its lease ends {local(job.lease_expires_at)})" if job.lease_expires_at \
            else ""
        return Waiting("running", f"a run is publishing it now{until}", job.lease_expires_at)
    if status == JobStatus.UNKNOWN:
        if job.next_attempt_at is not None:
            return Waiting("reconciling", "its outcome is unknown; a run asks the platform "
                           f"again at {local(job.next_attempt_at)}", job.next_attempt_at)
        return Waiting("unknown", "its outcome is unknown: check the platform, then "
                       f"'autopost resolve {job.id} --posted URL' or '--not-posted'")
    if status != JobStatus.PENDING:
        return None
    if account is not None and str(account.state) == "needs_reauth":
        why = f": {account.state_reason}" if account.state_reason else ""
        return Waiting("needs_reauth", f"account {account.name} needs re-auth{why} (runs "
                       f"skip it; 'autopost accounts add {account.name} --update' with new "
                       "credentials)")
    paused = account.paused_until if account is not None and account.is_paused(now) \
        else None
    if paused is not None and paused >= PAUSED_FOREVER:
        return Waiting("paused", f"account {account.name} is paused until 'autopost "
                       f"accounts resume {account.name}'")
    if parent is not None and parent.status != JobStatus.POSTED:
        return Waiting("thread", f"part {job.thread_part} of a thread: it goes out once part "
                       f"{parent.thread_part} (job {parent.id}, {parent.status}) is posted")
    due = job.next_attempt_at or job.scheduled_at
    blocked = account.blocked_until if account is not None and account.is_blocked(now) \
        else None
    full = [w for w in (hour, day) if w is not None and w.full_until is not None
            and w.full_until > now]
    quota = max(full, key=lambda w: w.full_until) if full else None
    ends = max([t for t in (due, paused, blocked, quota.full_until if quota else None)
                if t is not None])
    if ends <= now:
        return Waiting("due", f"due since {local(due)}: the next run publishes it", due)
    wait = f"(in {ago((ends - now).total_seconds())})"
    if paused is not None and paused >= ends:
        return Waiting("paused", f"account {account.name} is paused until {local(paused)} "
                       f"{wait}", paused)
    if blocked is not None and blocked >= ends:
        return Waiting("blocked", f"account {account.name} is rate-limited by the platform "
                       f"until {local(blocked)} {wait}", blocked)
    if quota is not None and quota.full_until >= ends:
        window = "hourly" if quota is hour else "daily"
        span = "hour" if quota is hour else "day"
        return Waiting("over_quota", f"over the {window} quota of account {job.account} "
                       f"({quota.used}/{quota.limit} in the last {span}) until "
                       f"{local(quota.full_until)} {wait}: a place frees then",
                       quota.full_until)
    if job.attempts:
        return Waiting("retrying", f"retrying after attempt {job.attempts} of "
                       f"{job.max_attempts}: next at {local(due)} {wait}", due)
    return Waiting("scheduled", f"scheduled for {local(due)} {wait}", due)
