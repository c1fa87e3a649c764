"""One run at a time per DATA_DIR.

An ``flock`` on ``DATA_DIR/revbot.lock``: the kernel drops it when the holder dies, even by
SIGKILL, so a stale lock never blocks the next run.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bot.deadline import run_ceiling
from bot.errors import ConfigError, TemporaryError


@contextmanager
def exclusive(data_dir: Path, *, command: str) -> Iterator[None]:
    if data_dir.exists() and not data_dir.is_dir():
        raise ConfigError(
            f"DATA_DIR {data_dir} is a file, not a folder; point DATA_DIR at a folder (revbot "
            "creates it if it does not exist)"
        )
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(data_dir / "revbot.lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as e:
        raise ConfigError(
            f"DATA_DIR {data_dir} is not writable ({e.strerror}); point DATA_DIR at a folder "
            "revbot may write to"
        ) from e
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another revbot"
            raise TemporaryError(
                f"{holder} is running on {data_dir}; this {command} did nothing, try again "
                "when it has finished"
            ) from e
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"revbot {command} (pid {os.getpid()})".encode(), 0)
        with run_ceiling(command):
            yield
    finally:
        os.close(fd)
