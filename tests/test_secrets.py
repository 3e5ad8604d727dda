"""Secrets never appear in logs, output or error messages, even at DEBUG.

Every secret deskbooks reads is set to a recognizable value (Slack bot token and signing
secret, OpenAI key, the SMTP password inside DESKBOOKS_SMTP_URL, the usage-hook secret, a
PostgreSQL password inside the database URL). Then representative failures run with logging
at DEBUG — bad configuration, an unreachable database, an unreachable LLM through
``deskbooks ask``, SMTP down and SMTP refusing the login, a backup that cannot connect, Slack
and hook requests with bad signatures — and everything they produce (log records with their
tracebacks, stdout, stderr, exception text, stored error columns, HTTP bodies) is searched
for every secret value.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import os
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select

ROOT = Path(__file__).resolve().parent.parent

SECRETS = {
    "SLACK_BOT_TOKEN": "xoxb-S3CRET-bot-4f1c9e",
    "SLACK_SIGNING_SECRET": "S3CRET-signing-9a7e21",
    "OPENAI_API_KEY": "sk-S3CRET-openai-77aa01",
    "DESKBOOKS_HOOK_SECRET": "S3CRET-hook-3b55d0",
}
SMTP_PASSWORD = "S3CRET-smtp-pw-c0ffee"
PG_PASSWORD = "S3CRET-pg-pw-beef42"
VALUES = [*SECRETS.values(), SMTP_PASSWORD, PG_PASSWORD]


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assert_no_secret(*texts: object) -> None:
    for text in texts:
        blob = str(text)
        for value in VALUES:
            assert value not in blob, f"secret {value[:10]}... leaked in: {blob[:300]!r}"


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    """Every captured record: the message, its arguments and any traceback."""
    parts = []
    for record in caplog.records:
        parts.append(record.getMessage())
        if record.exc_info:
            parts.append("".join(traceback.format_exception(*record.exc_info)))
    return "\n".join(parts)


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    port = closed_port()
    env = {**SECRETS,
           "DESKBOOKS_SMTP_URL": f"smtp://mailer:{SMTP_PASSWORD}@127.0.0.1:{port}",
           "DESKBOOKS_DATA_DIR": str(tmp_path / "data"),
           "DESKBOOKS_LLM_MODEL": "gpt-test",
           "DESKBOOKS_LOG_LEVEL": "DEBUG"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def pg_url(port: int | None = None, password: str = PG_PASSWORD) -> str:
    return f"postgresql+psycopg://postgres:{password}@127.0.0.1:{port or closed_port()}/test"


# --------------------------------------------------------------------------- settings


def test_settings_repr_and_str_hide_every_secret(secret_env, monkeypatch):
    """repr/str of the settings (what ends up in a log line or a traceback) show no secret,
    including the password inside a PostgreSQL URL."""
    from finance.settings import load_settings

    monkeypatch.setenv("DESKBOOKS_DATABASE_URL", pg_url(5432))
    settings = load_settings()
    assert settings.slack_bot_token.get_secret_value() == SECRETS["SLACK_BOT_TOKEN"]
    assert PG_PASSWORD in settings.effective_database_url  # still usable to connect
    assert_no_secret(repr(settings), str(settings), f"{settings}")
    assert "postgres:***@127.0.0.1" in repr(settings)


def test_bad_configuration_errors_name_the_variable_not_the_secrets(secret_env, monkeypatch):
    """A configuration error lists what is wrong without echoing any secret value."""
    from finance.settings import ConfigError, load_settings

    monkeypatch.setenv("DESKBOOKS_DATABASE_URL",
                       f"mysql://root:{PG_PASSWORD}@127.0.0.1/deskbooks")
    monkeypatch.setenv("OPENAI_BASE_URL", f"ftp://user:{SECRETS['OPENAI_API_KEY']}@x/")
    monkeypatch.setenv("DESKBOOKS_MAX_UPLOAD_MB", "0")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "DESKBOOKS_DATABASE_URL" in message or "database_url" in message
    assert_no_secret(message, repr(caught.value),
                     "".join(traceback.format_exception(caught.value)))


# --------------------------------------------------------------------------- CLI processes


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items()
            if not k.startswith(("DESKBOOKS_", "SLACK_", "OPENAI_"))}
    full.update(env, PYTHONPATH=str(ROOT), ORT_DISABLE_TELEMETRY="1")
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], env=full, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_cli_failures_at_debug_print_no_secret(secret_env, tmp_path):
    """`deskbooks` at DEBUG with every secret set: a bad config, a database that refuses the
    connection and an LLM nobody answers for all fail with a message and no secret on
    stdout or stderr."""
    bad_config = run_cli(["ledger", "trial-balance"],
                         {**secret_env, "DESKBOOKS_MAX_UPLOAD_MB": "0"})
    assert bad_config.returncode == 2 and "invalid configuration" in bad_config.stderr
    no_db = run_cli(["ledger", "trial-balance"],
                    {**secret_env, "DESKBOOKS_DATABASE_URL": pg_url()})
    assert no_db.returncode == 2 and "cannot reach the database" in no_db.stderr
    assert "***" in no_db.stderr  # the URL is shown, its password masked
    no_llm = run_cli(["ask", "what's MRR?"], {
        **secret_env, "OPENAI_BASE_URL": f"http://127.0.0.1:{closed_port()}/v1"})
    assert no_llm.returncode != 0 or "went wrong" in no_llm.stdout + no_llm.stderr
    for result in (bad_config, no_db, no_llm):
        assert_no_secret(result.stdout, result.stderr)


# --------------------------------------------------------------------------- in-process failures


def test_smtp_down_and_refused_login_store_and_log_no_password(sqlite_services, caplog):
    """Dunning mail with SMTP down, and with the server refusing the login: the outbox keeps
    the error, the logs and the error text hold no SMTP password."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    from finance.mail import MailError, deliver_outbox, smtp_sender
    from finance.models import EmailOutbox

    caplog.set_level(logging.DEBUG)
    svc = sqlite_services
    with svc.session() as s:
        s.add_all([EmailOutbox(dedupe_key=f"k{i}", to_address="m@example.com",
                               subject="Reminder", body="Please pay") for i in range(2)])
    down = smtp_sender(f"smtp://mailer:{SMTP_PASSWORD}@127.0.0.1:{closed_port()}", "b@x.test",
                       timeout=5)
    with pytest.raises(MailError) as caught:
        down("m@example.com", "s", "b")
    errors = [str(caught.value)]

    port = closed_port()
    controller = Controller(
        object(), hostname="127.0.0.1", port=port, auth_require_tls=False,
        authenticator=lambda *args: AuthResult(success=False, handled=False))
    controller.start()
    try:
        refused = smtp_sender(f"smtp://mailer:{SMTP_PASSWORD}@127.0.0.1:{port}", "b@x.test",
                              timeout=5)
        with pytest.raises(MailError) as caught:
            refused("m@example.com", "s", "b")
        errors.append(str(caught.value))
        report = deliver_outbox(svc.session, refused)
    finally:
        controller.stop()
    assert "Authentication" in errors[1] or "535" in errors[1]
    assert report.failed == 2
    with svc.session() as s:
        stored = list(s.execute(select(EmailOutbox.last_error)).scalars())
    assert all(stored)
    assert_no_secret(*errors, *stored, log_text(caplog))


def test_backup_that_cannot_connect_shows_no_password(tmp_path, caplog):
    """A backup of a PostgreSQL URL whose server refuses the connection: the error (whatever
    its type) and the logs have no password (pg_dump gets it through PGPASSWORD)."""
    import shutil

    from finance import backup, db

    if shutil.which("pg_dump") is None:
        pytest.skip("pg_dump is not installed")
    caplog.set_level(logging.DEBUG)
    engine = db.make_engine(pg_url())
    try:
        with pytest.raises(Exception) as caught:  # noqa: PT011 - any type, no secret
            backup.backup(engine, tmp_path / "out.dump")
    finally:
        engine.dispose()
    assert_no_secret(str(caught.value), repr(caught.value), log_text(caplog),
                     "".join(traceback.format_exception(caught.value)))
    assert not (tmp_path / "out.dump").exists()


def test_unreachable_database_error_masks_the_password(caplog):
    """StoreError from a refused PostgreSQL connection shows the URL with *** for the
    password, in its message and its chained cause."""
    from finance import db

    caplog.set_level(logging.DEBUG)
    engine = db.make_engine(pg_url())
    try:
        with pytest.raises(db.StoreError) as caught:
            db.ping(engine)
    finally:
        engine.dispose()
    assert "***" in str(caught.value)
    assert_no_secret(str(caught.value), str(caught.value.__cause__),
                     "".join(traceback.format_exception(caught.value)), log_text(caplog))


def test_llm_unreachable_through_the_assistant_logs_no_key(sqlite_services, caplog):
    """The assistant with an OpenAI-compatible endpoint that refuses connections answers
    with an error reference; no log record (httpx/openai at DEBUG) carries the API key."""
    from bot.assistant import Assistant, build_chat_model, build_request
    from finance.authz import Actor

    caplog.set_level(logging.DEBUG)
    svc = sqlite_services
    svc.settings = svc.settings.model_copy(update={
        "openai_api_key": SecretStr(SECRETS["OPENAI_API_KEY"]),
        "openai_base_url": f"http://127.0.0.1:{closed_port()}/v1/",
        "llm_model": "gpt-test"})
    assistant = Assistant(svc, chat_model=build_chat_model(svc))
    try:
        answer = assistant.ask(build_request(svc, Actor.system("cli"), "what's MRR?", None))
        shown = answer.text
    except Exception as exc:  # the CLI maps it; what matters is what the text says
        shown = "".join(traceback.format_exception(exc))
    assert_no_secret(shown, log_text(caplog))


def _signed(secret: str, body: bytes) -> dict[str, str]:
    ts = str(int(time.time()))
    sig = "v0=" + hmac.new(secret.encode(), f"v0:{ts}:".encode() + body,
                           hashlib.sha256).hexdigest()
    return {"x-slack-signature": sig, "x-slack-request-timestamp": ts}


def test_http_refusals_and_slack_calls_log_no_token_or_secret(sqlite_services, caplog,
                                                             monkeypatch):
    """Slack requests with a wrong signature, the usage hook with a wrong one, and a real
    round trip to the Slack stand-in (auth.test, chat.postMessage) at DEBUG: no token or
    signing/hook secret in logs or response bodies."""
    from slack_sdk import WebClient

    from bot.assistant import Assistant
    from bot.slack.app import build_app
    from bot.slack.server import make_wsgi_app
    from tests.slack_stub import SlackStub, serve

    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr("tests.slack_stub.BOT_TOKEN", SECRETS["SLACK_BOT_TOKEN"])
    svc = sqlite_services
    stub = SlackStub()
    with serve(stub) as api_url:
        svc.settings = svc.settings.model_copy(update={
            "slack_bot_token": SecretStr(SECRETS["SLACK_BOT_TOKEN"]),
            "slack_signing_secret": SecretStr(SECRETS["SLACK_SIGNING_SECRET"]),
            "hook_secret": SecretStr(SECRETS["DESKBOOKS_HOOK_SECRET"]),
            "slack_api_url": api_url})
        client = WebClient(token=SECRETS["SLACK_BOT_TOKEN"], base_url=api_url)
        bolt = build_app(svc, assistant=Assistant(svc), client=client,
                         process_before_response=True)
        wsgi = make_wsgi_app(svc, bolt)
        bodies = []
        event = json.dumps({"type": "url_verification", "challenge": "c"}).encode()
        for path, body, headers in [
            ("/slack/events", event, _signed("wrong", event)),
            ("/slack/events", event, _signed(SECRETS["SLACK_SIGNING_SECRET"], event)),
            ("/hooks/usage", b"[]", {"x-deskbooks-timestamp": str(int(time.time())),
                                     "x-deskbooks-signature": "v1=00"}),
        ]:
            environ = {"REQUEST_METHOD": "POST", "PATH_INFO": path, "QUERY_STRING": "",
                       "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body),
                       "CONTENT_TYPE": "application/json"}
            environ.update({"HTTP_" + k.upper().replace("-", "_"): v
                            for k, v in headers.items()})
            bodies.append(b"".join(wsgi(environ, lambda status, hdrs: None)))
        client.chat_postMessage(channel="C1", text="hello")
    assert b"challenge" in bodies[1]
    assert_no_secret(*bodies, log_text(caplog))
