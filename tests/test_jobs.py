"""Scheduled jobs run directly with a fixed clock: each is idempotent; double fires do nothing."""

from __future__ import annotations

import socket
import threading
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import select

from bot import jobs
from finance.authz import Actor
from finance.billing import BillingEngine, BillingPolicy
from finance.mail import MailError
from finance.models import DunningNotice, EmailOutbox, Invoice, JobRun, Member, PendingAction
from tests.helpers import add_member, build_space, count


class RecordingNotifier:
    def __init__(self) -> None:
        self.posts: list[tuple[str, str]] = []
        self.uploads: list[tuple[str, str, bytes]] = []

    def post(self, channel: str, text: str, blocks: list[dict[str, Any]] | None = None) -> None:
        self.posts.append((channel, text))

    def upload(self, channel: str, filename: str, data: bytes, title: str) -> None:
        self.uploads.append((channel, filename, data))


def at(day: date, hour: int = 12) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


@pytest.fixture
def space(services):
    with services.session() as s:
        built = build_space(s, services.settings.knowledge_path)
        add_member(s, "M-1", "Bluebird Labs", plan_id=built["plans"]["ded"],
                   location_id=built["location"], start=date(2026, 1, 1), price_cents=60_000)
        add_member(s, "M-2", "Priya Shah", plan_id=built["plans"]["hot"],
                   location_id=built["location"], start=date(2026, 1, 1), price_cents=30_000)
        for m in s.execute(select(Member)).scalars():
            m.email = f"{m.code.lower()}@example.com"
    services.settings = services.settings.model_copy(update={"alert_channel": "C-ALERTS"})
    return built


def test_monthly_billing_double_fire_drafts_once_and_asks_for_approval(services, space):
    """Two fires on Dec 1: one set of drafts, one Approve-and-issue message, one job run."""
    notifier = RecordingNotifier()
    first = jobs.job_billing_monthly(services, notifier, at(date(2026, 12, 1), 11))
    second = jobs.job_billing_monthly(services, notifier, at(date(2026, 12, 1), 15))
    assert first["drafts"] == 2 and second == {"skipped": True, "period": "2026-12"}
    with services.session() as s:
        assert count(s, Invoice, period="2026-12") == 2
        assert count(s, PendingAction, tool="issue_invoices") == 1
        assert count(s, JobRun, job_id="billing_monthly") == 1
    assert len(notifier.posts) == 1 and "Approve" not in notifier.posts[0][1]
    assert notifier.posts[0][0] == "C-ALERTS"


def test_concurrent_double_fire_runs_once(services, space):
    """Two schedulers firing the same job at the same moment: one wins, one skips."""
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def fire() -> None:
        try:
            results.append(jobs.job_billing_monthly(services, RecordingNotifier(),
                                                    at(date(2026, 12, 1))))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=fire) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sum(1 for r in results if not r.get("skipped")) == 1
    with services.session() as s:
        assert count(s, Invoice, period="2026-12") == 2


def _issue(services, period: str, on: date) -> None:
    engine = BillingEngine(services.chart, BillingPolicy())
    actor = Actor.system("test")
    with services.session() as s:
        run = engine.run(s, period, actor=actor, dry_run=False)
        engine.approve(s, run.invoice_ids, actor=actor)
        engine.issue(s, run.invoice_ids, actor=actor, on=on)


def test_dunning_queues_once_per_stage_and_keeps_mail_when_smtp_is_down(services, space):
    """+3 days: one reminder per invoice; a rerun adds nothing; SMTP down keeps it pending."""
    _issue(services, "2026-11", date(2026, 11, 1))
    with services.session() as s:
        due = s.execute(select(Invoice.due_date)).scalars().first()
    day = date.fromordinal(due.toordinal() + 3)
    sent: list[tuple[str, str]] = []

    def down(to: str, subject: str, body: str) -> None:
        raise MailError("ConnectionRefusedError: [Errno 111] Connection refused")

    result = jobs.job_dunning(services, RecordingNotifier(), at(day), send=down)
    assert result["queued"] == 2 and result["failed"] == 2 and result["pending"] == 2
    again = jobs.job_dunning(services, RecordingNotifier(), at(day, 18),
                             send=lambda to, subj, body: sent.append((to, subj)))
    assert again["queued"] == 0 and again["sent"] == 2 and again["pending"] == 0
    assert all("Friendly reminder" in subj for _, subj in sent)
    later = jobs.job_dunning(services, RecordingNotifier(),
                             at(date.fromordinal(due.toordinal() + 7)),
                             send=lambda to, subj, body: sent.append((to, subj)))
    assert later["queued"] == 2 and any("Second notice" in subj for _, subj in sent)
    with services.session() as s:
        assert count(s, DunningNotice) == 4 and count(s, EmailOutbox, status="sent") == 4
        attempts = s.execute(select(EmailOutbox.attempts).order_by(EmailOutbox.id)).scalars()
        assert list(attempts)[:2] == [2, 2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_dunning_delivers_through_a_real_smtp_server(services, space):
    """Reminders reach a local SMTP server configured through DESKBOOKS_SMTP_URL."""
    from aiosmtpd.controller import Controller
    from pydantic import SecretStr

    received: list[Any] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
            received.append(envelope)
            return "250 OK"

    port = _free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        services.settings = services.settings.model_copy(update={
            "smtp_url": SecretStr(f"smtp://127.0.0.1:{port}"),
            "mail_from": "billing@space.example"})
        _issue(services, "2026-11", date(2026, 11, 1))
        with services.session() as s:
            due = s.execute(select(Invoice.due_date)).scalars().first()
        result = jobs.job_dunning(services, RecordingNotifier(),
                                  at(date.fromordinal(due.toordinal() + 14)))
    finally:
        controller.stop()
    assert result["sent"] == 2
    assert sorted(e.rcpt_tos[0] for e in received) == ["m-1@example.com", "m-2@example.com"]
    assert b"Final notice" in received[0].content


def test_revenue_recognition_and_backup_jobs_are_idempotent(services, space, tmp_path):
    """A second run on the same day does nothing; the backup lands under the data dir."""
    r1 = jobs.job_revenue_recognition(services, RecordingNotifier(), at(date(2026, 11, 2)))
    r2 = jobs.job_revenue_recognition(services, RecordingNotifier(), at(date(2026, 11, 2)))
    assert r1 == {"posted": 0} and r2 == {"skipped": True}
    b1 = jobs.job_backup(services, RecordingNotifier(), at(date(2026, 11, 29)))
    assert b1["bytes"] > 0
    assert jobs.job_backup(services, RecordingNotifier(), at(date(2026, 11, 29))) == {
        "skipped": True}


def test_a_failed_run_can_be_retried(services, space, monkeypatch):
    """A job that crashed is marked failed; the next fire takes it over and finishes."""
    from finance import receivables

    def boom(*args: Any, **kwargs: Any) -> int:
        raise RuntimeError("database went away")

    monkeypatch.setattr(receivables, "recognize_revenue", boom)
    with pytest.raises(RuntimeError):
        jobs.job_revenue_recognition(services, RecordingNotifier(), at(date(2026, 11, 3)))
    monkeypatch.undo()
    assert jobs.job_revenue_recognition(services, RecordingNotifier(),
                                        at(date(2026, 11, 3))) == {"posted": 0}
    with services.session() as s:
        row = s.execute(select(JobRun).where(JobRun.job_id == "revenue_recognition")).scalar_one()
        assert row.status == "done"


def test_scheduler_persists_jobs_in_the_database(services):
    """Jobs are stored with explicit ids, coalescing, one instance and a grace time."""
    first = jobs.build_scheduler(services, start=False)
    first.start(paused=True)
    try:
        stored = {job.id: job for job in first.get_jobs()}
    finally:
        first.shutdown(wait=False)
    assert set(stored) == set(jobs.JOBS)
    for job_id, job in stored.items():
        assert job.coalesce is True and job.max_instances == 1
        assert job.misfire_grace_time == jobs.SCHEDULE[job_id][1]
        assert job.func is jobs.run_job and job.args == (job_id,)
    second = jobs.build_scheduler(services, start=False)  # a restart replaces, never duplicates
    second.start(paused=True)
    try:
        assert len(second.get_jobs()) == len(jobs.JOBS)
    finally:
        second.shutdown(wait=False)
