"""Slack flows end to end through Bolt's request handling, against the Web API stand-in.

Each test sends Slack's real payload shapes (tests/data/slack), signed, to ``app.dispatch``;
the stand-in (tests/slack_stub.py) answers the Web API, serves shared files with the bot token
and accepts uploads, and the assertions read what was posted and what the books now hold.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from sqlalchemy import select
import yaml
from langchain_core.messages import AIMessage
from sqlalchemy import create_engine, select

from bot.assistant import Assistant
from bot.jobs import SlackNotifier, job_anomaly_scan, job_billing_monthly, job_kpi_digest
from bot.slack import ids
from bot.slack.app import AckGate, build_app, thread_key
from finance.models import (
    Account,
    Anomaly,
    Approval,
    Bill,
    ConversationMessage,
    Expense,
    Invoice,
    JournalEntry,
    JournalLine,
    SlackEvent,
)
from tests.conftest import FIXED_NOW
from tests.helpers import count
from tests.test_agent import ScriptedChatModel
from tests.test_receipt_images import draw_receipt, encode, text_pdf
from tests.test_slack import (
    DATA,
    TEAM,
    _bill,
    _click,
    _signed_headers,
    app_deps,
    interactive,
    make_app,
    payload,
    signed,
    slack_world,
)

DM = "D0DM111"
ALERTS = "C0ALERTS"


@pytest.fixture
def slack(services):
    """The Slack world of tests/test_slack.py on the backend under test."""
    with slack_world(services) as world:
        yield world


# --------------------------------------------------------------------------- helpers


def mention(text: str, *, user: str = "W222", event_id: str = "Ev111") -> dict[str, Any]:
    body = payload("app_mention_event_callback.json")
    body["event"].update(text=f"<@W111> {text}", user=user)
    body["event_id"] = event_id
    return body


def dm_with_file(file_id: str, name: str, mimetype: str, *, user: str = "U111",
                 event_id: str = "EvFILE1") -> dict[str, Any]:
    """A DM (channel_type im) carrying one shared file, as Slack sends it (subtype file_share)."""
    body = payload("message_with_files_event_callback.json")
    event = body["event"]
    event.update(channel=DM, channel_type="im", user=user, text="")
    meta = event["files"][0]
    meta.update(id=file_id, name=name, title=name, mimetype=mimetype, user=user)
    body["event_id"] = event_id
    return body


def button_value(message: dict[str, Any], action_id: str) -> str:
    for block in message["blocks"]:
        for element in block.get("elements", []):
            if element.get("action_id") == action_id:
                return str(element["value"])
    raise AssertionError(f"no {action_id} button in {message['text']!r}")


def click(message: dict[str, Any], action_id: str, user: str) -> Any:
    """A signed block_actions request for a button on a message the bot posted."""
    body = _click(action_id, button_value(message, action_id), user=user)
    body["container"].update(channel_id=message["channel"], message_ts=message["ts"])
    body["channel"] = {"id": message["channel"]}
    return interactive(body)


def submission(callback_id: str, metadata: str, values: dict[str, Any],
               user: str = "W222") -> Any:
    body = payload("view_submission.json")
    body["user"] = {"id": user, "team_id": TEAM}
    body["team"] = {"id": TEAM}
    body["view"].update(callback_id=callback_id, private_metadata=metadata)
    body["view"]["state"] = {"values": values}
    return interactive(body)


def slash(text: str, user: str = "W222") -> Any:
    """Slack's slash command body with our command, text and user."""
    fields = dict(parse_qsl((DATA / "slash_command_body.txt").read_text().strip()))
    fields.update(command="/books", text=text, user_id=user, team_id=TEAM)
    return signed(urlencode(fields), content_type="application/x-www-form-urlencoded")


def ephemerals(slack: dict[str, Any]) -> list[str]:
    return [e["text"] for e in slack["stub"].named("chat.postEphemeral")]


def with_settings(slack: dict[str, Any], **update: Any) -> None:
    svc = slack["services"]
    svc.settings = svc.settings.model_copy(update=update)


# --------------------------------------------------------------------------- conversations


def test_mention_without_an_llm_answers_mrr_in_the_thread(slack):
    """No LLM configured: the router sends "what's our MRR?" to lookup_kpi; reply in thread."""
    app = make_app(slack)  # no chat model: the offline router answers
    body = mention("what's our MRR?")
    assert app.dispatch(signed(json.dumps(body))).status == 200
    [post] = slack["stub"].posted()
    assert post["channel"] == "C111" and post["thread_ts"] == body["event"]["ts"]
    assert "mrr" in post["text"].lower() and "$300.00" in post["text"]  # Priya's hot desk
    key = thread_key(TEAM, "C111", body["event"]["ts"])
    with slack["services"].session() as s:
        rows = list(s.execute(select(ConversationMessage).where(
            ConversationMessage.thread_key == key).order_by(ConversationMessage.id)).scalars())
    assert [r.role for r in rows] == ["user", "assistant"]
    assert rows[1].content["tools"] == ["lookup_kpi"]


class GatedModel(ScriptedChatModel):
    """A scripted chat model that answers only once the test opens its gate."""

    gate: Any = None

    def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None,
                  **kwargs: Any) -> Any:
        assert self.gate.wait(20), "the test never opened the gate"
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)


def _wait_for(predicate: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_http_mode_acks_before_the_assistant_works(slack):
    """As served over HTTP: the ack returns at once, "Working on it…" appears, then the answer."""
    gate = threading.Event()
    model = GatedModel(messages=iter([AIMessage("Priya Shah is paid up.")]), gate=gate)
    svc = slack["services"]
    app = build_app(svc, assistant=Assistant(svc, chat_model=model), client=slack["client"],
                    process_before_response=False, working_after_s=0.05)
    try:
        resp = app.dispatch(signed(json.dumps(mention("what does Priya owe?"))))
        assert resp.status == 200
        _wait_for(lambda: slack["stub"].posted())
        assert [m["text"] for m in slack["stub"].posted()] == ["Working on it…"]
        gate.set()
        _wait_for(lambda: slack["stub"].posted()[0]["text"] != "Working on it…")
        [answer] = slack["stub"].posted()
        assert answer["text"] == "Priya Shah is paid up." and answer["thread_ts"]
    finally:
        gate.set()


def test_simultaneous_deliveries_of_one_event_answer_once(slack):
    """Four copies of one event arriving together (no retry header): one answer, one claim."""
    app = make_app(slack)
    body = json.dumps(mention("what's our MRR?", event_id="EvRACE"))
    barrier = threading.Barrier(4)
    statuses: list[int] = []

    def deliver() -> None:
        request = signed(body)
        barrier.wait()
        statuses.append(app.dispatch(request).status)

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert statuses == [200] * 4
    assert len(slack["stub"].posted()) == 1
    with slack["services"].session() as s:
        assert count(s, SlackEvent, event_id="EvRACE") == 1


def _engine_down(backend_url: str) -> Any:
    """An engine that cannot connect (a closed port, or a SQLite file in a missing folder)."""
    if backend_url.startswith("sqlite"):
        return create_engine("sqlite:////nonexistent-deskbooks-dir/down/books.db")
    return create_engine("postgresql+psycopg://postgres@127.0.0.1:1/test",
                         connect_args={"connect_timeout": 2})


def test_database_down_gives_a_ref_and_the_retry_answers_once(slack):
    """DB unreachable: the user gets a ref and Slack is told to retry; the retry answers once."""
    app = make_app(slack)
    svc = slack["services"]
    body = json.dumps(mention("what's our MRR?", event_id="EvDOWN"))
    healthy = svc.engine
    svc.engine = _engine_down(str(healthy.url))
    try:
        first = app.dispatch(signed(body))
        second = app.dispatch(signed(body, retry=1))  # Slack retries while it is still down
    finally:
        svc.engine.dispose()
        svc.engine = healthy
    assert first.status >= 500 and second.status >= 500
    [notice] = slack["stub"].posted()
    assert "ref " in notice["text"] and notice["thread_ts"] == "1595926230.009600"
    assert app.dispatch(signed(body, retry=2)).status == 200  # the database is back
    assert app.dispatch(signed(body, retry=3)).status == 200  # a late duplicate
    posts = slack["stub"].posted()
    assert len(posts) == 2 and "$300.00" in posts[1]["text"]
    with svc.session() as s:
        assert count(s, SlackEvent, event_id="EvDOWN") == 1


def test_database_failing_right_after_a_success_still_answers_with_a_ref(slack):
    """Acked in the healthy window, the listener meets the dead database: a ref; the next
    event is checked before its ack and refused with 503."""
    app = make_app(slack)
    app_deps(app).health.fresh_s = 600  # however slow this machine is, "right after"
    svc = slack["services"]
    assert app.dispatch(signed(json.dumps(mention("what's our MRR?", event_id="EvOK")))
                        ).status == 200
    healthy = svc.engine
    svc.engine = _engine_down(str(healthy.url))
    try:
        late = app.dispatch(signed(json.dumps(mention("and occupancy?", event_id="EvLATE"))))
        next_one = app.dispatch(signed(json.dumps(mention("and now?", event_id="EvNEXT"))))
    finally:
        svc.engine.dispose()
        svc.engine = healthy
    assert late.status == 200 and next_one.status == 503
    texts = [m["text"] for m in slack["stub"].posted()]
    assert len(texts) == 3 and all("ref " in t for t in texts[1:])


def test_ack_gate_holds_work_until_acks_are_done():
    """Listener work waits while a request is being acked, and no longer than max_wait_s."""
    gate = AckGate(max_wait_s=5, quiet_s=0.01)
    done = threading.Event()
    worker = threading.Thread(target=lambda: (gate.wait(), done.set()))
    with gate.acking():
        worker.start()
        assert not done.wait(0.2)
    assert done.wait(2)
    worker.join()
    impatient = AckGate(max_wait_s=0.05)
    with impatient.acking():
        started = time.monotonic()
        impatient.wait()
        assert time.monotonic() - started < 1


def test_served_over_http_by_waitress_acks_and_answers(slack):
    """The WSGI app on a real waitress server in HTTP mode: 200 for a signed mention, the
    answer in the thread, 401 for an unsigned one."""
    from bot.slack.server import make_server, make_wsgi_app

    svc = slack["services"]
    gate = AckGate()
    app = build_app(svc, assistant=Assistant(svc), client=slack["client"], gate=gate)
    server = make_server(make_wsgi_app(svc, app, gate=gate), 0, "127.0.0.1", threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        body = json.dumps(mention("what's our MRR?", event_id="EvHTTP")).encode()
        status, _ = _post_http(server.effective_port, body, _signed_headers(body))
        assert status == 200
        _wait_for(lambda: slack["stub"].posted())
        assert "$300.00" in slack["stub"].posted()[0]["text"]
        status, _ = _post_http(server.effective_port, body, {"Content-Type": "application/json"})
        assert status == 401
    finally:
        server.close()


def _post_http(port: int, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request("POST", "/slack/events", body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_button_failure_shows_a_ref_not_an_exception(slack):
    """A click while the database is down: an ephemeral with a ref, no exception text."""
    app = make_app(slack)
    bill_id = _bill(slack, 200_000)
    svc = slack["services"]
    healthy = svc.engine
    svc.engine = _engine_down(str(healthy.url))
    try:
        app.dispatch(interactive(_click(ids.BILL_APPROVE, f"bill:{bill_id}", user="UGM")))
    finally:
        svc.engine.dispose()
        svc.engine = healthy
    [text] = ephemerals(slack)
    assert "ref " in text and "Error" not in text and "psycopg" not in text


# --------------------------------------------------------------------------- receipts


def starbucks_png() -> bytes:
    return encode(draw_receipt([
        ("STARBUCKS", None), ("Date: 2026-11-20", None), ("Latte", "4.50"),
        ("Muffin", "3.25"), ("TOTAL", "7.75"), ("VISA **** 4242", "7.75")]), "PNG")


def receipt_pdf(vendor: str, day: str, total: str) -> bytes:
    return text_pdf([[vendor, f"Date: {day}", f"Supplies {total}", f"TOTAL {total}"]])


@pytest.mark.slow  # real OCR of a rendered photo (a few seconds)
def test_dm_receipt_photo_becomes_a_card_and_confirm_posts_it(slack):
    """A receipt photo in a DM: files.info + download with the bot token, card, Confirm posts."""
    slack["stub"].add_file("FRCPT1", "IMG_2041.png", "image/png", starbucks_png())
    app = make_app(slack)
    assert app.dispatch(signed(json.dumps(dm_with_file("FRCPT1", "IMG_2041.png",
                                                       "image/png")))).status == 200
    assert [c["file"] for c in slack["stub"].named("files.info")] == ["FRCPT1"]
    [card] = slack["stub"].posted(DM)
    assert card["thread_ts"] == "1652227646.593159"
    text = json.dumps(card["blocks"])
    assert "STARBUCKS" in text.upper() and "$7.75" in text and "6000" in text
    for action in (ids.RECEIPT_CONFIRM, ids.RECEIPT_CHANGE, ids.RECEIPT_DISCARD):
        button_value(card, action)
    app.dispatch(click(card, ids.RECEIPT_CONFIRM, "U111"))  # staff may submit, not post
    assert "confirm expenses" in ephemerals(slack)[0]
    app.dispatch(click(card, ids.RECEIPT_CONFIRM, "W222"))
    app.dispatch(click(card, ids.RECEIPT_CONFIRM, "W222"))  # a double click
    with slack["services"].session() as s:
        [exp] = s.execute(select(Expense)).scalars().all()
        assert (exp.status, exp.account_code, exp.amount_cents) == ("posted", "6000", 775)
        assert exp.submitted_by == "U111" and exp.confirmed_by == "W222"
        lines = s.execute(select(Account.code, JournalLine.amount_cents)
                          .join(Account, Account.id == JournalLine.account_id)
                          .where(JournalLine.entry_id == exp.journal_entry_id)).all()
        assert sorted(lines) == [("2500", -775), ("6000", 775)]
        assert count(s, JournalEntry, source_type="expense") == 1
    [updated] = slack["stub"].posted(DM)
    shown = json.dumps(updated["blocks"])
    assert "Posted by <@W222> to 6000" in shown and ids.RECEIPT_CONFIRM not in shown


def test_change_category_modal_posts_to_the_chosen_account(slack):
    """Change category opens a modal of accounts; the submission posts to the one chosen."""
    slack["stub"].add_file("FPDF1", "staples.pdf", "application/pdf",
                           receipt_pdf("STAPLES", "2026-11-18", "42.10"))
    app = make_app(slack)
    app.dispatch(signed(json.dumps(dm_with_file("FPDF1", "staples.pdf", "application/pdf"))))
    [card] = slack["stub"].posted(DM)
    app.dispatch(click(card, ids.RECEIPT_CHANGE, "W222"))
    [opened] = slack["stub"].named("views.open")
    view = json.loads(opened["view"]) if isinstance(opened["view"], str) else opened["view"]
    assert view["callback_id"] == ids.RECEIPT_CATEGORY_MODAL
    codes = [o["value"] for o in view["blocks"][0]["element"]["options"]]
    assert "6100" in codes and "1510" in codes and "4000" not in codes
    resp = app.dispatch(submission(ids.RECEIPT_CATEGORY_MODAL, view["private_metadata"], {
        ids.ACCOUNT_BLOCK: {ids.ACCOUNT_INPUT: {"type": "static_select",
                                                "selected_option": {"value": "1510"}}}}))
    assert resp.status == 200
    with slack["services"].session() as s:
        [exp] = s.execute(select(Expense)).scalars().all()
        assert (exp.status, exp.account_code, exp.amount_cents) == ("posted", "1510", 4210)
    assert "to 1510" in json.dumps(slack["stub"].posted(DM)[0]["blocks"])


def test_discard_leaves_nothing_posted(slack):
    """Discard marks the draft discarded, posts nothing, and says who discarded it."""
    slack["stub"].add_file("FPDF2", "lunch.pdf", "application/pdf",
                           receipt_pdf("CORNER DELI", "2026-11-19", "18.40"))
    app = make_app(slack)
    app.dispatch(signed(json.dumps(dm_with_file("FPDF2", "lunch.pdf", "application/pdf"))))
    [card] = slack["stub"].posted(DM)
    app.dispatch(click(card, ids.RECEIPT_DISCARD, "W222"))
    with slack["services"].session() as s:
        assert s.execute(select(Expense.status)).scalar_one() == "discarded"
        assert count(s, JournalEntry) == 0
    shown = json.dumps(slack["stub"].posted(DM)[0]["blocks"])
    assert "Discarded by <@W222>" in shown and ids.RECEIPT_CONFIRM not in shown


def test_a_likely_duplicate_is_held_until_someone_says_it_is_not(slack):
    """The same receipt twice: the second card warns; Confirm refuses, "Not a duplicate" posts."""
    pdf = receipt_pdf("OFFICE DEPOT", "2026-11-17", "64.99")
    slack["stub"].add_file("FDUP1", "depot.pdf", "application/pdf", pdf)
    slack["stub"].add_file("FDUP2", "depot-again.pdf", "application/pdf", pdf)
    app = make_app(slack)
    app.dispatch(signed(json.dumps(dm_with_file("FDUP1", "depot.pdf", "application/pdf"))))
    app.dispatch(click(slack["stub"].posted(DM)[0], ids.RECEIPT_CONFIRM, "W222"))
    app.dispatch(signed(json.dumps(dm_with_file("FDUP2", "depot-again.pdf", "application/pdf",
                                                event_id="EvFILE2"))))
    second = slack["stub"].posted(DM)[1]
    assert "Possible duplicate of expense #" in json.dumps(second["blocks"])
    app.dispatch(click(second, ids.RECEIPT_CONFIRM, "W222"))
    assert "looks like a duplicate" in ephemerals(slack)[-1]
    app.dispatch(click(second, ids.RECEIPT_CONFIRM_ANYWAY, "W222"))
    with slack["services"].session() as s:
        assert [e.status for e in s.execute(select(Expense).order_by(Expense.id)).scalars()] \
            == ["posted", "posted"]
        assert count(s, JournalEntry, source_type="expense") == 2
    assert "Posted by <@W222>" in json.dumps(slack["stub"].posted(DM)[1]["blocks"])


def test_files_that_are_not_receipts_too_big_or_elsewhere_are_refused(slack):
    """A text file, an oversized image and a file hosted off Slack each get a clear reply."""
    stub = slack["stub"]
    with_settings(slack, max_upload_mb=1)
    stub.add_file("FTXT", "notes.txt", "text/plain", b"just notes")
    stub.add_file("FBIG", "huge.png", "image/png", b"\x89PNG" + b"0" * 1_200_000)
    stub.add_file("FOUT", "elsewhere.png", "image/png", starbucks_png(),
                  url="https://evil.example/files/FOUT")
    app = make_app(slack)
    for n, (fid, name, kind) in enumerate([("FTXT", "notes.txt", "text/plain"),
                                           ("FBIG", "huge.png", "image/png"),
                                           ("FOUT", "elsewhere.png", "image/png")]):
        app.dispatch(signed(json.dumps(dm_with_file(fid, name, kind, event_id=f"EvF{n}"))))
    replies = [m["text"] for m in stub.posted(DM)]
    assert "notes.txt is not an image or a PDF" in replies[0]
    assert "huge.png is 1.2 MB; the limit is 1 MB" in replies[1]
    assert "not hosted on Slack's file servers" in replies[2]
    assert [c["file"] for c in stub.named("files.info")] == ["FBIG", "FOUT"]
    in_channel = payload("message_with_files_event_callback.json")  # #general, no mention
    in_channel["event"]["files"][0]["id"] = "FBIG"
    app.dispatch(signed(json.dumps(in_channel)))
    assert len(stub.named("files.info")) == 2 and len(stub.posted()) == 3
    with slack["services"].session() as s:
        assert count(s, Expense) == 0


# --------------------------------------------------------------------------- approvals


def test_concurrent_approve_clicks_make_one_decision_and_one_entry(slack):
    """Eight signed Approve clicks at once (two GMs): one approval row, one AP entry."""
    app = make_app(slack)
    bill_id = _bill(slack, 200_000)  # over $1,000: one GM step
    users = ["UGM", "UGM2"] * 4
    barrier = threading.Barrier(len(users))
    statuses: list[int] = []

    def run(user: str) -> None:
        request = interactive(_click(ids.BILL_APPROVE, f"bill:{bill_id}", user=user))
        barrier.wait()
        statuses.append(app.dispatch(request).status)

    threads = [threading.Thread(target=run, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert statuses == [200] * len(users)
    with slack["services"].session() as s:
        assert count(s, Approval, subject_type="bill", subject_id=bill_id) == 1
        assert count(s, JournalEntry, source_type="bill", source_id=bill_id) == 1
        assert s.get(Bill, bill_id).status == "approved"
    assert len(slack["stub"].named("chat.update")) == 1
    assert len(ephemerals(slack)) == len(users) - 1


# --------------------------------------------------------------------------- /books and Home


def test_slash_command_kpi_bills_anomalies_and_strangers(slack):
    """`/books kpi mrr`, `bills` and `anomalies` answer in the ack; a stranger is told why not."""
    app = make_app(slack)
    _bill(slack, 200_000)
    _plant_anomaly(slack)
    job_anomaly_scan(slack["services"], SlackNotifier(slack["client"]), FIXED_NOW)

    def ask(text: str, user: str = "W222") -> dict[str, Any]:
        resp = app.dispatch(slash(text, user))
        assert resp.status == 200
        data = json.loads(resp.body)
        assert data["response_type"] == "ephemeral"
        return data

    assert "$300.00" in ask("kpi mrr")["text"]
    assert "Hudson Cleaning $2,000.00" in ask("bills")["text"]
    assert "capex as opex" in ask("anomalies")["text"].replace("_", " ")
    assert "don't know you" in ask("kpi mrr", user="UNOBODY")["text"]
    assert slack["stub"].named("chat.postMessage") == []  # nothing public


def test_slash_close_runs_the_checklist_for_managers_only(slack):
    """`/books close` reports blockers for a manager and refuses staff; `check` never locks."""
    from finance.models import PeriodLock

    app = make_app(slack)

    def ask(text: str, user: str = "W222") -> str:
        resp = app.dispatch(slash(text, user))
        return json.loads(resp.body)["text"]

    assert "Usage" in ask("close")
    assert "needs one of these roles" in ask("close 2026-10", user="U111")
    report = ask("close 2026-10 check")
    assert "bank reconciled" in report and "cannot close yet" in report
    with slack["services"].session() as s:
        assert s.execute(select(PeriodLock)).first() is None


def _home_opened(user: str) -> Any:
    body = {"token": "verification_token", "team_id": TEAM, "api_app_id": "A111",
            "event": {"type": "app_home_opened", "user": user, "channel": "D0HOME",
                      "tab": "home", "event_ts": "1700000000.000100"},
            "type": "event_callback", "event_id": f"EvHOME{user}", "event_time": 1700000000}
    return signed(json.dumps(body))


def test_app_home_publishes_a_dashboard_by_role(slack):
    """Opening App Home publishes tiles for a manager; staff get theirs without a crash."""
    app = make_app(slack)
    _bill(slack, 200_000)
    assert app.dispatch(_home_opened("UGM")).status == 200
    assert app.dispatch(_home_opened("U111")).status == 200
    published = slack["stub"].named("views.publish")
    assert [p["user_id"] for p in published] == ["UGM", "U111"]
    views = [json.loads(p["view"]) if isinstance(p["view"], str) else p["view"]
             for p in published]
    gm = json.dumps(views[0])
    for tile in ("MRR", "MRR vs plan", "Occupancy", "Active members", "Overdue A/R"):
        assert tile in gm
    assert "$300.00" in gm and "H-200000" in gm  # MRR, and the bill waiting for this GM
    assert views[1]["type"] == "home" and "MRR vs plan" in json.dumps(views[1])


# --------------------------------------------------------------------------- scheduled posts


def _plant_anomaly(slack: dict[str, Any]) -> None:
    """A $3,200 chair booked to Office Supplies this month (capex_as_opex)."""
    from finance.models import Location

    with slack["services"].session() as s:
        loc = s.execute(select(Location.id)).scalar_one()
        s.add(Expense(vendor_name="Herman Miller", location_id=loc,
                      expense_date=date(2026, 11, 10), amount_cents=320_000,
                      account_code="6100", description="Aeron chair", payment_method="card",
                      status="posted"))


def test_anomaly_alert_has_investigate_and_dismiss(slack):
    """The daily scan posts new findings to the alert channel; managers triage by button."""
    with_settings(slack, alert_channel=ALERTS)
    _plant_anomaly(slack)
    app = make_app(slack)
    result = job_anomaly_scan(slack["services"], SlackNotifier(slack["client"]), FIXED_NOW)
    assert result["new"] == 1
    [alert] = slack["stub"].posted(ALERTS)
    assert "Herman Miller" in alert["text"]
    app.dispatch(click(alert, ids.ANOMALY_DISMISS, "U111"))
    app.dispatch(click(alert, ids.ANOMALY_INVESTIGATE, "W222"))
    [alert] = slack["stub"].posted(ALERTS)
    assert "<@W222> is investigating" in json.dumps(alert["blocks"])
    app.dispatch(click(alert, ids.ANOMALY_DISMISS, "W222"))
    with slack["services"].session() as s:
        row = s.execute(select(Anomaly)).scalar_one()
        assert (row.status, row.status_by) == ("dismissed", "W222")
    [alert] = slack["stub"].posted(ALERTS)
    shown = json.dumps(alert["blocks"])
    assert "dismissed by <@W222>" in shown and ids.ANOMALY_DISMISS not in shown
    assert len(ephemerals(slack)) == 1  # staff were refused


def test_billing_run_summary_confirm_issues_the_invoices(slack):
    """The monthly run posts "Approve and issue N invoices"; a manager's Confirm issues them."""
    with_settings(slack, alert_channel=ALERTS)
    app = make_app(slack)
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    result = job_billing_monthly(slack["services"], SlackNotifier(slack["client"]), now)
    assert result["drafts"] == 1
    [summary] = slack["stub"].posted(ALERTS)
    assert "1 draft invoices" in summary["text"]
    with slack["services"].session() as s:
        assert s.execute(select(Invoice.status)).scalar_one() == "draft"
    app.dispatch(click(summary, ids.CONFIRM_ACTION, "U111"))
    app.dispatch(click(summary, ids.CONFIRM_ACTION, "W222"))
    app.dispatch(click(summary, ids.CONFIRM_ACTION, "W222"))
    with slack["services"].session() as s:
        [inv] = s.execute(select(Invoice)).scalars().all()
        assert inv.status != "draft" and inv.number and inv.journal_entry_id is not None
    [summary] = slack["stub"].posted(ALERTS)
    assert "<@W222>" in json.dumps(summary["blocks"])
    assert ids.CONFIRM_ACTION not in json.dumps(summary["blocks"])


def test_kpi_digest_uploads_the_chart_with_the_external_upload_pair(slack):
    """The weekly digest posts KPIs and uploads a PNG via getUploadURLExternal + complete."""
    with_settings(slack, alert_channel=ALERTS)
    result = job_kpi_digest(slack["services"], SlackNotifier(slack["client"]), FIXED_NOW)
    assert result["chart"] is True
    stub = slack["stub"]
    [url_call] = stub.named("files.getUploadURLExternal")
    [complete] = stub.named("files.completeUploadExternal")
    assert url_call["filename"] == "mrr-2026-11-29.png"
    assert complete["channel_id"] == ALERTS
    [(file_id, data)] = stub.uploads.items()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and int(url_call["length"]) == len(data)
    files = complete["files"]
    files = json.loads(files) if isinstance(files, str) else files
    assert files[0]["id"] == file_id and files[0]["title"] == "MRR vs plan"
    assert "Weekly digest" in stub.posted(ALERTS)[0]["text"]



# --------------------------------------------------------------------------- install


def test_manifest_matches_what_the_app_listens_to(slack):
    """The manifest's URLs, events, command and scopes are the ones the app serves and needs."""
    manifest = yaml.safe_load((Path(__file__).parent.parent / "slack_manifest.yaml").read_text())
    settings, features = manifest["settings"], manifest["features"]
    urls = [settings["event_subscriptions"]["request_url"],
            settings["interactivity"]["request_url"],
            *(c["url"] for c in features["slash_commands"])]
    assert all(u.startswith("https://") and u.endswith("/slack/events") for u in urls)
    assert settings["interactivity"]["is_enabled"] is True
    assert features["app_home"]["home_tab_enabled"] is True
    assert [c["command"] for c in features["slash_commands"]] == ["/books"]
    events = set(settings["event_subscriptions"]["bot_events"])
    assert events == {"app_mention", "message.im", "message.channels", "file_shared",
                      "app_home_opened"}
    app = make_app(slack)
    for event in sorted({e.split(".")[0] for e in events}):  # message.im -> message
        body = {"type": "event_callback", "team_id": TEAM, "event_id": f"EvM-{event}",
                "event": {"type": event, "user": "UNOBODY", "channel": "C0", "ts": "1.0",
                          "event_ts": "1.0", "tab": "messages", "file_id": "F0", "text": ""}}
        resp = app.dispatch(signed(json.dumps(body)))
        assert resp.status == 200, event  # a listener exists (unhandled events would 404)
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {"app_mentions:read", "chat:write", "commands", "files:read", "files:write",
            "im:history", "im:read", "im:write", "channels:history", "groups:history",
            "users:read", "reactions:write"} <= scopes


def test_slack_user_cli_adds_changes_lists_and_deactivates(tmp_path, monkeypatch):
    """`deskbooks slack-user add/list/remove` manage roles; bad roles and ids are one line."""
    from typer.testing import CliRunner

    from bot.cli import app as cli

    monkeypatch.setenv("DESKBOOKS_DATA_DIR", str(tmp_path))
    runner = CliRunner()
    assert runner.invoke(cli, ["init"]).exit_code == 0
    added = runner.invoke(cli, ["slack-user", "add", "U0MAYA", "--team", "T0SPACE",
                                "--name", "Maya Lopez", "--role", "manager"])
    assert added.exit_code == 0, added.output
    assert "Maya Lopez (T0SPACE/U0MAYA) is manager" in added.output
    changed = runner.invoke(cli, ["slack-user", "add", "U0MAYA", "--team", "T0SPACE",
                                  "--name", "Maya Lopez", "--role", "CFO"])
    assert changed.exit_code == 0 and "is cfo" in changed.output
    bad = runner.invoke(cli, ["slack-user", "add", "U0X", "--team", "T0SPACE", "--name", "X",
                              "--role", "boss"])
    assert bad.exit_code == 2 and "unknown role 'boss'" in bad.output
    bad_id = runner.invoke(cli, ["slack-user", "add", "maya", "--team", "T0SPACE",
                                 "--name", "X", "--role", "staff"])
    assert bad_id.exit_code == 2 and "is not a Slack user id" in bad_id.output
    assert runner.invoke(cli, ["slack-user", "remove", "U0MAYA", "--team",
                               "T0SPACE"]).exit_code == 0
    listed = runner.invoke(cli, ["slack-user", "list", "--json"])
    assert json.loads(listed.stdout)["users"] == [
        {"team_id": "T0SPACE", "user_id": "U0MAYA", "name": "Maya Lopez", "role": "cfo",
         "location": None, "active": False}]
