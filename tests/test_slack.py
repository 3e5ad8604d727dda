"""The Slack app through Bolt's request handling, against a local stand-in for the Web API.

Requests are the real payload shapes from Slack (shared/data/slack, copied into
tests/data/slack), signed with the signing secret the way Slack signs them.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from langchain_core.messages import AIMessage
from slack_bolt.request import BoltRequest
from slack_sdk import WebClient
from sqlalchemy import select

from bot.assistant import Assistant
from bot.slack import ids
from bot.slack.app import SlackConfigError, build_app, request_approvals
from finance.models import Approval, Bill, Invoice, SlackUser
from finance.services import Services
from tests.helpers import add_member, build_space, count
from tests.slack_stub import BOT_TOKEN, SlackStub, serve
from tests.test_agent import call, scripted

DATA = Path(__file__).parent / "data" / "slack"
SECRET = "secret"
TEAM = "T111"


def payload(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text())


def signed(body: str, *, secret: str = SECRET, age: int = 0, content_type: str = "application/json",
           retry: int | None = None) -> BoltRequest:
    ts = str(int(time.time()) - age)
    sig = "v0=" + hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(),
                           hashlib.sha256).hexdigest()
    headers = {"content-type": [content_type], "x-slack-signature": [sig],
               "x-slack-request-timestamp": [ts]}
    if retry is not None:
        headers["x-slack-retry-num"] = [str(retry)]
        headers["x-slack-retry-reason"] = ["http_timeout"]
    return BoltRequest(body=body, headers=headers)


def interactive(body: dict[str, Any], **kw: Any) -> BoltRequest:
    return signed(urlencode({"payload": json.dumps(body)}),
                  content_type="application/x-www-form-urlencoded", **kw)


@contextmanager
def slack_world(services: Services) -> Iterator[dict[str, Any]]:
    """Services with Slack settings, a space with members and roles, and the stand-in."""
    stub = SlackStub()
    with serve(stub) as api_url:
        settings = services.settings.model_copy(update={
            "slack_bot_token": _secret(BOT_TOKEN), "slack_signing_secret": _secret(SECRET),
            "slack_api_url": api_url, "slack_file_hosts": stub.base.split("//", 1)[1]})
        svc = Services(settings=settings, engine=services.engine, clock=services.clock,
                       chart=services.chart)
        with svc.session() as s:
            space = build_space(s, settings.knowledge_path)
            add_member(s, "M-PRIYA", "Priya Shah", plan_id=space["plans"]["hot"],
                       location_id=space["location"], start=date(2026, 1, 1),
                       price_cents=30_000)
            s.add_all([
                SlackUser(team_id=TEAM, user_id="W222", name="Maya Manager", role="manager",
                          location_id=space["location"]),
                SlackUser(team_id=TEAM, user_id="U111", name="Sam Staff", role="staff",
                          location_id=space["location"]),
                SlackUser(team_id=TEAM, user_id="UGM", name="Gina GM", role="gm",
                          location_id=space["location"]),
                SlackUser(team_id=TEAM, user_id="UGM2", name="Gus GM", role="gm",
                          location_id=space["location"]),
                SlackUser(team_id=TEAM, user_id="UCFO", name="Carl CFO", role="cfo",
                          location_id=space["location"]),
            ])
        yield {"services": svc, "stub": stub, "client": WebClient(token=BOT_TOKEN,
                                                                   base_url=api_url)}


@pytest.fixture
def slack(services):
    """The Slack world (see :func:`slack_world`) on the backend under test."""
    with slack_world(services) as world:
        yield world


def _secret(value: str) -> Any:
    from pydantic import SecretStr

    return SecretStr(value)


def make_app(slack: dict[str, Any], model: Any = None) -> Any:
    assistant = Assistant(slack["services"], chat_model=model)
    return build_app(slack["services"], assistant=assistant, client=slack["client"],
                     process_before_response=True, working_after_s=30)


def test_app_refuses_to_start_without_tokens(services):
    """No bot token or signing secret: a clear message naming what is missing."""
    with pytest.raises(SlackConfigError, match="SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET"):
        build_app(services)


def test_bad_and_stale_signatures_are_refused(slack):
    """A wrong secret or a five-minute-old timestamp gets 401 and nothing runs."""
    app = make_app(slack)
    body = json.dumps(payload("app_mention_event_callback.json"))
    assert app.dispatch(signed(body, secret="wrong")).status == 401
    assert app.dispatch(signed(body, age=600)).status == 401
    assert slack["stub"].named("chat.postMessage") == []


def test_url_verification_echoes_the_challenge(slack):
    """Slack's URL check gets its challenge back."""
    body = payload("url_verification.json")
    resp = make_app(slack).dispatch(signed(json.dumps(body)))
    assert resp.status == 200 and body["challenge"] in resp.body


def test_mention_is_answered_in_its_thread_once_despite_retries(slack):
    """An @mention runs the assistant and replies in the thread; Slack's retry is ignored."""
    model = scripted(call("member_balance", {"member": "Priya Shah"}),
                     AIMessage("Priya Shah is paid up."))
    app = make_app(slack, model)
    body = payload("app_mention_event_callback.json")
    body["event"]["text"] = "<@W111> what does Priya owe?"
    assert app.dispatch(signed(json.dumps(body))).status == 200
    assert app.dispatch(signed(json.dumps(body), retry=1)).status == 200
    posts = slack["stub"].named("chat.postMessage")
    assert len(posts) == 1
    assert posts[0]["thread_ts"] == body["event"]["ts"] and posts[0]["channel"] == "C111"
    assert posts[0]["text"] == "Priya Shah is paid up."


def test_unknown_user_mention_gets_a_polite_answer(slack):
    """Someone missing from the store is told so; no tool runs."""
    app = make_app(slack, scripted(AIMessage("never")))
    body = payload("app_mention_event_callback.json")
    body["event"]["user"] = "UNEW"
    app.dispatch(signed(json.dumps(body)))
    assert "don't know you" in slack["stub"].named("chat.postMessage")[0]["text"]


def test_hostile_text_is_escaped_in_messages(slack):
    """<!channel> and links from untrusted text cannot ping or link in our replies."""
    app = make_app(slack, scripted(AIMessage("Hello <!channel> & <https://evil.example|x>")))
    body = payload("app_mention_event_callback.json")
    app.dispatch(signed(json.dumps(body)))
    block_text = slack["stub"].named("chat.postMessage")[0]["blocks"]
    rendered = json.dumps(block_text)
    assert "<!channel>" not in rendered and "&lt;!channel&gt;" in rendered


def _click(action_id: str, value: str, user: str = "W222", **extra: Any) -> dict[str, Any]:
    body = payload("block_actions_button_with_message.json")
    body["user"] = {"id": user, "team_id": TEAM}
    body["team"] = {"id": TEAM}
    body["actions"][0].update(action_id=action_id, value=value)
    body.update(extra)
    return body


def test_billing_preview_is_confirmed_once_by_a_manager(slack):
    """The preview's Confirm is refused for staff, runs once for a manager, offers issuing."""
    model = scripted(call("run_billing", {"period": "2026-02", "dry_run": False}),
                     AIMessage("Ready for your confirmation."))
    app = make_app(slack, model)
    app.dispatch(signed(json.dumps(payload("app_mention_event_callback.json"))))
    post = slack["stub"].named("chat.postMessage")[0]
    buttons = [b for b in post["blocks"] if b["type"] == "actions"][0]["elements"]
    token = buttons[0]["value"]
    assert buttons[0]["action_id"] == ids.CONFIRM_ACTION
    with slack["services"].session() as s:
        assert count(s, Invoice) == 0
    app.dispatch(interactive(_click(ids.CONFIRM_ACTION, token, user="U111")))
    assert "needs one of these roles" in slack["stub"].named("chat.postEphemeral")[0]["text"]
    app.dispatch(interactive(_click(ids.CONFIRM_ACTION, token)))
    app.dispatch(interactive(_click(ids.CONFIRM_ACTION, token)))  # double click
    with slack["services"].session() as s:
        assert count(s, Invoice) == 1
    assert len(slack["stub"].named("chat.update")) == 1
    follow = slack["stub"].named("chat.postMessage")[-1]
    assert "Approve and issue 1 invoices" in follow["text"]


def _bill(slack: dict[str, Any], cents: int) -> int:
    from finance import approvals
    from finance.authz import Actor

    view = approvals.create_bill(slack["services"], Actor("U111", TEAM), approvals.BillDraft(
        vendor="Hudson Cleaning", amount_cents=cents, number=f"H-{cents}",
        bill_date=date(2026, 11, 20), account_code="5300", location="DT"))
    return view.id


def test_bill_approval_chain_gm_then_cfo(slack):
    """A $7,000 bill: staff cannot approve, GM approves (CFO asked next), CFO approves."""
    app = make_app(slack)
    bill_id = _bill(slack, 700_000)
    targets = request_approvals(app_deps(app), slack["client"], bill_id)
    assert set(targets) >= {"UGM"}
    app.dispatch(interactive(_click(ids.BILL_APPROVE, f"bill:{bill_id}", user="U111")))
    app.dispatch(interactive(_click(ids.BILL_APPROVE, f"bill:{bill_id}", user="UGM")))
    app.dispatch(interactive(_click(ids.BILL_APPROVE, f"bill:{bill_id}", user="UGM")))
    with slack["services"].session() as s:
        assert count(s, Approval, subject_id=bill_id) == 1
    asked = [p["channel"] for p in slack["stub"].named("chat.postMessage")]
    assert "UCFO" in asked
    app.dispatch(interactive(_click(ids.BILL_APPROVE, f"bill:{bill_id}", user="UCFO")))
    with slack["services"].session() as s:
        bill = s.get(Bill, bill_id)
        assert bill.status == "approved" and bill.journal_entry_id is not None
    updates = slack["stub"].named("chat.update")
    assert "approved" in json.dumps(updates[-1]["blocks"])
    ephemeral = [e["text"] for e in slack["stub"].named("chat.postEphemeral")]
    assert len(ephemeral) == 2  # the staff refusal and the GM's second click


def app_deps(app: Any) -> Any:
    """The deps closed over by the registered listeners (for calling flows directly)."""
    from bot.slack.app import SlackDeps

    for listener in app._listeners:
        for cell in getattr(listener.ack_function, "__closure__", None) or ():
            if isinstance(cell.cell_contents, SlackDeps):
                return cell.cell_contents
    raise AssertionError("no deps found")


def test_reject_needs_a_reason_in_the_modal(slack):
    """Reject opens a modal; an empty reason is refused in the modal; a reason rejects."""
    app = make_app(slack)
    bill_id = _bill(slack, 200_000)
    app.dispatch(interactive(_click(ids.BILL_REJECT, f"bill:{bill_id}", user="UGM")))
    view = slack["stub"].named("views.open")[0]["view"]
    view = json.loads(view) if isinstance(view, str) else view
    assert view["callback_id"] == ids.BILL_REJECT_MODAL
    submission = payload("view_submission.json")
    submission["user"] = {"id": "UGM", "team_id": TEAM}
    submission["team"] = {"id": TEAM}
    submission["view"].update(callback_id=ids.BILL_REJECT_MODAL,
                              private_metadata=view["private_metadata"])
    submission["view"]["state"] = {"values": {ids.REASON_BLOCK: {ids.REASON_INPUT: {
        "type": "plain_text_input", "value": "  "}}}}
    resp = app.dispatch(interactive(submission))
    assert json.loads(resp.body)["response_action"] == "errors"
    submission["view"]["state"]["values"][ids.REASON_BLOCK][ids.REASON_INPUT]["value"] = \
        "Duplicate of H-199"
    assert app.dispatch(interactive(submission)).status == 200
    with slack["services"].session() as s:
        assert s.get(Bill, bill_id).status == "rejected"
        reason = s.execute(select(Approval.reason).where(Approval.subject_id == bill_id)
                           ).scalar_one()
    assert reason == "Duplicate of H-199"


def test_slash_command_help_is_ephemeral_and_fast(slack):
    """`/books help` answers in the ack, only to the caller."""
    app = make_app(slack)
    body = (DATA / "slash_command_body.txt").read_text().strip()
    body = body.replace("command=%2Fhello-world", "command=%2Fbooks").replace("text=Hi",
                                                                              "text=help")
    resp = app.dispatch(signed(body, content_type="application/x-www-form-urlencoded"))
    data = json.loads(resp.body)
    assert resp.status == 200 and data["response_type"] == "ephemeral"
    assert "/books kpi mrr" in data["text"]


def wsgi_call(wsgi: Any, path: str, body: bytes = b"", *, method: str = "POST",
              headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """Call the WSGI app the way a server would; returns (status, body)."""
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "",
               "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body),
               "CONTENT_TYPE": (headers or {}).pop("content-type", "application/json")}
    for key, value in (headers or {}).items():
        environ["HTTP_" + key.upper().replace("-", "_")] = value
    seen: dict[str, Any] = {}

    def start(status: str, hdrs: list[tuple[str, str]]) -> None:
        seen["status"] = int(status.split()[0])

    out = b"".join(wsgi(environ, start))
    return seen["status"], out


def _signed_headers(body: bytes, content_type: str = "application/json") -> dict[str, str]:
    ts = str(int(time.time()))
    sig = "v0=" + hmac.new(SECRET.encode(), f"v0:{ts}:".encode() + body,
                           hashlib.sha256).hexdigest()
    return {"content-type": content_type, "x-slack-signature": sig,
            "x-slack-request-timestamp": ts}


def test_http_layer_limits_and_malformed_bodies(slack):
    """Oversized bodies get 413, malformed ones 400, unknown paths 404, health 200."""
    from bot.slack.server import make_wsgi_app

    wsgi = make_wsgi_app(slack["services"], make_app(slack), max_body=10_000)
    assert wsgi_call(wsgi, "/healthz", method="GET")[0] == 200
    assert wsgi_call(wsgi, "/nope")[0] == 404
    big = b"x" * 20_000
    assert wsgi_call(wsgi, "/slack/events", big, headers=_signed_headers(big))[0] == 413
    bad = b"{not json"
    assert wsgi_call(wsgi, "/slack/events", bad, headers=_signed_headers(bad))[0] == 400
    good = json.dumps(payload("url_verification.json")).encode()
    status, body = wsgi_call(wsgi, "/slack/events", good, headers=_signed_headers(good))
    assert status == 200 and b"challenge" in body
    assert wsgi_call(wsgi, "/slack/events", good,
                     headers={"content-type": "application/json"})[0] == 401


def test_usage_hook_is_signed_idempotent_and_reports_rejections(slack):
    """Signed POS events are stored once; bad ones are listed by index; bad signatures 401."""
    from pydantic import SecretStr

    from bot.slack.server import hook_signature, make_wsgi_app
    from finance.models import UsageEvent

    svc = slack["services"]
    svc.settings = svc.settings.model_copy(update={"hook_secret": SecretStr("hook-secret")})
    wsgi = make_wsgi_app(svc, None)
    events = [
        {"source": "pos", "external_id": "e1", "member": "M-PRIYA", "location": "DT",
         "kind": "coffee", "quantity": 2, "unit_price_cents": 450,
         "occurred_at": "2026-11-20T10:00:00Z"},
        {"source": "pos", "external_id": "e2", "member": "M-NOBODY", "location": "DT",
         "kind": "coffee", "quantity": 1, "occurred_at": "2026-11-20T10:00:00Z"},
        {"source": "pos", "external_id": "e3", "member": "M-PRIYA", "location": "DT",
         "kind": "print", "quantity": -3, "occurred_at": "2026-11-20T10:00:00Z"},
        {"source": "pos", "member": "M-PRIYA"},
    ]
    body = json.dumps(events).encode()
    ts = str(int(time.time()))
    headers = {"x-deskbooks-timestamp": ts,
               "x-deskbooks-signature": hook_signature("hook-secret", ts, body)}
    status, out = wsgi_call(wsgi, "/hooks/usage", body, headers=dict(headers))
    report = json.loads(out)
    assert status == 200 and report["accepted"] == 1
    assert [r["index"] for r in report["rejected"]] == [1, 2, 3]
    status, out = wsgi_call(wsgi, "/hooks/usage", body, headers=dict(headers))
    assert json.loads(out)["duplicates"] == 1 and json.loads(out)["accepted"] == 0
    with svc.session() as s:
        assert count(s, UsageEvent) == 1
    headers["x-deskbooks-signature"] = "v1=" + "0" * 64
    assert wsgi_call(wsgi, "/hooks/usage", body, headers=dict(headers))[0] == 401
    stale = str(int(time.time()) - 3600)
    headers = {"x-deskbooks-timestamp": stale,
               "x-deskbooks-signature": hook_signature("hook-secret", stale, body)}
    assert wsgi_call(wsgi, "/hooks/usage", body, headers=headers)[0] == 401
