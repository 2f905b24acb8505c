"""What the PostgreSQL store's modules share: time conversion and the audit row."""

from __future__ import annotations

from datetime import UTC, datetime


def to_pg(value: datetime | None) -> datetime | None:
    """To the database: aware datetimes only (as the SQLite store's to_db)."""
    if value is not None and value.tzinfo is None:
        raise ValueError("naive datetime given to the store")
    return value


def from_pg(value: datetime | None) -> datetime | None:
    """From the database: aware UTC datetimes."""
    return None if value is None else value.astimezone(UTC)


def stamp(value: datetime) -> str:
    """A time as the messages write it (the SQLite store's text form)."""
    from autopost.store.timefmt import to_db

    return to_db(value)


def audit(c, job_id: str, number: int, run_id: str | None, now: datetime, outcome: str,
          decision: str) -> None:
    c.execute(
        "INSERT INTO attempts (job_id, number, run_id, started_at, finished_at, outcome, "
        "decision) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (job_id, number, run_id, now, now, outcome, decision))
