"""A local stand-in for the Slack Web API: a real HTTP server that records every call.

It answers the methods deskbooks uses (auth.test, chat.*, views.*, files.info, the external
upload pair, reactions.add, users.info) with the shapes of Slack's API, serves shared files at
``/files/<id>`` (checking the bot token) and accepts uploads at ``/upload/<id>``. Tests point
``WebClient(base_url=...)`` at it and read ``calls`` afterwards.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

BOT_TOKEN = "xoxb-test-token"


class SlackStub:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.files: dict[str, tuple[str, str, bytes]] = {}  # id -> (name, mimetype, data)
        self.file_urls: dict[str, str] = {}  # id -> a download URL somewhere else
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}  # (channel, ts) -> message
        self.uploads: dict[str, bytes] = {}
        self.lock = threading.Lock()
        self.ts = itertools.count(1)
        self.base = ""
        self.fail_methods: set[str] = set()

    def add_file(self, file_id: str, name: str, mimetype: str, data: bytes, *,
                 url: str | None = None) -> None:
        """Share a file; ``url`` makes files.info name a download URL on another host."""
        self.files[file_id] = (name, mimetype, data)
        if url:
            self.file_urls[file_id] = url

    def posted(self, channel: str | None = None) -> list[dict[str, Any]]:
        """Messages as they stand now (updates applied), oldest first, each with its ts."""
        with self.lock:
            return [dict(m) for m in self.messages.values()
                    if channel is None or m["channel"] == channel]

    def named(self, method: str) -> list[dict[str, Any]]:
        with self.lock:
            return [args for m, args in self.calls if m == method]

    def answer(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.calls.append((method, args))
            n = next(self.ts)
        if method in self.fail_methods:
            return {"ok": False, "error": "fatal_error"}
        if method == "auth.test":
            return {"ok": True, "url": "https://test.slack.com/", "team": "Test",
                    "user": "deskbooks", "team_id": "T111", "user_id": "UBOT",
                    "bot_id": "BBOT"}
        if method in ("chat.postMessage", "chat.update"):
            channel = args.get("channel", "C0")
            ts = args.get("ts") or f"1700000000.{n:06d}"
            with self.lock:
                if method == "chat.postMessage":
                    self.messages[(channel, ts)] = {"channel": channel, "ts": ts,
                                                    "thread_ts": args.get("thread_ts")}
                message = self.messages.get((channel, ts))
                if message is not None:  # an update of a message the stub never saw is kept
                    message.update(text=args.get("text", ""),  # in `calls` only
                                   blocks=_json(args.get("blocks")) or [])
            return {"ok": True, "channel": channel, "ts": ts,
                    "message": {"text": args.get("text", ""), "ts": ts}}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": f"1700000000.{n:06d}"}
        if method in ("views.open", "views.publish", "views.update"):
            return {"ok": True, "view": {"id": f"V{n}", **(_json(args.get("view")) or {})}}
        if method == "files.info":
            file_id = args.get("file", "")
            if file_id not in self.files:
                return {"ok": False, "error": "file_not_found"}
            name, mimetype, data = self.files[file_id]
            url = self.file_urls.get(file_id, f"{self.base}/files/{file_id}")
            return {"ok": True, "file": {
                "id": file_id, "name": name, "mimetype": mimetype, "size": len(data),
                "url_private": url, "url_private_download": url}}
        if method == "files.getUploadURLExternal":
            file_id = f"FUP{n}"
            return {"ok": True, "upload_url": f"{self.base}/upload/{file_id}",
                    "file_id": file_id}
        if method == "files.completeUploadExternal":
            return {"ok": True, "files": _json(args.get("files")) or []}
        if method == "users.info":
            return {"ok": True, "user": {"id": args.get("user"), "tz": "America/New_York"}}
        return {"ok": True}


def _json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


@contextmanager
def serve(stub: SlackStub) -> Iterator[str]:
    """Run the stand-in on a free port; yields the Web API base URL (``.../api/``)."""

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            if self.path.startswith("/files/"):
                if self.headers.get("Authorization") != f"Bearer {BOT_TOKEN}":
                    self._send(403, b"forbidden", "text/plain")
                    return
                entry = stub.files.get(self.path.rsplit("/", 1)[-1])
                if entry is None:
                    self._send(404, b"missing", "text/plain")
                    return
                self._send(200, entry[2], entry[1])
                return
            if self.path.startswith("/api/"):
                if self.headers.get("Authorization") != f"Bearer {BOT_TOKEN}":
                    self._send(200, json.dumps({"ok": False, "error": "invalid_auth"}).encode())
                    return
                method, _, query = self.path[len("/api/"):].partition("?")
                args = {k: v[0] for k, v in parse_qs(query).items()}
                self._send(200, json.dumps(stub.answer(method, args)).encode())
                return
            self._send(404, b"{}")

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if self.path.startswith("/upload/"):
                stub.uploads[self.path.rsplit("/", 1)[-1]] = raw
                self._send(200, b"OK - uploaded", "text/plain")
                return
            if not self.path.startswith("/api/"):
                self._send(404, b"{}")
                return
            if self.headers.get("Authorization") != f"Bearer {BOT_TOKEN}":
                self._send(200, json.dumps({"ok": False, "error": "invalid_auth"}).encode())
                return
            kind = self.headers.get("Content-Type", "")
            if "json" in kind:
                args = json.loads(raw or b"{}")
            else:
                args = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
            method = self.path[len("/api/"):].split("?")[0]
            self._send(200, json.dumps(stub.answer(method, args)).encode())

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    stub.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{stub.base}/api/"
    finally:
        server.shutdown()
        server.server_close()
