"""The fake Google Sheets API (``tests/fakes/sheets.py``) in a child process, so that its CPU
does not compete with the measured command's GIL, with a meter on its traffic.

``python -m bench._sheets_server '<json options>'`` creates the spreadsheets named in
``options["spreadsheets"]``, prints the base URL on one line, then answers one JSON line for
each command line it reads on stdin, until stdin closes:

- ``stats``: requests by kind, HTTP errors, bytes received and sent (all of each request and
  response, headers included, token requests kept apart), the largest request (whole, and its
  body), the server's CPU seconds, and per spreadsheet its grid cells (what Google's
  10,000,000-cell limit counts) and rows per tab;
- ``reset``: zero the counters;
- ``snapshot`` / ``restore``: keep the spreadsheets as they are / put them back as kept (the
  fake replaces a cell, never mutates one, so ``Spreadsheet.clone()`` is a cheap snapshot).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import REPO

EMAIL = "revbot-bench@bench-project.iam.gserviceaccount.com"


@dataclass
class SheetsProcess:
    """A handle on a fake Sheets child process."""

    proc: subprocess.Popen[str]
    url: str

    @classmethod
    def start(cls, *spreadsheets: str) -> SheetsProcess:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench._sheets_server",
             json.dumps({"spreadsheets": list(spreadsheets)})],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO,
        )  # fmt: skip
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.startswith("http://127.0.0.1:"):
            proc.kill()
            raise RuntimeError(f"the fake Sheets server did not start: {line!r}")
        return cls(proc, line)

    def command(self, name: str) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(name + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the fake Sheets server exited (code {self.proc.wait()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def stats(self) -> dict[str, Any]:
        return self.command("stats")

    def write_key(self, path: Path) -> Path:
        """A service-account JSON key whose token URI is this server's (the fake checks the
        JWT's claims, not its signature; the key is fresh and thrown away with ``path``)."""
        from tests.fakes.sheets import write_service_account_key

        write_service_account_key(path, token_uri=f"{self.url}/token", client_email=EMAIL)
        path.chmod(0o600)
        return path

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)

    def __enter__(self) -> SheetsProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.stop()


class _Meter:
    """Bytes through one side of a connection (what the handler's code reads or writes)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.count = 0

    def read(self, *args: Any) -> bytes:
        data: bytes = self._stream.read(*args)
        self.count += len(data)
        return data

    def readline(self, *args: Any) -> bytes:
        data: bytes = self._stream.readline(*args)
        self.count += len(data)
        return data

    def write(self, data: bytes) -> int:
        self.count += len(data)
        written: int = self._stream.write(data)
        return written

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _metered_server() -> Any:
    from tests.fakes.sheets import FakeSheetsServer

    class MeteredHandler(FakeSheetsServer.handler):  # type: ignore[name-defined, misc]
        def setup(self) -> None:
            super().setup()
            self.rfile = _Meter(self.rfile)
            self.wfile = _Meter(self.wfile)

        def handle_one_request(self) -> None:
            got, sent = self.rfile.count, self.wfile.count
            super().handle_one_request()
            got, sent = self.rfile.count - got, self.wfile.count - sent
            if got:
                body = int((getattr(self, "headers", None) or {}).get("Content-Length") or 0)
                self.fake.traffic(getattr(self, "path", ""), got, sent, body)

    class MeteredSheetsServer(FakeSheetsServer):  # type: ignore[misc, valid-type]
        handler = MeteredHandler

        def __init__(self) -> None:
            super().__init__()
            self.meter_lock = threading.Lock()
            self.zero()

        def zero(self) -> None:
            with self.meter_lock:
                self.bytes_in = self.bytes_out = self.largest_in = self.largest_body = 0
                self.token_bytes = 0
                self.cpu0 = time.process_time()

        def traffic(self, path: str, got: int, sent: int, body: int) -> None:
            with self.meter_lock:
                if path.split("?", 1)[0] == "/token":
                    self.token_bytes += got + sent
                    return
                self.bytes_in += got
                self.bytes_out += sent
                self.largest_in = max(self.largest_in, got)
                self.largest_body = max(self.largest_body, body)

    return MeteredSheetsServer()


def _stats(fake: Any) -> dict[str, Any]:
    # Asked between runs only, when no request is in flight.
    by_kind: dict[str, int] = {}
    for request in fake.requests:
        by_kind[request.kind] = by_kind.get(request.kind, 0) + 1
    errors = sum(1 for s in fake.statuses if s >= 400)
    books = {}
    for sid, book in fake.spreadsheets.items():
        rows = {s.title: s.last_value_row() + 1 for s in book.sheets}
        books[sid] = {"cells": book.total_cells(), "rows": rows}
    with fake.meter_lock:
        return {
            "requests": sum(by_kind.values()),
            "by_kind": by_kind,
            "errors": errors,
            "violations": len(fake.violations),
            "bytes_in": fake.bytes_in,
            "bytes_out": fake.bytes_out,
            "largest_in": fake.largest_in,
            "largest_body": fake.largest_body,
            "token_bytes": fake.token_bytes,
            "cpu_seconds": time.process_time() - fake.cpu0,
            "spreadsheets": books,
        }


def main(options: dict[str, Any]) -> None:
    fake = _metered_server()
    for sid in options.get("spreadsheets", []):
        fake.create_spreadsheet(sid, "revbot benchmark", sheets=["Sheet1"])
    fake.start()
    print(fake.url, flush=True)
    kept: dict[str, Any] = {}
    for line in sys.stdin:  # until the parent closes our stdin
        command = line.strip()
        if command == "stats":
            answer = _stats(fake)
        elif command == "reset":
            fake.reset_counts()
            fake.zero()
            answer = {"ok": True}
        elif command == "snapshot":
            kept = {sid: book.clone() for sid, book in fake.spreadsheets.items()}
            answer = {"ok": True}
        elif command == "restore":
            fake.spreadsheets.update({sid: book.clone() for sid, book in kept.items()})
            answer = {"ok": True}
        else:
            answer = {"error": f"unknown command {command!r}"}
        print(json.dumps(answer), flush=True)
    fake.stop()


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
