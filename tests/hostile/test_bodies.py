"""Request bodies built to exhaust the server: refused with 413 while they are read, through
the real ASGI stack (uvicorn in a thread), before the rest of the body arrives."""

from __future__ import annotations

import json
import select
import socket

import pytest
from django.conf import settings
from django.test import Client

from tests.hostile.conftest import LiveServer
from tests.tpa.conftest import claims_file, staged
from tpa.models import IngestionFile

pytestmark = pytest.mark.django_db(transaction=True)

MiB = 2**20
ATTACK = 200 * MiB


def read_response(sock: socket.socket, deadline: float = 30.0) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of the one response on `sock` (the server closes afterwards)."""
    sock.settimeout(deadline)
    data = b""
    while b"\r\n\r\n" not in data or len(data) < _expected_length(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def _expected_length(data: bytes) -> int:
    head, sep, _ = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(head) + len(sep) + int(line.split(b":")[1])
    return len(data) + 1


def request_head(live: LiveServer, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{live.port}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def post_declared(
    live: LiveServer, path: str, length: int, cookie: str = "", *, send: bool = False
) -> tuple[int, dict[str, str], bytes]:
    """Declare a body of `length` bytes, send it (or none of it), and read the answer."""
    headers = {"Content-Type": "application/octet-stream", "Content-Length": str(length)}
    if cookie:
        headers["Cookie"] = cookie
    with socket.create_connection(("127.0.0.1", live.port), timeout=30) as sock:
        sock.sendall(request_head(live, path, headers))
        if send:
            sock.sendall(b"x" * length)
        return read_response(sock)


def post_chunked(live: LiveServer, path: str, total: int) -> tuple[int, bytes, int]:
    """Send up to `total` bytes with chunked encoding until the server answers; the status,
    the body and how many bytes had been sent when the answer came."""
    chunk = b"x" * 65536
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    sent = 0
    with socket.create_connection(("127.0.0.1", live.port), timeout=30) as sock:
        sock.sendall(request_head(live, path, {"Content-Type": "text/plain", "Transfer-Encoding": "chunked"}))
        try:
            while sent < total:
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:
                    break  # the server has answered: stop sending, as a client does
                sock.sendall(frame)
                sent += len(chunk)
            else:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed while we were still sending: its answer is in our buffer
        status, _, body = read_response(sock)
        return status, body, sent


def test_it_refuses_a_declared_200_mib_body_from_anyone_at_once(live_app: LiveServer) -> None:
    for path in ("/accounts/login/", "/", "/api/reports/", "/no-such-url"):
        status, headers, body = post_declared(live_app, path, ATTACK)
        assert status == 413, (path, body)
        assert json.loads(body)["detail"] == "The request body is larger than the limit of 10 MiB for this URL."
        assert headers["connection"] == "close"


def test_it_refuses_a_chunked_body_while_it_arrives_not_after(live_app: LiveServer) -> None:
    status, body, sent = post_chunked(live_app, "/accounts/login/", ATTACK)
    assert status == 413
    assert "larger than the limit of 10 MiB" in json.loads(body)["detail"]
    # The answer came once the limit was passed; socket buffers hold a few MiB more at most.
    assert 10 * MiB < sent < 40 * MiB, f"{sent / MiB:.0f} MiB had been sent"


def test_it_still_serves_a_body_under_the_limit(live_app: LiveServer) -> None:
    # Anonymous, so the answer is the login form again: what matters is that it was read.
    with socket.create_connection(("127.0.0.1", live_app.port), timeout=30) as sock:
        form = b"username=nobody&password=" + b"p" * (3 * MiB)
        sock.sendall(
            request_head(
                live_app,
                "/accounts/login/",
                {"Content-Type": "application/x-www-form-urlencoded", "Content-Length": str(len(form))},
            )
            + form
        )
        status, _, _ = read_response(sock)
    assert status == 403  # CSRF: no token was sent; the body was read and parsed, not refused


def test_it_gives_the_upload_urls_the_upload_limit(make_tpa, owner_client: Client, live_app: LiveServer) -> None:
    tpa = make_tpa()
    assert owner_client.post(f"/api/tpa/tpas/{tpa.code}/files", {"file": claims_file(rows=4)}).status_code == 201
    cookie = f"{settings.SESSION_COOKIE_NAME}={owner_client.cookies[settings.SESSION_COOKIE_NAME].value}"
    limit = settings.TPA_UPLOAD_MAX_BYTES + MiB
    before = list(IngestionFile.objects.values_list("stage_path", "sha256", "status"))
    stage_before = staged(tpa.code)
    for path in (f"/tpa/{tpa.code}/upload", f"/api/tpa/tpas/{tpa.code}/files"):
        status, _, body = post_declared(live_app, path, ATTACK, cookie)
        assert status == 413, (path, body)
        assert json.loads(body)["detail"] == (
            f"The request body is larger than the limit of {limit / MiB:g} MiB for this URL."
        )
        # 20 MiB is over every other URL's limit, not over an upload's: it reaches the view.
        status, _, body = post_declared(live_app, path, 20 * MiB, cookie, send=True)
        assert status != 413, (path, body)
    assert list(IngestionFile.objects.values_list("stage_path", "sha256", "status")) == before
    assert staged(tpa.code) == stage_before


def test_it_does_not_read_the_rest_of_a_refused_body(live_app: LiveServer) -> None:
    """After the 413 the server closes the connection instead of reading on."""
    with socket.create_connection(("127.0.0.1", live_app.port), timeout=30) as sock:
        sock.sendall(request_head(live_app, "/", {"Content-Length": str(ATTACK)}))
        status, _, _ = read_response(sock)
        assert status == 413
        sock.settimeout(30)  # a server that kept it open would make recv time out
        assert sock.recv(1) == b""
