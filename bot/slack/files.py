"""Download a file a user shared, safely: only from the host the API names, size-limited."""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

RECEIPT_TYPES = ("image/", "application/pdf")


class FileRefused(ValueError):
    """The file cannot be fetched (wrong host, too big, not a receipt type, API error)."""


@dataclass(frozen=True)
class SharedFile:
    id: str
    name: str
    mimetype: str
    data: bytes


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def allowed_hosts(setting: str) -> set[str]:
    return {h.strip().lower() for h in setting.split(",") if h.strip()}


def is_receipt_like(meta: dict[str, Any]) -> bool:
    mimetype = str(meta.get("mimetype") or "")
    return mimetype.startswith(RECEIPT_TYPES)


def fetch_file(client: WebClient, file_id: str, *, hosts: set[str], max_bytes: int,
               timeout: float = 20.0) -> SharedFile:
    """files.info, then GET its private download URL with the bot token (never elsewhere)."""
    try:
        info = client.files_info(file=file_id)
    except SlackApiError as exc:
        raise FileRefused(f"Slack would not describe file {file_id} "
                          f"({exc.response.get('error', 'error')})") from None
    meta = info.get("file") or {}
    name = str(meta.get("name") or file_id)
    size = int(meta.get("size") or 0)
    if size > max_bytes:
        raise FileRefused(f"{name} is {size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB")
    url = str(meta.get("url_private_download") or meta.get("url_private") or "")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or parts.netloc.lower() not in hosts:
        raise FileRefused(f"{name} is not hosted on Slack's file servers; not downloading it")
    if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost"):
        raise FileRefused(f"{name} would be fetched without TLS; refusing")
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {client.token}"})
    opener = urllib.request.build_opener(_NoRedirect())  # the token never follows a redirect
    try:
        with opener.open(request, timeout=timeout) as resp:
            data = resp.read(max_bytes + 1)
    except (urllib.error.URLError, TimeoutError) as exc:
        raise FileRefused(f"could not download {name}: {getattr(exc, 'reason', exc)}") from None
    if len(data) > max_bytes:
        raise FileRefused(f"{name} is larger than {max_bytes / 1e6:.0f} MB")
    return SharedFile(file_id, name, str(meta.get("mimetype") or ""), data)
