"""The server's peak memory while an anonymous client posts a 200 MiB body.

    make bench
    python -m bench.bodies          # with DATABASE_URL (and SNOWFLAKE_*) already set

Starts the service as `make demo` does (serving `bench.lag_asgi:application` for its memory
probe), warms it with a few requests, resets the process's peak resident set size, then an
anonymous client sends a 200 MiB body with chunked encoding (no Content-Length to refuse
at once) as fast as loopback takes it, until the server answers or the body is sent. The
figure is the growth of the peak RSS (VmHWM) over the RSS before the body, per URL: an
ordinary page, and a TPA upload URL (which has the larger upload limit).
"""

from __future__ import annotations

import socket

import httpx

from bench.server import serve, setup

MiB = 2**20
BODY = 200 * MiB
GOAL = 20 * MiB
CHUNK = b"x" * (256 * 1024)


def send_body(base: str, path: str) -> tuple[int, int]:
    """Bytes sent before the server answered (or all of them), and the answer's status."""
    host, port = base.removeprefix("http://").split(":")
    frame = f"{len(CHUNK):x}\r\n".encode() + CHUNK + b"\r\n"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/octet-stream\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    sent = 0
    with socket.create_connection((host, int(port)), timeout=120) as sock:
        sock.sendall(head)
        try:
            while sent < BODY:
                sock.sendall(frame)
                sent += len(CHUNK)
            sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server refused the body and closed: what it answered is in our buffer
        try:
            answer = sock.recv(64)
        except ConnectionResetError:
            answer = b""
    status = int(answer.split()[1]) if answer.startswith(b"HTTP/") else 0
    return sent, status


def measure(base: str, path: str) -> dict[str, int]:
    with httpx.Client(base_url=base, timeout=60) as client:
        for _ in range(5):
            client.get("/accounts/login/")
        before = client.get("/__bench__/memory?reset=1").json()
        sent, status = send_body(base, path)
        after = client.get("/__bench__/memory").json()
    return {"sent": sent, "status": status, "growth": after["peak"] - before["rss"], "rss": before["rss"]}


def main() -> list[dict[str, str]]:
    setup()
    from tpa import demo

    demo.ensure_master_data()
    from tpa.models import Tpa

    code = Tpa.objects.order_by("code").values_list("code", flat=True).first() or "ACME"
    rows = []
    with serve("bench.lag_asgi:application") as base:
        for label, path in (
            ("a page (`/accounts/login/`)", "/accounts/login/"),
            ("a TPA upload URL", f"/tpa/{code}/upload"),
        ):
            result = measure(base, path)
            rows.append(
                {
                    "benchmark": f"memory: an anonymous 200 MiB chunked POST to {label}, 1 uvicorn worker",
                    "figure": f"+{result['growth'] / MiB:.1f} MiB peak RSS",
                    "limit": f"< {GOAL / MiB:.0f} MiB",
                    "note": f"answered {result['status'] or 'nothing'} after {result['sent'] / MiB:.0f} MiB sent; "
                    f"RSS before {result['rss'] / MiB:.0f} MiB (VmHWM - VmRSS of the server process)",
                }
            )
    return rows


if __name__ == "__main__":
    from bench.table import print_table

    print_table(main())
