"""The sandbox in a child process, so that its CPU does not compete with the client's GIL.

``python -m bench._server '<json options>'`` prints the base URL on one line, then serves until
its stdin closes, printing the server's counters as one JSON line for each ``stats`` line it
reads, and once more at exit.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.sandbox import SandboxAccount


@dataclass
class ServerProcess:
    """A handle on a sandbox child process."""

    proc: subprocess.Popen[str]
    url: str

    @classmethod
    def start(cls, **options: Any) -> ServerProcess:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench._server", json.dumps(options)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.startswith("http://127.0.0.1:"):
            proc.kill()
            raise RuntimeError(f"the sandbox did not start: {line!r}")
        return cls(proc, line)

    def stats(self) -> dict[str, Any]:
        """The server's counters so far: requests (per route), 429s sent, transactions."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        stats: dict[str, Any] = json.loads(self.proc.stdout.readline())
        return stats

    def stop(self) -> dict[str, Any]:
        """Stop the server; its final counters."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        out = self.proc.stdout.read()
        self.proc.wait(timeout=30)
        stats: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return stats

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.stop()


def history_account(
    *, end: dt.date, days: int, recent_days: int, count: int, seed: int = 7
) -> SandboxAccount:
    """A small business over the last ``recent_days`` days (``SandboxAccount.generate``: five
    currencies, refunds, disputes, fees, payouts) after ``count`` usd charges spread over the
    ``days - recent_days`` days before: a long history that any day's sync leaves untouched."""
    from bot.sandbox import SandboxAccount

    recent = SandboxAccount.generate(end=end, days=recent_days, seed=seed)
    old = SandboxAccount.bulk(
        start=end - dt.timedelta(days=days),
        end=end - dt.timedelta(days=recent_days),
        count=count,
        seed=seed + 1,
    )
    return SandboxAccount(
        start=old.start,
        end=recent.end,
        seed=seed,
        transactions=[*old.transactions, *recent.transactions],
    )


def main(options: dict[str, Any]) -> None:
    from bot.sandbox import SandboxAccount, SandboxServer

    end = dt.date.fromisoformat(options["end"])
    kind = options.get("kind", "bulk")
    if kind == "bulk":
        account = SandboxAccount.bulk(
            start=end - dt.timedelta(days=int(options["days"])),
            end=end,
            count=int(options["count"]),
            skew=float(options.get("skew", 0.0)),
            seed=int(options.get("seed", 7)),
        )
    elif kind == "history":
        account = history_account(
            end=end,
            days=int(options["days"]),
            recent_days=int(options["recent_days"]),
            count=int(options["count"]),
            seed=int(options.get("seed", 7)),
        )
    else:
        account = SandboxAccount.generate(
            end=end, days=int(options["days"]), seed=int(options.get("seed", 7))
        )
    server = SandboxServer(
        account,
        latency=float(options.get("latency", 0.0)),
        rate_limit=options.get("rate_limit"),
    ).start()
    print(server.url, flush=True)

    def report() -> None:
        stats = server.stats
        print(
            json.dumps(
                {
                    "requests": sum(stats.requests.values()),
                    "by_route": {f"{m} {p}": n for (m, p), n in stats.requests.items()},
                    "rate_limited": stats.rate_limited,
                    "transactions": len(account),
                }
            ),
            flush=True,
        )

    for line in sys.stdin:  # until the parent closes our stdin
        if line.strip() == "stats":
            report()
    report()
    server.stop()


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
