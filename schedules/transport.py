"""The two ways out: e-mail through Django's mail framework, and signed webhooks through httpx.

Webhooks are signed like Stripe's and GitHub's: the receiver recomputes

    X-Fanout-Signature: sha256=HEX( HMAC-SHA256(secret, f"{X-Fanout-Timestamp}." + body) )

and compares in constant time; the timestamp lets it refuse replays, X-Fanout-Delivery
(the same on every retry) lets it drop duplicates.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import ipaddress
import json
import socket
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.mail import EmailMessage
from django.utils.text import slugify


class DeliveryError(Exception):
    """The peer refused or did not answer; worth another try."""


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class Refused(Exception):
    """Never to be sent, however often it is tried; the message says why."""


def check_destination(url: str) -> None:
    """Refuse webhooks to loopback, private and link-local addresses (the app's own Redis,
    Postgres or a cloud metadata service), unless SCHEDULES_WEBHOOK_PRIVATE_OK allows them.
    Blocking (name resolution): call it on a thread."""
    if settings.SCHEDULES_WEBHOOK_PRIVATE_OK:
        return
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused(f"{url} is not an http(s) URL.")
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise DeliveryError(f"cannot resolve {parts.hostname}: {exc}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if address.is_private or address.is_loopback or address.is_link_local or address.is_reserved:
            raise Refused(f"{parts.hostname} is {address}, a private address; webhooks go to public hosts only.")


async def post_webhook(url: str, secret: str, payload: dict[str, Any], *, delivery_id: int) -> int:
    """POST the JSON body; the status code, or DeliveryError for a failure or a non-2xx answer."""
    await sync_to_async(check_destination, thread_sensitive=False)(url)
    body = json.dumps(payload, sort_keys=True).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Fanout-Alerts/1",
        "X-Fanout-Timestamp": timestamp,
        "X-Fanout-Signature": sign(secret, timestamp, body),
        "X-Fanout-Delivery": str(delivery_id),
    }
    deadline = settings.SCHEDULES_WEBHOOK_TIMEOUT
    try:
        async with httpx.AsyncClient(timeout=deadline, follow_redirects=False) as client:
            response = await client.post(url, content=body, headers=headers)
    except httpx.TimeoutException:
        raise DeliveryError(f"no answer within {deadline:g} s") from None
    except httpx.HTTPError as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}") from None
    if not response.is_success:
        raise DeliveryError(f"the webhook answered {response.status_code}: {response.text[:200]}")
    return response.status_code


def csv_files(panels: list[dict[str, Any]], slug: str) -> list[tuple[str, bytes]]:
    """One CSV per panel that has rows, named after the report and the panel."""
    files = []
    for panel in panels:
        if panel["error"] or not panel["columns"]:
            continue
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(panel["columns"])
        writer.writerows(panel["rows"])
        files.append((f"{slug}-{slugify(panel['title']) or panel['panel_id']}.csv", buffer.getvalue().encode()))
    return files


async def send_mail(
    subject: str, body: str, recipients: list[str], attachments: Sequence[tuple[str, bytes, str]] = ()
) -> None:
    """Through the default mailer (SMTP with its timeout, or files in the demo), off the event loop."""
    message = EmailMessage(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)
    for name, content, mimetype in attachments:
        message.attach(name, content, mimetype)
    try:
        await sync_to_async(message.send, thread_sensitive=False)()
    except OSError as exc:  # smtplib's errors, refused connections and timeouts alike
        raise DeliveryError(f"{type(exc).__name__}: {exc}") from None
