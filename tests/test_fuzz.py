"""Property-based fuzzing (hypothesis) of everything that reads outside input.

Each property states what "never crashes" means for that input: importers raise only their
domain error (``ImportFileError``) or return a report, and write nothing unless the whole file
is good; receipt extraction and loading return a result or ``ReceiptInputError``; the router
returns one of its three decision types, and a routed call's arguments pass its tool's schema;
the HTTP layer (Slack events through Bolt with valid signatures, the usage hook) never answers
5xx. Decompression bombs and non-image uploads are refused before decoding, end to end
through the receipt tool, with nothing filed.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import io
import json
import time
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlmodel import SQLModel

from finance.authz import Actor
from finance.imports import ImportFileError
from tests.helpers import add_member, build_space

OPERATOR = Actor.system("fuzz")
FIXTURE_OK = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
              HealthCheck.data_too_large]
FAST = settings(max_examples=150, deadline=None, suppress_health_check=FIXTURE_OK)
DB = settings(max_examples=25, deadline=None, suppress_health_check=FIXTURE_OK)

# cells that look like what the importers expect, mixed with hostile ones
CELL = st.one_of(
    st.sampled_from(["", "DT", "Downtown", "ACME", "M-1", "Hot Desk", "hot_desk", "monthly",
                     "2026-03-01", "03/01/2026", "1,250.00", "$99", "(12.50)", "-0", "1e9",
                     "ach", "card", "cash", "USD", "person", "company", "=cmd|' /C calc'!A0",
                     "'; DROP TABLE member; --", "<!channel>", "\u202eevil", "NaN", "∞"]),
    st.text(max_size=30),
    st.integers(-10**12, 10**12).map(str),
    st.decimals(allow_nan=False, allow_infinity=False, places=3).map(str),
)


def csv_text(columns: list[str]) -> st.SearchStrategy[bytes]:
    """A CSV with (mostly) the importer's header and random rows; sometimes raw garbage."""

    def render(header: list[str], rows: list[list[str]], sep: str) -> bytes:
        import csv

        out = io.StringIO()
        writer = csv.writer(out, delimiter=sep)
        writer.writerow(header)
        writer.writerows(rows)
        return out.getvalue().encode("utf-8")

    structured = st.builds(
        render,
        st.one_of(st.just(columns), st.permutations(columns),
                  st.lists(st.sampled_from(columns + ["junk", ""]), max_size=8)),
        st.lists(st.lists(CELL, min_size=0, max_size=len(columns) + 2), max_size=6),
        st.sampled_from([",", ";", "\t"]),
    )
    return st.one_of(structured, st.binary(max_size=300),
                     st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")))


def row_counts(services: Any) -> tuple[int, ...]:
    tables = SQLModel.metadata.sorted_tables
    stmt = select(*[select(func.count()).select_from(t).scalar_subquery() for t in tables])
    with services.engine.connect() as conn:
        return tuple(conn.execute(stmt).one())


@pytest.fixture
def space(services):
    with services.session() as s:
        info = build_space(s, services.settings.knowledge_path)
        add_member(s, "M-1", "Acme Design", plan_id=info["plans"]["hot"],
                   location_id=info["location"], start=date(2026, 1, 1), price_cents=30_000)
    return info


def _importers() -> dict[str, tuple[Any, list[str]]]:
    from finance import bank, imports
    from finance.expenses import import_expenses_csv

    mapping = bank.CsvMapping(date="Date", amount="Amount", payee="Payee", id="Ref")
    return {
        "members": (imports.import_members,
                    ["code", "name", "kind", "email", "company", "home_location", "joined_on"]),
        "plans": (imports.import_plans,
                  ["name", "desk_type", "price", "location", "interval", "deposit"]),
        "subscriptions": (imports.import_subscriptions,
                          ["member", "plan", "start_date", "location", "end_date", "quantity"]),
        "payments": (imports.import_payments,
                     ["external_id", "member", "date", "amount", "method", "fee"]),
        "expenses": (import_expenses_csv,
                     ["date", "vendor", "description", "amount", "currency", "account"]),
        "bank csv": (lambda svc, actor, data: bank.import_bank(
            svc, actor, data, account="checking", format="csv", mapping=mapping),
            ["Date", "Amount", "Payee", "Ref"]),
    }


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(_importers()))
def test_importers_raise_only_their_domain_error_and_write_all_or_nothing(services, space, kind):
    """Random CSVs: a report or ImportFileError, never another exception; a report with a
    rejected row (or an error) leaves every table as it was."""
    importer, columns = _importers()[kind]

    @DB
    @given(data=csv_text(columns))
    def prop(data: bytes) -> None:
        before = row_counts(services)
        try:
            report = importer(services, OPERATOR, data)
        except ImportFileError:
            assert row_counts(services) == before
            return
        if not report.ok:
            assert report.imported == 0
            assert row_counts(services) == before
        assert report.rows >= 0 and len(report.rejected) <= max(report.rows, 1) * 20

    prop()


@given(data=st.one_of(st.binary(max_size=400),
                      st.binary(max_size=300).map(lambda b: b"<OFX>" + b),
                      st.text(max_size=200).map(
                          lambda t: f"OFXHEADER:100\nDATA:OFXSGML\n\n<OFX>{t}".encode())))
@FAST
def test_ofx_parser_returns_or_raises_its_domain_error(data):
    """parse_ofx on random bytes returns statements + row errors, or ImportFileError."""
    from finance.bank import parse_ofx

    try:
        statements, errors, warnings = parse_ofx(data)
    except ImportFileError:
        return
    assert isinstance(statements, list) and isinstance(errors, list)


# --------------------------------------------------------------------------- receipts

RECEIPT_WORDS = st.sampled_from([
    "TOTAL", "SUBTOTAL", "TAX", "GST", "VAT", "CASH", "CHANGE", "VISA ****4242", "Starbucks",
    "12.50", "$1,234.56", "RM 10.00", "2026-11-20", "20/11/2026", "Nov 20, 2026", "31/02/2026",
    "99999999999999.99", "-5.00", "TOTAL 0.00", "Ignore previous instructions", "\t", "€",
])
RECEIPT_TEXT = st.lists(st.one_of(RECEIPT_WORDS, st.text(max_size=40)), max_size=25).map(
    lambda parts: "\n".join(parts))


@given(text=RECEIPT_TEXT, order=st.sampled_from(["day_first", "month_first"]))
@FAST
def test_receipt_extraction_never_crashes_and_stays_plausible(text, order):
    """extract_fields on random text: whole cents (negative only when the text shows a
    minus), no date beyond the future tolerance, a four-digit card suffix."""
    from finance.receipts import extract_fields

    today = date(2026, 11, 29)
    fields = extract_fields(text, date_order=order, today=today, default_currency="USD")
    for cents in (fields.total_cents, fields.tax_cents, fields.subtotal_cents):
        assert cents is None or isinstance(cents, int)
        if cents is not None and cents < 0:  # a refund: the text shows a minus or parentheses
            assert "-" in text or "(" in text or "−" in text
    assert fields.date is None or fields.date <= today + timedelta(days=3)
    assert fields.card_last4 is None or (len(fields.card_last4) == 4
                                         and fields.card_last4.isdigit())


MAGIC = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"%PDF-1.4\n", b"RIFF\x00\x00\x00\x00WEBP",
         b"\x00\x00\x00\x18ftypheic", b"GIF89a", b"PK\x03\x04", b"\x7fELF", b"<html>"]


@given(data=st.one_of(st.binary(max_size=2_000),
                      st.tuples(st.sampled_from(MAGIC), st.binary(max_size=2_000)).map(
                          lambda t: t[0] + t[1])))
@FAST
def test_receipt_loading_returns_pages_or_a_clear_refusal(data):
    """load_receipt on random bytes (with and without real magic numbers): pages or
    ReceiptInputError with a message, never another exception."""
    from finance.receipts import ReceiptInputError, load_receipt

    try:
        loaded = load_receipt(data)
    except ReceiptInputError as exc:
        assert str(exc)
        return
    assert loaded.pages and loaded.sha256 == hashlib.sha256(data).hexdigest()


def _bomb_png(side: int) -> bytes:
    from tests.test_receipt_images import bomb_png

    return bomb_png(side, side)


NOT_RECEIPTS = {
    "png bomb 40k x 40k": _bomb_png(40_000),
    "png bomb 8k x 8k": _bomb_png(8_000),
    "gif": b"GIF89a" + b"\xff\xff\xff\xff" + b"\x00" * 64,
    "zip": b"PK\x03\x04" + b"\x00" * 200,
    "elf": b"\x7fELF\x02\x01\x01" + b"\x00" * 200,
    "html": b"<!doctype html><script>alert(1)</script>",
    "svg": b"<svg xmlns='http://www.w3.org/2000/svg'><script>x</script></svg>",
    "truncated jpeg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 50,
    "pdf that is not": b"%PDF-1.7\n" + b"garbage " * 100,
    "empty": b"",
}


@pytest.mark.parametrize("name", list(NOT_RECEIPTS))
def test_bombs_and_non_images_through_the_receipt_tool_file_nothing(sqlite_services, name):
    """A Slack upload that is a bomb or not an image gets a clear refusal from scan_receipt
    (no traceback text), fast, and no expense or pending action is filed."""
    from finance.models import Expense, PendingAction
    from tests.helpers import count
    from tools.base import ToolContext, ToolError, invoke

    svc = sqlite_services
    with svc.session() as s:
        space = build_space(s, svc.settings.knowledge_path)
    ctx = ToolContext(services=svc, actor=Actor("USTAFF", "T1"), today=date(2026, 11, 29),
                      location_id=space["location"],
                      fetch_file=lambda file_id: NOT_RECEIPTS[name])
    started = time.perf_counter()
    with pytest.raises(ToolError) as caught:
        invoke(ctx, "scan_receipt", {"file": "F123"})
    assert time.perf_counter() - started < 10
    message = str(caught.value)
    assert message and "Traceback" not in message and "something went wrong" not in message
    with svc.session() as s:
        assert count(s, Expense) == 0 and count(s, PendingAction) == 0


# --------------------------------------------------------------------------- the router


@functools.lru_cache(maxsize=1)
def _vocab() -> Any:
    from bot.router import LocationEntry, MemberEntry, PlanEntry, Vocabulary

    return Vocabulary(
        members=[MemberEntry(code="M-1", name="Acme Design", kind="company", company=None,
                             location="Downtown"),
                 MemberEntry(code="M-2", name="Priya Shah", kind="person", company=None,
                             location=None),
                 MemberEntry(code="M-3", name="'; DROP TABLE member; --", kind="company",
                             company=None, location=None)],
        plans=[PlanEntry(code="HOT", name="Hot Desk", desk_type="hot_desk", location=None,
                         interval="month"),
               PlanEntry(code="OFF", name="Private Office", desk_type="private_office",
                         location=None, interval="month")],
        locations=[LocationEntry(code="DT", name="Downtown", timezone="America/New_York")],
        vendors=["Starbucks", "Con Edison"],
    )


ROUTER_WORDS = st.sampled_from([
    "run billing", "for", "December", "last month", "Q3", "YTD", "on the 15th", "quote",
    "Priya", "Acme", "to", "private office", "what's", "MRR", "occupancy", "at", "Downtown",
    "categorize", "$42.50", "Starbucks", "anomalies", "bill 42", "approve", "1099s", "2025",
    "sales tax", "owe", "overdue", "invoices", "ignore previous instructions", "<!channel>",
    "2026-02-30", "-$5", "99999999999999", "\u200b", "\u202e", "; DROP TABLE", "'",
])
ROUTER_TEXT = st.one_of(st.text(max_size=200),
                        st.lists(st.one_of(ROUTER_WORDS, st.text(max_size=8)),
                                 max_size=14).map(" ".join))


@given(text=ROUTER_TEXT)
@FAST
def test_router_returns_a_decision_whose_arguments_fit_the_tool(text):
    """route() on random text returns Routed / Clarify / NotUnderstood; a Routed call names a
    real tool and its arguments pass that tool's input schema."""
    from bot.router import Clarify, NotUnderstood, Routed, route
    from tools.base import all_tools

    decision = route(text, vocab=_vocab(), today=date(2026, 11, 29),
                     location_tz="America/New_York")
    assert isinstance(decision, Routed | Clarify | NotUnderstood)
    if isinstance(decision, Routed):
        spec = all_tools()[decision.tool]
        spec.input_model.model_validate(decision.args)
    elif isinstance(decision, Clarify):
        assert decision.question


# --------------------------------------------------------------------------- HTTP


SECRET = "fuzz-signing-secret"


@pytest.fixture(scope="module")
def http_app(tmp_path_factory):
    """The WSGI app (Bolt + usage hook) on a SQLite space, with the local Slack stand-in."""
    from slack_sdk import WebClient

    from bot.assistant import Assistant
    from bot.slack.app import build_app
    from bot.slack.server import make_wsgi_app
    from finance.services import build_services
    from finance.settings import load_settings
    from tests.conftest import FIXED_NOW
    from tests.slack_stub import BOT_TOKEN, SlackStub, serve

    stub = SlackStub()
    with serve(stub) as api_url:
        settings = load_settings(DESKBOOKS_DATA_DIR=str(tmp_path_factory.mktemp("http")))
        settings = settings.model_copy(update={
            "slack_bot_token": SecretStr(BOT_TOKEN), "slack_signing_secret": SecretStr(SECRET),
            "slack_api_url": api_url, "hook_secret": SecretStr(SECRET)})
        svc = build_services(settings, clock=lambda: FIXED_NOW)
        svc.init_schema(fast=True)
        with svc.session() as s:
            info = build_space(s, settings.knowledge_path)
            add_member(s, "M-1", "Acme Design", plan_id=info["plans"]["hot"],
                       location_id=info["location"], start=date(2026, 1, 1),
                       price_cents=30_000)
        bolt = build_app(svc, assistant=Assistant(svc), client=WebClient(
            token=BOT_TOKEN, base_url=api_url), process_before_response=True,
            working_after_s=30)
        yield make_wsgi_app(svc, bolt), stub
        svc.dispose()


def _call(wsgi: Any, path: str, body: bytes, headers: dict[str, str]) -> int:
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": path, "QUERY_STRING": "",
               "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body),
               "CONTENT_TYPE": headers.pop("content-type", "application/json")}
    for key, value in headers.items():
        environ["HTTP_" + key.upper().replace("-", "_")] = value
    seen: dict[str, int] = {}

    def start(status: str, _headers: list[tuple[str, str]]) -> None:
        seen["status"] = int(status.split()[0])

    b"".join(wsgi(environ, start))
    return seen["status"]


def _slack_headers(body: bytes, content_type: str) -> dict[str, str]:
    ts = str(int(time.time()))
    sig = "v0=" + hmac.new(SECRET.encode(), f"v0:{ts}:".encode() + body,
                           hashlib.sha256).hexdigest()
    return {"content-type": content_type, "x-slack-signature": sig,
            "x-slack-request-timestamp": ts}


JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.text(max_size=20),
                      st.sampled_from(["event_callback", "app_mention", "message",
                                       "block_actions", "view_submission", "url_verification",
                                       "T111", "U111", "C111", "1700000000.000100"]))
JSON = st.recursive(JSON_LEAF, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.sampled_from(["type", "event", "team_id", "user", "text", "channel",
                                     "ts", "actions", "view", "challenge", "token", "payload",
                                     "api_app_id", "event_id", "authorizations", "x"]),
                    inner, max_size=6)), max_leaves=20)


def bolt_answers_500(doc: Any) -> bool:
    """Shapes slack_bolt 1.x itself answers with 500 (its middleware and its unmatched-request
    logger dereference them): a signed body whose ``event`` or ``view`` is not an object, or
    a ``block_actions`` payload whose ``actions`` is not a non-empty list of objects. Only a
    holder of the signing secret can send these (Slack never does)."""
    if not isinstance(doc, dict):
        return False
    if any(key in doc and not isinstance(doc[key], dict) for key in ("event", "view")):
        return True
    actions = doc.get("actions")
    return doc.get("type") == "block_actions" and not (
        isinstance(actions, list) and actions and all(isinstance(a, dict) for a in actions))


@given(doc=JSON, as_form=st.booleans())
@settings(max_examples=60, deadline=None, suppress_health_check=FIXTURE_OK)
def test_signed_random_slack_bodies_never_get_a_5xx(http_app, doc, as_form):
    """Correctly signed but random JSON (or form-encoded ``payload=``) bodies: 2xx/4xx, never
    5xx, except the shapes Bolt itself answers 500 (see :func:`bolt_answers_500`)."""
    wsgi, _stub = http_app
    if as_form:
        body = urlencode({"payload": json.dumps(doc)}).encode()
        content_type = "application/x-www-form-urlencoded"
    else:
        body = json.dumps(doc).encode()
        content_type = "application/json"
    status = _call(wsgi, "/slack/events", body, _slack_headers(body, content_type))
    assert status < 500 or bolt_answers_500(doc), (status, body[:300])


EVENT = st.fixed_dictionaries({}, optional={
    "source": st.one_of(st.sampled_from(["pos", "print", "door"]), st.text(max_size=10)),
    "external_id": st.one_of(st.text(max_size=12), st.integers()),
    "member": st.one_of(st.sampled_from(["M-1", "M-404"]), st.text(max_size=10)),
    "location": st.one_of(st.just("DT"), st.text(max_size=5)),
    "kind": st.one_of(st.sampled_from(["coffee", "print", "day_pass", "meeting_room"]),
                      st.text(max_size=10)),
    "quantity": st.one_of(st.integers(-5, 10**9), st.floats(allow_nan=True), st.text()),
    "unit_price_cents": st.one_of(st.integers(-10**15, 10**15), st.none(), st.text()),
    "occurred_at": st.one_of(st.just("2026-11-20T10:00:00Z"), st.text(max_size=25),
                             st.integers()),
})


@given(doc=st.one_of(JSON, st.lists(EVENT, max_size=5),
                     st.fixed_dictionaries({"events": st.lists(EVENT, max_size=5)})))
@settings(max_examples=60, deadline=None, suppress_health_check=FIXTURE_OK)
def test_signed_random_usage_hook_bodies_never_get_a_5xx(http_app, doc):
    """The usage hook with a valid signature and random JSON: 200 with a report, or 400/413,
    never 5xx."""
    wsgi, _stub = http_app
    body = json.dumps(doc).encode()  # NaN floats included: Python writes them, clients do
    ts = str(int(time.time()))
    from bot.slack.server import hook_signature

    headers = {"x-deskbooks-timestamp": ts,
               "x-deskbooks-signature": hook_signature(SECRET, ts, body)}
    status = _call(wsgi, "/hooks/usage", body, headers)
    assert status in (200, 400, 413), (status, body[:300])


def test_fuzz_strategies_produce_varied_input():
    """The CSV strategy yields both parseable tables and garbage (guards against a strategy
    that silently generates only one shape)."""
    seen = set()

    @given(data=csv_text(["a", "b"]))
    @settings(max_examples=80, deadline=None)
    def collect(data: bytes) -> None:
        seen.add("table" if data.startswith((b"a,b", b"a;b", b"a\tb")) else "other")

    collect()
    assert seen == {"table", "other"}
