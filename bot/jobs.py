"""Scheduled jobs (APScheduler 3) with a persistent job store in the books' own database.

Every job is a module-level function ``job_<name>(services, notifier, now)`` that tests call
directly with a fixed clock, and each is idempotent: a ``job_run`` row per (job id, run key)
is claimed first, so a double fire, a second scheduler or a rerun after a crash changes
nothing. The scheduler stores ``run_job("<name>")`` (an importable reference, as APScheduler's
SQLAlchemy job store needs) which builds services from settings and calls the job.

Schedules (each location's business day is UTC-anchored here; jobs use dates in the
location's time zone where it matters):

| job id | when | what |
|---|---|---|
| billing_monthly | 1st of the month 06:00 | draft the month's invoices; post "Approve and issue N invoices" |
| revenue_recognition | daily 02:00 | recognize deferred revenue whose month has started |
| dunning | daily 09:00 | queue +3/+7/+14 reminders, deliver the e-mail outbox |
| anomaly_scan | daily 07:00 | scan the last 35 days, alert on new findings |
| kpi_digest | Mondays 08:00 | KPIs and the MRR chart to the alert channel |
| backup | Sundays 03:00 | a consistent backup under the data dir |

``coalesce=True`` and ``max_instances=1`` on every job; ``misfire_grace_time`` is one hour for
daily jobs (a server restart at 09:05 still sends the reminders) and six hours for the
monthly run and the weekly jobs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from finance.authz import Actor
from finance.models import JobRun
from finance.services import Services
from finance.types import utcnow

log = logging.getLogger("deskbooks.jobs")

SYSTEM = Actor.system("scheduler")
HOUR = 3600


class Notifier(Protocol):
    """Where jobs report: Slack in production, a recording fake in tests."""

    def post(self, channel: str, text: str, blocks: list[dict[str, Any]] | None = None) -> None:
        ...

    def upload(self, channel: str, filename: str, data: bytes, title: str) -> None:
        ...


@dataclass
class SlackNotifier:
    client: Any  # slack_sdk.WebClient

    def post(self, channel: str, text: str, blocks: list[dict[str, Any]] | None = None) -> None:
        from bot.slack.blocks import escape

        # with blocks the text is the notification fallback: escaped like the blocks
        kwargs: dict[str, Any] = {"channel": channel,
                                  "text": (escape(text) if blocks else text)[:3000]}
        if blocks:
            kwargs["blocks"] = blocks
        self.client.chat_postMessage(**kwargs)

    def upload(self, channel: str, filename: str, data: bytes, title: str) -> None:
        # files.getUploadURLExternal + upload + files.completeUploadExternal
        self.client.files_upload_v2(channel=channel, filename=filename, content=data,
                                    title=title)


class NullNotifier:
    def post(self, channel: str, text: str, blocks: list[dict[str, Any]] | None = None) -> None:
        log.info("no Slack configured; would post to %s: %s", channel, text[:200])

    def upload(self, channel: str, filename: str, data: bytes, title: str) -> None:
        log.info("no Slack configured; would upload %s to %s", filename, channel)


@contextmanager
def claim(services: Services, job_id: str, run_key: str) -> Iterator[bool]:
    """Yield True when this process owns (job_id, run_key); False when it already ran."""
    try:
        with services.session() as session:
            session.add(JobRun(job_id=job_id, run_key=run_key, started_at=utcnow()))
    except IntegrityError:
        with services.session() as session:
            row = session.execute(select(JobRun).where(
                JobRun.job_id == job_id, JobRun.run_key == run_key)).scalar_one()
            if row.status != "failed":
                yield False
                return
            # a failed run may be retried: take it over atomically
            taken = session.execute(update(JobRun).where(
                JobRun.id == row.id, JobRun.status == "failed").values(
                status="running", started_at=utcnow())).rowcount
        if not taken:
            yield False
            return
    details: dict[str, Any] = {}
    try:
        yield True
    except Exception as exc:
        _finish(services, job_id, run_key, "failed", {"error": type(exc).__name__})
        raise
    _finish(services, job_id, run_key, "done", details)


def _finish(services: Services, job_id: str, run_key: str, status: str,
            details: dict[str, Any]) -> None:
    with services.session() as session:
        session.execute(update(JobRun).where(JobRun.job_id == job_id, JobRun.run_key == run_key)
                        .values(status=status, finished_at=utcnow(), details=details))


def _today(services: Services, now: datetime) -> date:
    """``now`` as a date in the first location's time zone (the space's business day)."""
    from zoneinfo import ZoneInfo

    from finance.models import Location

    with services.session() as session:
        tz = session.execute(select(Location.timezone).order_by(Location.id)).scalars().first()
    return now.astimezone(ZoneInfo(tz or "UTC")).date()


# --------------------------------------------------------------------------- jobs


def job_billing_monthly(services: Services, notifier: Notifier, now: datetime) -> dict[str, Any]:
    """Draft this month's invoices and ask a manager to approve and issue them."""
    from finance.billing import BillingEngine, BillingPolicy
    from finance.money import format_cents
    from tools import actions

    today = _today(services, now)
    period = f"{today.year:04d}-{today.month:02d}"
    with claim(services, "billing_monthly", period) as mine:
        if not mine:
            return {"skipped": True, "period": period}
        engine = BillingEngine(services.chart, BillingPolicy.from_settings(services.settings))
        with services.session() as session:
            result = engine.run(session, period, actor=SYSTEM, dry_run=False)
            s = result.summary()
            token = None
            if s["invoice_ids"]:
                token = actions.propose(
                    services, SYSTEM, "issue_invoices",
                    {"invoice_ids": s["invoice_ids"], "period": period},
                    {"invoices": s["invoices"], "total_cents": s["total_cents"]},
                    f"Approve and issue {len(s['invoice_ids'])} invoices for {period}",
                    session=session).token
        channel = services.settings.alert_channel
        if token and channel:
            from bot.slack import blocks

            text = (f"Billing for {period}: {len(s['invoice_ids'])} draft invoices, total "
                    f"{format_cents(s['total_cents'])}.")
            notifier.post(channel, text, blocks.build_answer(
                text, pending=[{"token": token, "summary": text}]))
        return {"period": period, "drafts": len(s["invoice_ids"]), "pending_action": token}


def job_revenue_recognition(services: Services, notifier: Notifier,
                            now: datetime) -> dict[str, Any]:
    """Recognize deferred revenue whose service month has started."""
    from finance.receivables import recognize_revenue

    today = _today(services, now)
    with claim(services, "revenue_recognition", today.isoformat()) as mine:
        if not mine:
            return {"skipped": True}
        with services.session() as session:
            posted = recognize_revenue(session, today, actor=SYSTEM)
        return {"posted": posted}


def job_dunning(services: Services, notifier: Notifier, now: datetime,
                send: Callable[[str, str, str], None] | None = None) -> dict[str, Any]:
    """Queue today's reminders (once per invoice and stage), then deliver the outbox."""
    from finance.mail import deliver_outbox, queue_dunning, smtp_sender

    today = _today(services, now)
    queued = 0
    with claim(services, "dunning", today.isoformat()) as mine:
        if mine:
            with services.session() as session:
                queued = queue_dunning(session, today)
    settings = services.settings
    if send is None and settings.smtp_url is not None:
        send = smtp_sender(settings.smtp_url.get_secret_value(), settings.mail_from)
    if send is None:
        return {"queued": queued, "sent": 0, "note": "no SMTP configured; mail stays queued"}
    report = deliver_outbox(services.session, send)  # retried every run, claimed or not
    return {"queued": queued, "sent": report.sent, "failed": report.failed,
            "pending": report.pending}


def job_anomaly_scan(services: Services, notifier: Notifier, now: datetime) -> dict[str, Any]:
    """Scan the last 35 days; alert the channel about findings not seen before."""
    from finance import anomalies

    today = _today(services, now)
    with claim(services, "anomaly_scan", today.isoformat()) as mine:
        if not mine:
            return {"skipped": True}
        from sqlalchemy import func

        from finance.models import Anomaly

        with services.session() as session:
            before = session.execute(select(func.max(Anomaly.id))).scalar_one() or 0
        report = anomalies.scan(services, SYSTEM, start=today - timedelta(days=35), end=today)
        with services.session() as session:
            new = list(session.execute(select(Anomaly).where(Anomaly.id > before)
                                       .order_by(Anomaly.id)).scalars())
        channel = services.settings.alert_channel
        if channel and new:
            from bot.slack import blocks

            for row in new[:20]:
                notifier.post(channel, row.reason[:300], blocks.build_anomaly_alert(row))
            if len(new) > 20:
                notifier.post(channel, f"…and {len(new) - 20} more new findings; "
                                       "`/books anomalies` lists them.")
        return {"new": len(new), "found": len(report.findings)}


def job_kpi_digest(services: Services, notifier: Notifier, now: datetime) -> dict[str, Any]:
    """Weekly KPIs and the MRR vs plan chart to the alert channel."""
    from tools.base import ToolContext, ToolError, invoke

    today = _today(services, now)
    year, week, _ = today.isocalendar()
    with claim(services, "kpi_digest", f"{year}-W{week:02d}") as mine:
        if not mine:
            return {"skipped": True}
        channel = services.settings.alert_channel
        ctx = ToolContext(services=services, actor=SYSTEM, today=today)
        start = (today - timedelta(days=7)).isoformat()
        lines = [f"*Weekly digest* ({start} to {today.isoformat()})"]
        for kpi in ("mrr_vs_plan", "occupancy_rate", "active_members", "revenue", "dso"):
            try:
                out = invoke(ctx, "lookup_kpi", {"kpi": kpi, "start": start,
                                                 "end": today.isoformat()})
                lines.append(f"• {out.summary}")
            except ToolError as exc:
                lines.append(f"• {kpi}: {exc}")
        chart = None
        try:
            from finance import charts

            chart = charts.mrr_vs_plan_chart(services, today)
        except Exception:
            log.exception("digest chart failed")
        if channel:
            notifier.post(channel, "\n".join(lines))
            if chart:
                notifier.upload(channel, f"mrr-{today.isoformat()}.png", chart, "MRR vs plan")
        return {"lines": len(lines) - 1, "chart": bool(chart)}


def job_backup(services: Services, notifier: Notifier, now: datetime) -> dict[str, Any]:
    """A consistent backup under <data dir>/backups."""
    from finance import backup

    today = _today(services, now)
    with claim(services, "backup", today.isoformat()) as mine:
        if not mine:
            return {"skipped": True}
        target = services.settings.data_dir / "backups" / backup.default_backup_name(
            services.engine, now)
        result = backup.backup(services.engine, target)
        return {"file": str(result.path), "bytes": result.bytes}


JOBS: dict[str, Callable[..., dict[str, Any]]] = {
    "billing_monthly": job_billing_monthly,
    "revenue_recognition": job_revenue_recognition,
    "dunning": job_dunning,
    "anomaly_scan": job_anomaly_scan,
    "kpi_digest": job_kpi_digest,
    "backup": job_backup,
}

# (trigger kwargs, misfire grace seconds)
SCHEDULE: dict[str, tuple[dict[str, Any], int]] = {
    "billing_monthly": ({"trigger": "cron", "day": 1, "hour": 6}, 6 * HOUR),
    "revenue_recognition": ({"trigger": "cron", "hour": 2}, HOUR),
    "dunning": ({"trigger": "cron", "hour": 9}, HOUR),
    "anomaly_scan": ({"trigger": "cron", "hour": 7}, HOUR),
    "kpi_digest": ({"trigger": "cron", "day_of_week": "mon", "hour": 8}, 6 * HOUR),
    "backup": ({"trigger": "cron", "day_of_week": "sun", "hour": 3}, 6 * HOUR),
}


def run_job(name: str) -> dict[str, Any]:
    """The scheduler's entry point: fresh services from settings, then the job."""
    from finance.services import build_services
    from finance.settings import load_settings

    services = build_services(load_settings())
    try:
        notifier: Notifier = NullNotifier()
        token = services.settings.slack_bot_token
        if token is not None:
            from slack_sdk import WebClient

            notifier = SlackNotifier(WebClient(token=token.get_secret_value(),
                                               base_url=services.settings.slack_api_url))
        result = JOBS[name](services, notifier, services.clock())
        log.info("job %s: %s", name, result)
        return result
    finally:
        services.dispose()


def build_scheduler(services: Services, *, start: bool = True) -> Any:
    """A background scheduler whose jobs live in the books' database (one process runs it)."""
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    scheduler = BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=services.engine,
                                                 tablename="apscheduler_jobs")},
        job_defaults={"coalesce": True, "max_instances": 1},
        timezone="UTC",
    )
    for job_id, (trigger, grace) in SCHEDULE.items():
        scheduler.add_job(run_job, args=[job_id], id=job_id, name=job_id,
                          replace_existing=True, misfire_grace_time=grace, **trigger)
    if start:
        scheduler.start()
    return scheduler


def start_scheduler(services: Services, *, slack_client: Any = None) -> Any:
    return build_scheduler(services)
