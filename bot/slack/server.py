"""The HTTP side: one WSGI app for Slack, the usage hook and health checks.

- ``POST /slack/events``: events, interactivity and slash commands, as Bolt expects them on one
  path. Bodies over the size limit get 413 before Bolt sees them; Bolt checks the signature and
  the timestamp (stale requests get 401).
- ``POST /hooks/usage``: POS, print and door-access events, JSON, signed with
  ``X-Deskbooks-Signature: v1=<hex HMAC-SHA256 of "v1:<timestamp>:<body>">`` and
  ``X-Deskbooks-Timestamp`` (seconds; five minutes of skew allowed) using DESKBOOKS_HOOK_SECRET.
  Idempotent per source + external id.
- ``GET /healthz``: 200 when the database answers, 503 otherwise.
"""

from __future__ import annotations

import gc
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import ValidationError
from slack_bolt import App
from slack_bolt.request import BoltRequest

from bot.slack.app import AckGate
from finance import db
from finance.services import Services

log = logging.getLogger("deskbooks.http")

MAX_BODY = 1_000_000
MAX_SKEW_S = 300
MAX_EVENTS_PER_HOOK = 5_000

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def hook_signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"v1:{timestamp}:".encode() + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def _reply(start: StartResponse, status: int, payload: Any,
           headers: dict[str, str] | None = None) -> list[bytes]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    reasons = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
               405: "Method Not Allowed", 413: "Payload Too Large", 500: "Internal Server Error",
               503: "Service Unavailable"}
    out = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    out += list((headers or {}).items())
    start(f"{status} {reasons.get(status, 'Status')}", out)
    return [body]


def _read_body(environ: dict[str, Any], limit: int) -> bytes | None:
    """The request body, or None when it is larger than ``limit``."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > limit:
        return None
    stream = environ["wsgi.input"]
    data = stream.read(min(length, limit + 1) if length else limit + 1)
    return None if len(data) > limit else data


def _headers(environ: dict[str, Any]) -> dict[str, str]:
    out = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            out[key[5:].replace("_", "-").lower()] = value
    if environ.get("CONTENT_TYPE"):
        out["content-type"] = environ["CONTENT_TYPE"]
    return out


def make_wsgi_app(services: Services, bolt_app: App | None, *, max_body: int = MAX_BODY,
                  gate: AckGate | None = None) -> Callable[[dict[str, Any], StartResponse],
                                                           Iterable[bytes]]:
    """The WSGI app; ``gate`` (the one given to ``build_app``) counts Slack requests being
    acked so that listener work waits for them."""

    def application(environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        try:
            if path == "/healthz":
                return _health(services, start)
            if path == "/slack/events":
                if bolt_app is None:
                    return _reply(start, 404, {"error": "Slack is not configured"})
                if method != "POST":
                    return _reply(start, 405, {"error": "POST only"})
                if gate is None:
                    return _slack(bolt_app, environ, start, max_body)
                with gate.acking():
                    return _slack(bolt_app, environ, start, max_body)
            if path == "/hooks/usage":
                if method != "POST":
                    return _reply(start, 405, {"error": "POST only"})
                return _usage(services, environ, start, max_body)
            return _reply(start, 404, {"error": "not found"})
        except Exception:
            ref = uuid.uuid4().hex[:10]
            log.exception("request to %s failed (ref %s)", path, ref)
            return _reply(start, 500, {"error": "internal error", "ref": ref})

    return application


def _health(services: Services, start: StartResponse) -> list[bytes]:
    try:
        db.ping(services.engine)
    except Exception:
        return _reply(start, 503, {"ok": False, "database": "unreachable"})
    return _reply(start, 200, {"ok": True})


def _slack(bolt_app: App, environ: dict[str, Any], start: StartResponse,
           max_body: int) -> list[bytes]:
    body = _read_body(environ, max_body)
    if body is None:
        return _reply(start, 413, {"error": "request too large"})
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return _reply(start, 400, {"error": "body is not UTF-8"})
    try:
        request = BoltRequest(body=text, query=environ.get("QUERY_STRING", ""),
                              headers=_headers(environ))
    except (ValueError, AttributeError, TypeError, KeyError, IndexError):  # a body that does
        # not parse, or fields of the wrong JSON type that Bolt reads while parsing (a body
        # that is not an object; "user", "team", "channel", "enterprise" not objects,
        # "authorizations" not a list of objects)
        return _reply(start, 400, {"error": "malformed body"})
    response = bolt_app.dispatch(request)
    headers = {k: v[0] if isinstance(v, list) else v for k, v in response.headers.items()}
    raw = (response.body or "").encode()
    status = response.status
    reasons = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
               500: "Internal Server Error"}
    out = [(k, str(v)) for k, v in headers.items() if k.lower() != "content-length"]
    out.append(("Content-Length", str(len(raw))))
    start(f"{status} {reasons.get(status, 'Status')}", out)
    return [raw]


def _usage(services: Services, environ: dict[str, Any], start: StartResponse,
           max_body: int) -> list[bytes]:
    from finance.usage import UsageIn, ingest_usage

    secret = services.settings.hook_secret
    if secret is None:
        return _reply(start, 404, {"error": "the usage hook is not configured"})
    body = _read_body(environ, max_body)
    if body is None:
        return _reply(start, 413, {"error": "request too large"})
    headers = _headers(environ)
    timestamp = headers.get("x-deskbooks-timestamp", "")
    given = headers.get("x-deskbooks-signature", "")
    try:
        fresh = abs(time.time() - int(timestamp)) <= MAX_SKEW_S
    except ValueError:
        fresh = False
    expected = hook_signature(secret.get_secret_value(), timestamp, body)
    if not fresh or not hmac.compare_digest(expected, given):
        return _reply(start, 401, {"error": "bad or stale signature"})
    try:
        payload = json.loads(body)
    except ValueError:
        return _reply(start, 400, {"error": "body is not JSON"})
    items = payload.get("events") if isinstance(payload, dict) else payload
    if not isinstance(items, list) or not items:
        return _reply(start, 400, {"error": "expected a JSON list of events "
                                            "(or {\"events\": [...]})"})
    if len(items) > MAX_EVENTS_PER_HOOK:
        return _reply(start, 413, {"error": f"at most {MAX_EVENTS_PER_HOOK} events per request"})
    events, rejected = [], []
    for index, item in enumerate(items):
        try:
            events.append((index, UsageIn.model_validate(item)))
        except ValidationError as exc:
            first = exc.errors()[0]
            rejected.append({"index": index, "reason": f"{'.'.join(map(str, first['loc']))}: "
                                                       f"{first['msg']}"})
    with services.session() as session:
        report = ingest_usage(session, [e for _, e in events], actor="hook:usage")
    result = report.as_dict()
    positions = [i for i, _ in events]
    for r in result["rejected"]:  # type: ignore[union-attr]
        r["index"] = positions[r["index"]]  # type: ignore[index]
    result["rejected"] = sorted([*rejected, *result["rejected"]],  # type: ignore[misc]
                                key=lambda r: r["index"])
    return _reply(start, 200, result)


def make_server(wsgi: Callable[..., Any], port: int, host: str = "0.0.0.0",
                threads: int = 16) -> Any:
    """A waitress server (pure Python, production-grade, threads for concurrent acks), not yet
    running: call ``.run()`` (blocks) and ``.close()``; ``.effective_port`` is the bound port."""
    from waitress.server import create_server

    return create_server(wsgi, host=host, port=port, threads=threads,
                         max_request_body_size=MAX_BODY * 2, ident="deskbooks")


def serve_http(wsgi: Callable[..., Any], port: int, host: str = "0.0.0.0",
               threads: int = 16) -> None:
    """Serve until interrupted (``deskbooks serve``)."""
    server = make_server(wsgi, port, host, threads)
    gc.collect()
    gc.freeze()  # start-up objects (SDKs, models, prompts) leave the collector's full scans
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
