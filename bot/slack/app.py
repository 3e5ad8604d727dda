"""The Bolt app: thin listeners that ack, parse, call one service or tool, and render.

Services come in through the ``SlackDeps`` closure at registration (never Bolt's context).
Buttons carry ids (``bill:12``, a pending-action token); every click reloads the record,
re-checks the clicker's role in the store and is idempotent in the service it calls. Users
see neutral errors with a correlation id, never an exception string.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from slack_bolt import App, BoltResponse
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from bot.assistant import Assistant, build_request
from bot.slack import blocks, ids
from bot.slack.files import FileRefused, allowed_hosts, fetch_file, is_receipt_like
from finance.authz import Actor, NotAuthorized
from finance.models import SlackEvent
from finance.services import Services

log = logging.getLogger("deskbooks.slack")

MENTION = re.compile(r"<@[A-Z0-9]+>")
MAX_FILES_PER_MESSAGE = 5


class SlackConfigError(RuntimeError):
    """Slack settings are missing or wrong; the message says which."""


class AckGate:
    """Acks first: listener work waits (briefly) while Slack requests are still being acked.

    In HTTP mode Bolt acks an event and runs its listener on a worker thread of the same
    process. When a burst arrives, the first listeners would otherwise compete with the
    remaining acks for the interpreter; the HTTP layer counts requests in flight with
    :meth:`acking`, and listeners call :meth:`wait` before their slow work, which returns once
    no request has been in flight for ``quiet_s``. The wait is bounded: a steady stream of
    requests delays work by at most ``max_wait_s``.
    """

    def __init__(self, max_wait_s: float = 0.5, quiet_s: float = 0.02) -> None:
        self.max_wait_s = max_wait_s
        self.quiet_s = quiet_s
        self._inflight = 0
        self._last = 0.0
        self._idle = threading.Condition()

    @contextmanager
    def acking(self) -> Iterator[None]:
        with self._idle:
            self._inflight += 1
        try:
            yield
        finally:
            with self._idle:
                self._inflight -= 1
                self._last = time.monotonic()
                if not self._inflight:
                    self._idle.notify_all()

    def wait(self) -> None:
        deadline = time.monotonic() + self.max_wait_s
        with self._idle:
            while True:
                now = time.monotonic()
                quiet_for = now - self._last
                if (not self._inflight and quiet_for >= self.quiet_s) or now >= deadline:
                    return
                self._idle.wait(min(deadline - now,
                                    self.quiet_s - quiet_for if not self._inflight
                                    else self.quiet_s))


class DbHealth:
    """When the database last answered. A first delivery arriving within ``fresh_s`` of a
    success is acked without asking the database again (its listener still claims the event
    id before doing anything); anything else is checked before the ack."""

    def __init__(self, fresh_s: float = 2.0) -> None:
        self.fresh_s = fresh_s
        self._last_ok = -1e9

    def ok(self) -> None:
        self._last_ok = time.monotonic()

    def failed(self) -> None:
        self._last_ok = -1e9

    def recently_ok(self) -> bool:
        return time.monotonic() - self._last_ok < self.fresh_s


@dataclass
class SlackDeps:
    services: Services
    assistant: Assistant
    working_after_s: float = 2.0  # post "working on it" when an answer takes longer
    gate: AckGate | None = None  # HTTP mode only: listeners let pending acks go first
    health: DbHealth = field(default_factory=DbHealth)

    def before_work(self) -> None:
        if self.gate is not None:
            self.gate.wait()


def build_app(services: Services, *, assistant: Assistant | None = None,
              client: WebClient | None = None, process_before_response: bool = False,
              working_after_s: float = 2.0, gate: AckGate | None = None) -> App:
    """A Bolt app wired to the services; refuses to build without tokens.

    ``gate`` (HTTP mode, shared with :func:`bot.slack.server.make_wsgi_app`) lets acks go
    before listener work; it is ignored when listeners run before the response.
    """
    settings = services.settings
    missing = [name for name, value in (("SLACK_BOT_TOKEN", settings.slack_bot_token),
                                        ("SLACK_SIGNING_SECRET", settings.slack_signing_secret))
               if value is None or not value.get_secret_value()]
    if missing:
        raise SlackConfigError(f"{' and '.join(missing)} must be set to run the Slack app "
                               "(docs/slack.md says where to find them); `deskbooks chat` works "
                               "without them")
    token = settings.slack_bot_token.get_secret_value()  # type: ignore[union-attr]
    client = client or WebClient(token=token, base_url=settings.slack_api_url)
    if assistant is None:
        from bot.assistant import build_chat_model

        assistant = Assistant(services, chat_model=build_chat_model(services))
    app = App(
        client=client,
        signing_secret=settings.slack_signing_secret.get_secret_value(),  # type: ignore[union-attr]
        process_before_response=process_before_response,
        token_verification_enabled=False,
        raise_error_for_unhandled_request=False,
    )
    deps = SlackDeps(services, assistant, working_after_s,
                     gate=None if process_before_response else gate)
    app.use(_dedupe_events(deps))
    register_conversations(app, deps)
    register_buttons(app, deps)
    from bot.slack import command, home

    command.register(app, deps)
    home.register(app, deps)
    app.error(_error_handler)
    return app


# --------------------------------------------------------------------------- plumbing


def actor_of(body: dict[str, Any], user_id: str | None = None) -> Actor:
    """The Slack user behind a request, with their workspace (roles are looked up later)."""
    team = (body.get("team_id") or (body.get("team") or {}).get("id")
            or (body.get("user") or {}).get("team_id") or body.get("user_team"))
    user = user_id or (body.get("user") or {}).get("id") or body.get("user_id")
    if not user:
        raise NotAuthorized("no Slack user on this request")
    return Actor(str(user), str(team) if team else None)


def _dedupe_events(deps: SlackDeps) -> Callable[..., Any]:
    """Events are handled once per event id, whatever Slack's retries do.

    Two steps, so the ack never waits for a database write (SQLite has one writer, and the
    assistant's own writes would hold up every ack behind them):

    1. Before the ack, a read: an event id already claimed is acked and dropped. If the
       database cannot be read, nothing has happened yet: the user is told once (first
       delivery only), with a reference, and the request fails with 503 so Slack delivers
       the event again; the retry that finds the database back is handled normally.
       A first delivery (no retry header) arriving while the database answered within the
       last couple of seconds (:class:`DbHealth`) skips the read: it cannot have been seen.
       If the database fails in that short window the listener still answers with a
       reference, and the next event is checked again.
    2. After the ack, the listener claims the id (a unique ``slack_event`` row) with
       :func:`claim_event` before doing anything; of two deliveries racing past step 1 only
       one claim succeeds, and the other does nothing.
    """

    def middleware(body: dict[str, Any], request: Any, client: WebClient,
                   next: Callable[[], Any]) -> Any:  # noqa: A002
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        if not event_id:
            return next()
        first_delivery = not (request.headers.get("x-slack-retry-num") or [None])[0]
        if first_delivery and deps.health.recently_ok():
            return next()  # nothing to look up: the listener's claim still makes it once
        try:
            with deps.services.session() as session:
                seen = session.execute(select(SlackEvent.id).where(
                    SlackEvent.event_id == str(event_id)[:60])).first() is not None
            deps.health.ok()
        except SQLAlchemyError:
            deps.health.failed()
            ref = uuid.uuid4().hex[:10]
            log.exception("could not check event %s (ref %s); asking Slack to retry",
                          event_id, ref)
            target = _reply_target(body.get("event") or {})
            if first_delivery and target:
                _notify_failure(client, *target, ref)
            return BoltResponse(status=503, body=json.dumps({"error": "unavailable",
                                                             "ref": ref}))
        if seen:
            log.info("duplicate delivery of %s ignored", event_id)
            return BoltResponse(status=200, body="")
        return next()

    return middleware


def claim_event(deps: SlackDeps, body: dict[str, Any]) -> bool:
    """Record this delivery's event id; False when another delivery already has it."""
    event_id = body.get("event_id")
    if not event_id:
        return True
    deps.before_work()
    try:
        with deps.services.session() as session:
            session.add(SlackEvent(event_id=str(event_id)[:60], team_id=body.get("team_id")))
    except IntegrityError:
        deps.health.ok()
        log.info("duplicate delivery of %s ignored", event_id)
        return False
    except SQLAlchemyError:
        deps.health.failed()  # the next event is checked before its ack
        raise
    deps.health.ok()
    return True


def _reply_target(event: dict[str, Any]) -> tuple[str, str] | None:
    """(channel, thread) the bot would answer this event in, or None when it would not."""
    if event.get("bot_id") or not event.get("channel") or not event.get("user"):
        return None
    if event.get("type") == "app_mention" or (
            event.get("type") == "message" and event.get("channel_type") == "im"
            and event.get("subtype") in (None, "file_share")):
        return str(event["channel"]), str(event.get("thread_ts") or event.get("ts") or "")
    return None


def _notify_failure(client: WebClient, channel: str, thread_ts: str | None, ref: str) -> None:
    try:
        _post(client, channel, thread_ts or None, f"Something went wrong (ref {ref})",
              blocks.build_error(ref))
    except Exception:  # Slack itself is unreachable: the log has it
        log.warning("could not report ref %s to Slack", ref)


@contextmanager
def _politely(client: WebClient, body: dict[str, Any], what: str,
              channel: str | None = None) -> Iterator[None]:
    """Unexpected failures in a click: a neutral ephemeral with a reference, the log has the
    rest (never the exception text in Slack)."""
    try:
        yield
    except Exception:
        ref = uuid.uuid4().hex[:10]
        log.exception("%s failed (ref %s)", what, ref)
        user = (body.get("user") or {}).get("id") or body.get("user_id")
        if user:
            _ephemeral(client, channel or _container(body)[0], str(user),
                       f"Something went wrong on my side (ref {ref}). Please try again; if it "
                       "keeps happening, give an admin this reference.")


def _error_handler(error: Exception, body: dict[str, Any], logger: Any) -> BoltResponse:
    ref = uuid.uuid4().hex[:10]
    log.error("unhandled error (ref %s): %s", ref, type(error).__name__, exc_info=error)
    return BoltResponse(status=500, body=f"error (ref {ref})")


def _post(client: WebClient, channel: str, thread_ts: str | None, text: str,
          block_list: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    # with blocks, ``text`` is the notification fallback, which Slack also parses for
    # mentions: escape it like the blocks (text-only callers escape what they insert)
    kwargs: dict[str, Any] = {"channel": channel,
                              "text": (blocks.escape(text) if block_list else text)[:3000]}
    if thread_ts:
        kwargs["thread_ts"] = thread_ts
    if block_list:
        kwargs["blocks"] = block_list
    return client.chat_postMessage(**kwargs).data  # type: ignore[return-value]


def _ephemeral(client: WebClient, channel: str | None, user: str, text: str) -> None:
    if not channel:
        return
    try:
        client.chat_postEphemeral(channel=channel, user=user, text=text[:3000])
    except SlackApiError:
        log.warning("could not post an ephemeral message to %s", channel)


def _fail_politely(client: WebClient, channel: str | None, thread_ts: str | None,
                   what: str) -> None:
    ref = uuid.uuid4().hex[:10]
    log.exception("%s failed (ref %s)", what, ref)
    if channel:
        _notify_failure(client, channel, thread_ts, ref)


# --------------------------------------------------------------------------- conversations


def thread_key(team: str | None, channel: str, thread_ts: str) -> str:
    return f"{team or '-'}:{channel}:{thread_ts}"


def answer_in_thread(deps: SlackDeps, client: WebClient, actor: Actor, channel: str,
                     thread_ts: str, text: str) -> None:
    """Ask the assistant and reply in the thread; a placeholder appears if it is slow."""
    state: dict[str, Any] = {"placeholder": None, "done": False}
    lock = threading.Lock()

    def working() -> None:
        with lock:
            if not state["done"]:
                try:
                    state["placeholder"] = _post(client, channel, thread_ts,
                                                 "Working on it…")["ts"]
                except SlackApiError:
                    pass

    timer = threading.Timer(deps.working_after_s, working)
    timer.daemon = True
    timer.start()
    try:
        request = build_request(deps.services, actor, text, thread_key(actor.team_id, channel,
                                                                        thread_ts),
                                fetch_file=_file_fetcher(deps, client))
        answer = deps.assistant.ask(request)
    finally:
        with lock:
            state["done"] = True
            timer.cancel()
    content = blocks.build_answer(answer.text, pending=answer.pending_actions)
    if state["placeholder"]:
        client.chat_update(channel=channel, ts=state["placeholder"],
                           text=blocks.escape(answer.text)[:3000],
                           blocks=content)
    else:
        _post(client, channel, thread_ts, answer.text, content)


def _file_fetcher(deps: SlackDeps, client: WebClient) -> Callable[[str], bytes]:
    settings = deps.services.settings

    def fetch(file_id: str) -> bytes:
        return fetch_file(client, file_id, hosts=allowed_hosts(settings.slack_file_hosts),
                          max_bytes=settings.max_upload_mb * 1_000_000).data

    return fetch


def _has_history(deps: SlackDeps, key: str) -> bool:
    from sqlalchemy import select

    from finance.models import ConversationMessage

    with deps.services.session() as session:
        return session.execute(select(ConversationMessage.id).where(
            ConversationMessage.thread_key == key).limit(1)).first() is not None


def register_conversations(app: App, deps: SlackDeps) -> None:
    @app.event("app_mention")
    def handle_mention(event: dict[str, Any], body: dict[str, Any], client: WebClient) -> None:
        channel, thread_ts = event.get("channel"), event.get("thread_ts") or event.get("ts")
        if not isinstance(channel, str) or not isinstance(thread_ts, str):
            log.warning("app_mention without a channel or ts ignored")
            return
        try:
            if not claim_event(deps, body):
                return
            actor = actor_of(body, event.get("user"))
            answer_in_thread(deps, client, actor, channel, thread_ts,
                             MENTION.sub("", event.get("text", "")).strip())
        except Exception:
            _fail_politely(client, channel, thread_ts, "app_mention")

    @app.event("message")
    def handle_message(event: dict[str, Any], body: dict[str, Any], client: WebClient,
                       context: dict[str, Any]) -> None:
        """DMs, receipts shared in a DM (or with a mention), replies in threads we are in."""
        if event.get("bot_id") or event.get("subtype") not in (None, "file_share"):
            return
        channel = event.get("channel")
        if not channel or not event.get("user"):
            return
        thread_ts = str(event.get("thread_ts") or event.get("ts") or "")
        try:
            actor = actor_of(body, event["user"])
            text = event.get("text") or ""
            bot_user = context.get("bot_user_id")
            mentioned = bool(bot_user) and f"<@{bot_user}>" in text
            is_dm = event.get("channel_type") == "im"
            if event.get("files"):
                if (is_dm or mentioned) and claim_event(deps, body):
                    handle_receipts(deps, client, actor, channel, thread_ts, event["files"])
                return
            if mentioned:
                return  # the app_mention event answers it
            key = thread_key(actor.team_id, channel, thread_ts)
            if (is_dm or (event.get("thread_ts") and _has_history(deps, key))) \
                    and claim_event(deps, body):
                answer_in_thread(deps, client, actor, channel, thread_ts,
                                 MENTION.sub("", text).strip())
        except Exception:
            _fail_politely(client, channel, thread_ts, "message")

    @app.event("file_shared")
    def handle_file_shared() -> None:
        return  # the message carrying the file (subtype file_share) does the work


# --------------------------------------------------------------------------- receipts


def handle_receipts(deps: SlackDeps, client: WebClient, actor: Actor, channel: str,
                    thread_ts: str, files: list[dict[str, Any]]) -> None:
    """Each shared image or PDF: download, OCR, draft expense, card with buttons."""
    from finance.receipts import OcrFailedError, OcrUnavailableError, ReceiptInputError

    settings = deps.services.settings
    hosts = allowed_hosts(settings.slack_file_hosts)
    for meta in files[:MAX_FILES_PER_MESSAGE]:
        name = blocks.escape(meta.get("name") or meta.get("id") or "file")
        if meta.get("mimetype") and not is_receipt_like(meta):
            _post(client, channel, thread_ts, f"{name} is not an image or a PDF, so I can't "
                  "read it as a receipt.")
            continue
        try:
            shared = fetch_file(client, str(meta["id"]), hosts=hosts,
                                max_bytes=settings.max_upload_mb * 1_000_000)
            card = receipt_card(deps, actor, shared.data)
        except (FileRefused, ReceiptInputError, OcrUnavailableError, OcrFailedError) as exc:
            _post(client, channel, thread_ts, f"I couldn't read {name}: {blocks.escape(exc)}")
            continue
        except NotAuthorized as exc:
            _post(client, channel, thread_ts, blocks.escape(str(exc)))
            return
        except ValueError as exc:  # domain errors from the expense services
            _post(client, channel, thread_ts, f"I couldn't file {name}: {blocks.escape(exc)}")
            continue
        _post(client, channel, thread_ts, f"Receipt {name}", card)


def receipt_card(deps: SlackDeps, actor: Actor, data: bytes) -> list[dict[str, Any]]:
    from finance import expenses
    from finance.receipts import scan_receipt

    request = build_request(deps.services, actor, "", None)
    scan = scan_receipt(data, today=request.today)
    draft = expenses.create_expense_draft(deps.services, actor, scan,
                                          location=request.location_id or 0, source="slack")
    return render_expense(deps, draft.expense_id, confidence=draft.categorization.confidence_pct,
                          reason=draft.categorization.reason, duplicate_ids=draft.duplicates,
                          suspicious=bool(scan.fields.suspicious_text))


def render_expense(deps: SlackDeps, expense_id: int, *, confidence: int | None = None,
                   reason: str | None = None, duplicate_ids: list[int] | None = None,
                   suspicious: bool = False) -> list[dict[str, Any]]:
    from finance.models import Expense

    with deps.services.session() as session:
        exp = session.get(Expense, expense_id)
        assert exp is not None
        dups = [session.get(Expense, i) for i in (duplicate_ids or [])]
    names = {a.code: a.name for a in deps.services.chart.accounts}
    return blocks.build_receipt_card(
        exp, account_name=names.get(exp.account_code or ""),
        confidence=confidence if confidence is not None else exp.category_confidence_pct,
        reason=reason or exp.category_reason, duplicates=[d for d in dups if d is not None],
        suspicious=suspicious)


# --------------------------------------------------------------------------- buttons


def _value_id(value: str, prefix: str) -> int:
    kind, _, raw = value.partition(":")
    if kind != prefix or not raw.isdigit():
        raise ValueError(f"unexpected button value {value!r}")
    return int(raw)


def _container(body: dict[str, Any]) -> tuple[str | None, str | None]:
    container = body.get("container") or {}
    channel = container.get("channel_id") or (body.get("channel") or {}).get("id")
    return channel, container.get("message_ts") or (body.get("message") or {}).get("ts")


def _today(deps: SlackDeps, actor: Actor) -> date:
    return build_request(deps.services, actor, "", None).today


def register_buttons(app: App, deps: SlackDeps) -> None:
    services = deps.services

    # ---- pending actions (billing runs and other prepared writes)

    @app.action(ids.CONFIRM_ACTION)
    def handle_confirm(ack: Callable[..., Any], body: dict[str, Any], action: dict[str, Any],
                       client: WebClient) -> None:
        ack()
        with _politely(client, body, "confirm"):
            confirm_pending(deps, client, actor_of(body), str(action.get("value", "")),
                            *_container(body))

    @app.action(ids.CANCEL_ACTION)
    def handle_cancel(ack: Callable[..., Any], body: dict[str, Any], action: dict[str, Any],
                      client: WebClient) -> None:
        ack()
        from tools import actions

        with _politely(client, body, "cancel"):
            channel, ts = _container(body)
            actor = actor_of(body)
            try:
                result = actions.cancel(services, actor, str(action.get("value", "")))
            except NotAuthorized as exc:
                _ephemeral(client, channel, actor.user_id, str(exc))
                return
            if result.outcome == "cancelled" and channel and ts:
                client.chat_update(channel=channel, ts=ts, text=blocks.escape(result.message),
                                   blocks=blocks.build_action_done(result.message,
                                                                   actor.user_id, "cancelled"))
            else:
                _ephemeral(client, channel, actor.user_id, result.message)

    # ---- bills

    @app.action(ids.BILL_APPROVE)
    def handle_bill_approve(ack: Callable[..., Any], body: dict[str, Any],
                            action: dict[str, Any], client: WebClient) -> None:
        ack()
        with _politely(client, body, "bill approval"):
            decide_bill(deps, client, actor_of(body), _value_id(action["value"], "bill"),
                        "approve", None, *_container(body))

    @app.action(ids.BILL_REJECT)
    def handle_bill_reject(ack: Callable[..., Any], body: dict[str, Any],
                           action: dict[str, Any], client: WebClient) -> None:
        ack()
        with _politely(client, body, "bill reject modal"):
            channel, ts = _container(body)
            bill_id = _value_id(action["value"], "bill")
            client.views_open(trigger_id=body["trigger_id"],
                              view=blocks.build_reject_modal(bill_id, channel, ts))

    @app.view(ids.BILL_REJECT_MODAL)
    def handle_reject_submission(ack: Callable[..., Any], body: dict[str, Any],
                                 view: dict[str, Any], client: WebClient) -> None:
        values = view["state"]["values"]
        reason = ((values.get(ids.REASON_BLOCK) or {}).get(ids.REASON_INPUT) or {}).get("value")
        if not reason or not reason.strip():
            ack(response_action="errors", errors={ids.REASON_BLOCK: "Say why it is rejected."})
            return
        ack()
        subject, channel, ts = _metadata(view)
        with _politely(client, body, "bill rejection", channel):
            decide_bill(deps, client, actor_of(body), _value_id(subject, "bill"), "reject",
                        reason.strip(), channel, ts)

    # ---- receipts

    @app.action(ids.RECEIPT_CONFIRM)
    def handle_receipt_confirm(ack: Callable[..., Any], body: dict[str, Any],
                               action: dict[str, Any], client: WebClient) -> None:
        ack()
        with _politely(client, body, "receipt confirm"):
            confirm_receipt(deps, client, actor_of(body), _value_id(action["value"], "expense"),
                            None, *_container(body))

    @app.action(ids.RECEIPT_CONFIRM_ANYWAY)
    def handle_receipt_confirm_anyway(ack: Callable[..., Any], body: dict[str, Any],
                                      action: dict[str, Any], client: WebClient) -> None:
        ack()
        with _politely(client, body, "receipt confirm (not a duplicate)"):
            confirm_receipt(deps, client, actor_of(body), _value_id(action["value"], "expense"),
                            None, *_container(body), allow_duplicate=True)

    @app.action(ids.RECEIPT_CHANGE)
    def handle_receipt_change(ack: Callable[..., Any], body: dict[str, Any],
                              action: dict[str, Any], client: WebClient) -> None:
        ack()
        with _politely(client, body, "category modal"):
            channel, ts = _container(body)
            expense_id = _value_id(action["value"], "expense")
            client.views_open(trigger_id=body["trigger_id"], view=blocks.build_category_modal(
                expense_id, category_choices(deps), _current_account(deps, expense_id),
                channel, ts))

    @app.view(ids.RECEIPT_CATEGORY_MODAL)
    def handle_category_submission(ack: Callable[..., Any], body: dict[str, Any],
                                   view: dict[str, Any], client: WebClient) -> None:
        values = view["state"]["values"]
        chosen = (((values.get(ids.ACCOUNT_BLOCK) or {}).get(ids.ACCOUNT_INPUT) or {})
                  .get("selected_option") or {}).get("value")
        if not chosen:
            ack(response_action="errors", errors={ids.ACCOUNT_BLOCK: "Choose an account."})
            return
        ack()
        subject, channel, ts = _metadata(view)
        with _politely(client, body, "category change", channel):
            confirm_receipt(deps, client, actor_of(body), _value_id(subject, "expense"),
                            chosen, channel, ts)

    @app.action(ids.RECEIPT_DISCARD)
    def handle_receipt_discard(ack: Callable[..., Any], body: dict[str, Any],
                               action: dict[str, Any], client: WebClient) -> None:
        ack()
        with _politely(client, body, "receipt discard"):
            discard_receipt(deps, client, actor_of(body), _value_id(action["value"], "expense"),
                            *_container(body))

    # ---- anomalies

    @app.action(ids.ANOMALY_DISMISS)
    def handle_anomaly_dismiss(ack: Callable[..., Any], body: dict[str, Any],
                               action: dict[str, Any], client: WebClient) -> None:
        ack()
        with _politely(client, body, "anomaly dismiss"):
            triage_anomaly(deps, client, actor_of(body), _value_id(action["value"], "anomaly"),
                           "dismissed", *_container(body))

    @app.action(ids.ANOMALY_INVESTIGATE)
    def handle_anomaly_investigate(ack: Callable[..., Any], body: dict[str, Any],
                                   action: dict[str, Any], client: WebClient) -> None:
        ack()
        with _politely(client, body, "anomaly investigate"):
            triage_anomaly(deps, client, actor_of(body), _value_id(action["value"], "anomaly"),
                           "investigating", *_container(body))


def _metadata(view: dict[str, Any]) -> tuple[str, str | None, str | None]:
    """(subject id, channel, message ts) a modal carries in its private metadata."""
    subject, _, rest = str(view.get("private_metadata") or "").partition("|")
    channel, _, ts = rest.partition("|")
    return subject, channel or None, ts or None


def category_choices(deps: SlackDeps) -> list[tuple[str, str]]:
    """Accounts a receipt may be posted to: expense accounts and the CapEx/prepaid assets."""
    return [(a.code, a.name) for a in sorted(deps.services.chart.accounts, key=lambda a: a.code)
            if a.type == "expense" or a.code in ("1200", "1500", "1510", "1520")]


def _current_account(deps: SlackDeps, expense_id: int) -> str | None:
    from finance.models import Expense

    with deps.services.session() as session:
        exp = session.get(Expense, expense_id)
        return exp.account_code if exp else None


# --------------------------------------------------------------------------- flows


def bill_message(deps: SlackDeps, bill_id: int) -> tuple[str, list[dict[str, Any]]]:
    from finance import approvals

    with deps.services.session() as session:
        view = approvals.get_bill(session, bill_id)
    policy = approvals.policy_of(deps.services)
    history = []
    for a in view.approvals:
        who = f"<@{blocks.escape(a.decided_by)}>"
        if a.on_behalf_of:
            who += f" for <@{blocks.escape(a.on_behalf_of)}>"
        why = f": {blocks.escape(a.reason)}" if a.reason else ""
        history.append(f"{policy.label(a.step)} {a.decision} by {who} "
                       f"at {a.decided_at:%Y-%m-%d %H:%M} UTC{why}")
    waiting = policy.label(view.next_step) if view.next_step else None
    text = (f"Bill {blocks.escape(view.number)} from {blocks.escape(view.vendor)}: "
            f"{view.status}")
    return text, blocks.build_bill_card(view, vendor=view.vendor, waiting_for=waiting,
                                        history=history)


def request_approvals(deps: SlackDeps, client: WebClient, bill_id: int) -> list[str]:
    """Post the bill to the approvals channel (or DM the approvers); remember the message."""
    from finance import approvals

    with deps.services.session() as session:
        view = approvals.get_bill(session, bill_id)
        people = approvals.approvers_for(session, bill_id,
                                         policy=approvals.policy_of(deps.services),
                                         now=deps.services.clock())
    if view.status != "pending":
        return []
    text, card = bill_message(deps, bill_id)
    channel = deps.services.settings.approvals_channel
    targets = [channel] if channel else people
    posted = []
    for target in targets:
        resp = _post(client, target, None, text, card)
        posted.append(resp.get("channel", target))
        if len(posted) == 1:  # the message later clicks update
            approvals.record_message(deps.services, bill_id, resp.get("channel", target),
                                     resp["ts"])
    return posted


def decide_bill(deps: SlackDeps, client: WebClient, actor: Actor, bill_id: int, decision: str,
                reason: str | None, channel: str | None, ts: str | None) -> None:
    from finance import approvals

    try:
        result = approvals.decide(deps.services, actor, bill_id, decision, reason)  # type: ignore[arg-type]
    except NotAuthorized as exc:
        _ephemeral(client, channel, actor.user_id, str(exc))
        return
    except ValueError as exc:
        _ephemeral(client, channel, actor.user_id, f"That didn't work: {exc}")
        return
    if not result.changed:
        _ephemeral(client, channel, actor.user_id, result.message)
        return
    text, card = bill_message(deps, bill_id)
    if channel and ts:
        client.chat_update(channel=channel, ts=ts, text=text, blocks=card)
    if result.bill.next_step:  # GM approved, now the CFO
        request_approvals(deps, client, bill_id)


def confirm_receipt(deps: SlackDeps, client: WebClient, actor: Actor, expense_id: int,
                    account: str | None, channel: str | None, ts: str | None, *,
                    allow_duplicate: bool = False) -> None:
    from finance import expenses

    try:
        result = expenses.confirm_expense(deps.services, actor, expense_id, account_code=account,
                                          allow_duplicate=allow_duplicate)
    except NotAuthorized as exc:
        _ephemeral(client, channel, actor.user_id, str(exc))
        return
    except ValueError as exc:  # DuplicateExpense, ExpenseError, unknown account
        _ephemeral(client, channel, actor.user_id, f"Not posted: {exc}")
        return
    if result.already_posted:  # a double click or a second confirmer: the card stands
        _ephemeral(client, channel, actor.user_id,
                   f"Expense #{expense_id} is already posted (to {result.account_code}).")
        return
    if channel and ts:
        card = render_expense(deps, expense_id)
        card.append(blocks.context(f"Posted by <@{blocks.escape(actor.user_id)}> to "
                                   f"{blocks.escape(result.account_code)}"))
        client.chat_update(channel=channel, ts=ts, text="Receipt posted", blocks=card)


def triage_anomaly(deps: SlackDeps, client: WebClient, actor: Actor, anomaly_id: int,
                   status: str, channel: str | None, ts: str | None) -> None:
    from finance import anomalies
    from finance.models import Anomaly

    try:
        if status == "dismissed":
            anomalies.set_status(deps.services, actor, anomaly_id, "dismissed",
                                 note="dismissed in Slack")
        else:
            with deps.services.session() as session:
                from finance.authz import require_role
                from tools.base import MANAGERS

                require_role(session, actor, set(MANAGERS), "investigate anomalies")
    except NotAuthorized as exc:
        _ephemeral(client, channel, actor.user_id, str(exc))
        return
    except ValueError as exc:
        _ephemeral(client, channel, actor.user_id, f"That didn't work: {exc}")
        return
    with deps.services.session() as session:
        row = session.get(Anomaly, anomaly_id)
    if row is None:
        return
    card = blocks.build_anomaly_alert(row)
    if status == "investigating":
        card.append(blocks.context(f"<@{blocks.escape(actor.user_id)}> is investigating"))
    if channel and ts:
        client.chat_update(channel=channel, ts=ts, text=row.reason[:300], blocks=card)


def confirm_pending(deps: SlackDeps, client: WebClient, actor: Actor, token: str,
                    channel: str | None, ts: str | None) -> None:
    """Run a prepared write (a billing run, issuing invoices...) after re-checking the role."""
    from sqlalchemy import select

    from finance.models import PendingAction
    from tools import actions

    try:
        result = actions.confirm(deps.services, actor, token, today=_today(deps, actor))
    except NotAuthorized as exc:
        _ephemeral(client, channel, actor.user_id, str(exc))
        return
    except ValueError as exc:
        _ephemeral(client, channel, actor.user_id, f"That didn't work: {blocks.escape(exc)}")
        return
    if result.outcome != "done":
        _ephemeral(client, channel, actor.user_id, result.message)
        return
    if channel and ts:
        client.chat_update(channel=channel, ts=ts, text=blocks.escape(result.message),
                           blocks=blocks.build_action_done(result.message, actor.user_id,
                                                           "done"))
    follow = (result.result or {}).get("next_action")
    if follow and channel:
        with deps.services.session() as session:
            row = session.execute(select(PendingAction).where(
                PendingAction.token == follow)).scalar_one()
            summary = str(row.preview.get("summary", "Next step"))
        _post(client, channel, ts, summary,
              blocks.build_answer(summary, pending=[{"token": follow, "summary": summary}]))


def discard_receipt(deps: SlackDeps, client: WebClient, actor: Actor, expense_id: int,
                    channel: str | None, ts: str | None) -> None:
    from finance import expenses

    try:
        expenses.discard_expense(deps.services, actor, expense_id, reason="discarded in Slack")
    except (NotAuthorized, ValueError) as exc:
        _ephemeral(client, channel, actor.user_id, str(exc))
        return
    if channel and ts:
        card = render_expense(deps, expense_id)
        card.append(blocks.context(f"Discarded by <@{blocks.escape(actor.user_id)}>"))
        client.chat_update(channel=channel, ts=ts, text="Receipt discarded", blocks=card)
