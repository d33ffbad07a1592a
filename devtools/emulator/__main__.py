"""python -m devtools.emulator --host 127.0.0.1 --port 8765 [--data-dir DIR]"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import warnings
from types import FrameType

import uvicorn

from devtools.emulator.server import EmulatorServer, build_app


def _exit_quietly(signum: int, frame: FrameType | None) -> None:
    # uvicorn handles SIGINT/SIGTERM itself (cancel the running queries, close the databases),
    # then raises the signal again for the handler it found: exit 0 rather than a traceback.
    sys.exit(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devtools.emulator", description="Run the Snowflake emulator.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port (printed when ready)")
    parser.add_argument("--data-dir", help="keep databases and staged files here across restarts")
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)

    # fakesnow's cursor triggers this DuckDB warning on every query result
    warnings.filterwarnings("ignore", message="Arrow output on a DB-API result", category=UserWarning)

    config = uvicorn.Config(
        build_app(args.data_dir),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    # fakesnow sets its own logger to INFO (a line per login and upload) whatever uvicorn says.
    logging.getLogger("fakesnow.server").setLevel(args.log_level.upper())
    signal.signal(signal.SIGINT, _exit_quietly)
    signal.signal(signal.SIGTERM, _exit_quietly)
    EmulatorServer(config, announce=True).run()


if __name__ == "__main__":
    main()
