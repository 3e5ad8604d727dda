"""Slack ack latency (issue 7): 50 concurrent signed events over real HTTP.

Two servers run as their own processes, one after the other, each behind the same WSGI layer
(bot/slack/server.py ``make_wsgi_app``) served by waitress with the same settings:

- **deskbooks**: the real ``deskbooks serve --no-scheduler`` (HTTP mode, the offline router,
  a SQLite file), receiving ``@deskbooks what's our MRR?`` mentions. Each one is checked
  and recorded (event de-duplication) before the ack; the assistant's work runs after it.
- **minimal Bolt app**: one no-op ``app_mention`` listener, nothing else (the baseline).

For each burst the load generator (this process) releases 50 signed requests at once and
times each one until its response arrives; after a deskbooks burst it waits until every
answer has been posted to the Web API stand-in, so bursts do not overlap.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

from benchmarks.common import ROOT, machine_details

SECRET = "bench-signing-secret"
TOKEN = "xoxb-test-token"  # what the Web API stand-in accepts
TEAM = "T111"
USER = "W222"
CONCURRENCY = 50


# --------------------------------------------------------------------------- servers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _seed(url: str) -> None:
    """A small space: one location, a plan, 20 members, the manager who asks."""
    from alembic import command

    from finance import db
    from finance.models import Location, Member, Plan, SlackUser, Subscription
    from finance.services import build_services
    from finance.settings import load_settings

    svc = build_services(load_settings(DESKBOOKS_DATABASE_URL=url))
    svc.init_schema(fast=True)
    command.stamp(db.alembic_config(svc.engine), "head")
    with svc.session() as s:
        loc = Location(code="DT", name="Downtown", timezone="America/New_York")
        plan = Plan(code="HOT", name="Hot Desk", desk_type="hot_desk", price_cents=30_000)
        s.add_all([loc, plan])
        s.flush()
        for i in range(20):
            member = Member(code=f"M-{i:03d}", kind="company", name=f"Member {i}")
            s.add(member)
            s.flush()
            s.add(Subscription(member_id=member.id, plan_id=plan.id, location_id=loc.id,
                               quantity=1, unit_price_cents=30_000,
                               start_date=date(2026, 1, 1), billing_anchor_day=1))
        s.add(SlackUser(team_id=TEAM, user_id=USER, name="Maya Manager", role="manager",
                        location_id=loc.id))
    svc.dispose()


def _env(db_url: str, api_url: str, data_dir: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DESKBOOKS_", "SLACK_", "OPENAI_"))}
    env.update(DESKBOOKS_DATABASE_URL=db_url, DESKBOOKS_DATA_DIR=data_dir,
               SLACK_BOT_TOKEN=TOKEN, SLACK_SIGNING_SECRET=SECRET, SLACK_API_URL=api_url,
               ORT_DISABLE_TELEMETRY="1", PYTHONPATH=str(ROOT))
    return env


@contextmanager
def _server(kind: str, env: dict[str, str]) -> Iterator[tuple[int, int]]:
    """Start a server process; yields (port, pid) once /healthz answers."""
    port = _free_port()
    if kind == "deskbooks":
        cmd = [sys.executable, "-c", "from bot.cli import main; main()", "serve",
               "--port", str(port), "--host", "127.0.0.1", "--no-scheduler"]
    else:
        cmd = [sys.executable, "-m", "benchmarks.bench_slack", "minimal", str(port)]
    log = tempfile.TemporaryFile()  # the server's log (a pipe nobody reads would fill up)
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"{kind} server exited: {log.read().decode()[-2000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind} server did not start")
            time.sleep(0.2)
        yield port, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def serve_minimal(port: int) -> None:
    """The baseline: a Bolt app with one no-op event listener, same WSGI layer and server."""
    from slack_bolt import App
    from slack_sdk import WebClient

    from bot.slack.server import make_wsgi_app, serve_http
    from finance.services import build_services
    from finance.settings import load_settings

    settings = load_settings()
    app = App(signing_secret=SECRET, token_verification_enabled=False,
              client=WebClient(token=TOKEN, base_url=settings.slack_api_url))

    @app.event("app_mention")
    def handle_mention() -> None:
        return None

    serve_http(make_wsgi_app(build_services(settings), app), port, "127.0.0.1")


def _rss_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in KiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values.get("VmRSS", 0), values.get("VmHWM", 0)


# --------------------------------------------------------------------------- load


def _mention(n: int) -> bytes:
    ts = f"1700000000.{n:06d}"
    return json.dumps({
        "token": "verification_token", "team_id": TEAM, "api_app_id": "A111",
        "event": {"type": "app_mention", "text": "<@UBOT> what's our MRR?", "user": USER,
                  "ts": ts, "team": TEAM, "channel": "C111", "event_ts": ts},
        "type": "event_callback", "event_id": f"EvBENCH{n:06d}", "event_time": 1700000000,
    }).encode()


def _signed_headers(body: bytes) -> dict[str, str]:
    ts = str(int(time.time()))
    sig = hmac.new(SECRET.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-Slack-Signature": f"v0={sig}",
            "X-Slack-Request-Timestamp": ts}


def _burst(port: int, first: int) -> list[float]:
    """50 signed requests released together; each one's latency in ms (send → response)."""
    bodies = [_mention(first + i) for i in range(CONCURRENCY)]
    conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in bodies]
    for conn in conns:
        conn.connect()
    barrier = threading.Barrier(CONCURRENCY)
    out: list[float] = [0.0] * CONCURRENCY
    errors: list[str] = []

    def one(i: int) -> None:
        headers = _signed_headers(bodies[i])
        barrier.wait()
        start = time.perf_counter()
        conns[i].request("POST", "/slack/events", body=bodies[i], headers=headers)
        resp = conns[i].getresponse()
        resp.read()
        out[i] = (time.perf_counter() - start) * 1000
        if resp.status != 200:
            errors.append(str(resp.status))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(CONCURRENCY)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for conn in conns:
        conn.close()
    if errors:
        raise RuntimeError(f"non-200 acks: {errors[:5]}")
    return out


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _wait_answers(stub: object, expected: int, timeout: float = 300) -> float:
    start = time.perf_counter()
    while len(stub.named("chat.postMessage")) < expected:  # type: ignore[attr-defined]
        if time.perf_counter() - start > timeout:
            raise RuntimeError("answers never arrived")
        time.sleep(0.02)
    return time.perf_counter() - start


def _summary(latencies: list[float], pid: int, drains: list[float]) -> dict[str, float]:
    rss, hwm = _rss_kb(pid)
    return {"p50": _pct(latencies, 0.5), "p95": _pct(latencies, 0.95),
            "max": max(latencies), "n": len(latencies), "rss_mb": rss / 1024,
            "hwm_mb": hwm / 1024,
            "drain_s": sorted(drains)[len(drains) // 2] if drains else 0.0}


def measure(env: dict[str, str], stub: object, bursts: int) -> tuple[dict[str, float],
                                                                     dict[str, float]]:
    """Both servers up at once; their bursts alternate, so load from elsewhere hits both."""
    with _server("minimal", env) as (m_port, m_pid), \
            _server("deskbooks", env) as (d_port, d_pid):
        answered = len(stub.named("chat.postMessage"))  # type: ignore[attr-defined]
        _burst(m_port, 990_000)  # warm-up bursts
        _burst(d_port, 980_000)
        answered += CONCURRENCY
        _wait_answers(stub, answered)
        minimal: list[float] = []
        books: list[float] = []
        drains: list[float] = []
        for b in range(bursts):
            minimal += _burst(m_port, 200_000 + b * 1_000)
            started = time.perf_counter()
            books += _burst(d_port, 100_000 + b * 1_000)
            answered += CONCURRENCY
            _wait_answers(stub, answered)
            drains.append(time.perf_counter() - started)
            time.sleep(0.2)  # the last answers' bookkeeping finishes before the next burst
        return _summary(minimal, m_pid, []), _summary(books, d_pid, drains)


def run(quick: bool = False) -> str:
    from tests.slack_stub import SlackStub, serve

    bursts = 2 if quick else 20
    stub = SlackStub()
    with tempfile.TemporaryDirectory() as tmp, serve(stub) as api_url:
        db_url = f"sqlite:///{tmp}/bench.db"
        _seed(db_url)
        env = _env(db_url, api_url, tmp)
        minimal, books = measure(env, stub, bursts)
    ratio = books["p95"] / minimal["p95"] if minimal["p95"] else float("inf")
    rows = [
        f"| minimal Bolt app (no-op listener) | {minimal['n']} | {minimal['p50']:.0f} | "
        f"{minimal['p95']:.0f} | {minimal['max']:.0f} | {minimal['rss_mb']:.0f} "
        f"({minimal['hwm_mb']:.0f}) | – |",
        f"| deskbooks serve (SQLite, offline router) | {books['n']} | {books['p50']:.0f} | "
        f"{books['p95']:.0f} | {books['max']:.0f} | {books['rss_mb']:.0f} "
        f"({books['hwm_mb']:.0f}) | {books['drain_s']:.2f} |",
    ]
    goal = "met" if books["p95"] < 300 and ratio <= 1.5 else "NOT met"
    return "\n".join([
        "## Slack ack latency (issue 7): 50 concurrent signed events over HTTP",
        "",
        f"Machine: {machine_details()}",
        "",
        "| server | requests | p50 ms | p95 ms | max ms | RSS MB (peak) |"
        " burst answered in s |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"p95 ratio deskbooks / minimal: **{ratio:.2f}×** (goal: p95 < 300 ms and ≤ 1.5×: "
        f"{goal}).",
        "",
        f"{bursts} bursts of {CONCURRENCY} `app_mention` events per server (after one warm-up"
        " burst each), the two servers' bursts alternating so that other load on the machine"
        " hits both alike; each request on its own connection, released together by a"
        " barrier; latency"
        " is send → response at the load generator (this process). Both servers run as"
        " separate processes behind bot/slack/server.py's WSGI app on waitress (16 threads,"
        " start-up objects frozen out of the garbage collector); deskbooks is the real"
        " `deskbooks serve --no-scheduler`: it verifies the signature, acks (a first delivery"
        " needs no database read while the database answered in the last 2 s; retries are"
        " looked up), then on Bolt's worker threads waits until no ack is in flight"
        " (`AckGate`), claims the event id (one insert) and answers every mention in its"
        " thread from the offline router (lookup_kpi). *Burst answered in* is the median"
        " time from releasing a burst until the Web API stand-in received all 50 answers."
        " RSS is the server process's resident"
        " memory after the run (peak in parentheses).",
    ])


if __name__ == "__main__":  # the baseline server process; `python -m benchmarks.run slack`
    if len(sys.argv) != 3 or sys.argv[1] != "minimal":  # runs the benchmark
        raise SystemExit("usage: python -m benchmarks.bench_slack minimal PORT")
    serve_minimal(int(sys.argv[2]))
