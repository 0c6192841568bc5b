"""The benchmark harness: contenders, paired repeats, results, bars and tables.

Shared by the workloads in run.py (embedded engines and their peers), servers.py
(server backends against their raw drivers) and aio.py (plugstore.aio against async
drivers).
"""

from __future__ import annotations

import gc
import shutil
import signal
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Value = dict[str, Any]


def unwind_on_sigterm() -> None:
    """Make SIGTERM (a stopped CI job, ``kill``) unwind the run like Ctrl-C: its
    ``finally`` blocks drop the tables and keys it made on the servers and stop the
    emulator it started, instead of dying with them left behind."""

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


#: A per-op contender: (fresh dir, keys, values) -> seconds spent per timed phase.
Contender = Callable[[Path, Sequence[str], Sequence[Value]], dict[str, float]]


def make_value(i: int) -> Value:
    """The value every contender stores (a small dict, as a bot plugin would)."""
    return {"n": i, "name": f"user-{i}", "tags": ["a", "b"]}


# --------------------------------------------------------------------------- results


@dataclass
class Row:
    """One contender doing one operation: the seconds of each repeat for ``n`` ops."""

    contender: str
    op: str
    n: int
    seconds: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rates(self) -> list[float]:
        return [self.n / s for s in self.seconds]

    @property
    def median(self) -> float:
        return statistics.median(self.rates)


def paired_ratio(a: Row, b: Row) -> float:
    """Median over repeats of ``a`` ops/s / ``b`` ops/s measured in the same repeat."""
    return statistics.median(x / y for x, y in zip(a.rates, b.rates, strict=True))


@dataclass
class Bar:
    """A target from the project brief, checked against this run's paired ratios."""

    label: str
    measured: str
    passed: bool


@dataclass
class Result:
    key: str
    title: str
    subject: str  # the plugstore contender ratios are computed for
    rows: list[Row]
    bars: list[Bar] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def row(self, contender: str, op: str) -> Row:
        for r in self.rows:
            if r.contender == contender and r.op == op:
                return r
        raise KeyError((contender, op))

    def ratio(self, peer: str, op: str) -> float:
        """Median over repeats of plugstore ops/s / ``peer`` ops/s in the same repeat.

        Pairing by repeat cancels the slow phases of a shared machine: both runs of a pair
        happened within seconds of each other.
        """
        return paired_ratio(self.row(self.subject, op), self.row(peer, op))

    def ratio_bar(self, peer: str, op: str, minimum: float) -> None:
        r = self.ratio(peer, op)
        self.bars.append(
            Bar(f"{self.subject} >= {minimum:g}x {peer} ({op})", f"{r:.2f}x", r >= minimum)
        )


# --------------------------------------------------------------------------- timing


def timed(loop: Callable[[], Any]) -> tuple[float, Any]:
    """Run ``loop`` once; return (seconds, its result).  Garbage is collected first."""
    gc.collect()
    t0 = time.perf_counter()
    out = loop()
    return time.perf_counter() - t0, out


def set_get(sets: Callable[[], Any], gets: Callable[[], Any], expected: Any) -> dict[str, float]:
    """Time a set loop then a get loop; check the last value read back is ``expected``."""
    set_s, _ = timed(sets)
    get_s, last = timed(gets)
    if last != expected:
        raise AssertionError(f"read back {last!r}, expected {expected!r}")
    return {"set": set_s, "get": get_s}


def measure(
    contenders: Sequence[tuple[str, int, Contender]],
    keys: Sequence[str],
    values: Sequence[Value],
    tmp: Path,
    repeat: int,
) -> list[Row]:
    """Run every contender ``repeat`` times (order alternating) in fresh directories."""

    def once(fn: Contender, n: int) -> dict[str, float]:
        d = Path(tempfile.mkdtemp(dir=tmp))
        try:
            return fn(d, keys[:n], values[:n])
        finally:
            shutil.rmtree(d, ignore_errors=True)

    rows: dict[tuple[str, str], Row] = {}
    for _, n, fn in contenders:  # warm-up: imports, code paths, page cache
        once(fn, min(n, 50))
    for r in range(repeat):
        for name, n, fn in contenders if r % 2 == 0 else contenders[::-1]:
            for op, secs in once(fn, n).items():
                rows.setdefault((name, op), Row(name, op, n)).seconds.append(secs)
    return list(rows.values())


@dataclass
class Settings:
    n: int
    repeat: int
    batch: int
    race_n: int
    procs: int
    lock_n: int = 500  # locked get-then-set increments per process (the locks workload)


def make_data(n: int) -> tuple[list[str], list[Value]]:
    return [f"user:{i:08d}" for i in range(n)], [make_value(i) for i in range(n)]


# --------------------------------------------------------------------------- report


def span(xs: Sequence[int]) -> str:
    """``"7"`` if every run gave 7, else ``"min..max"``."""
    return str(xs[0]) if min(xs) == max(xs) else f"{min(xs)}..{max(xs)}"


def fmt_rate(x: float) -> str:
    return f"{x:,.0f}"


def format_table(lines: Sequence[Sequence[str]], left: int = 2) -> list[str]:
    """Rows of cells (the first is the header) as aligned text lines, a rule under the
    header; the first ``left`` columns are aligned left, the others (numbers) right."""
    widths = [max(len(r[i]) for r in lines) for i in range(len(lines[0]))]
    out = []
    for i, r in enumerate(lines):
        cells = [
            c.ljust(w) if j < left else c.rjust(w)
            for j, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        out.append("  " + "  ".join(cells).rstrip())
        if i == 0:
            out.append("  " + "  ".join("-" * w for w in widths))
    return out


def bar_line(bar: Bar) -> str:
    return f"  bar: {bar.label:<60} {bar.measured:>9}  {'PASS' if bar.passed else 'FAIL'}"


def write_json(path: Path, settings: Any, results: Sequence[Result], **extra: Any) -> None:
    """Save a run as JSON: versions and machine, ``settings`` (a dataclass), ``extra``
    fields, and every workload with its rows' samples and medians."""
    import json
    import os
    import platform
    import sqlite3
    from dataclasses import asdict

    import plugstore

    doc = {
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "plugstore": plugstore.__version__,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "settings": asdict(settings),
        **extra,
        "workloads": [
            {**asdict(res), "rows": [{**asdict(r), "median": r.median} for r in res.rows]}
            for res in results
        ],
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")


def bar_summary(results: Sequence[Result], seconds: float) -> tuple[list[str], int]:
    """The closing summary of every bar of a run that took ``seconds``, and how many
    bars failed."""
    bars = [(res.key, bar) for res in results for bar in res.bars]
    lines = ["== summary of bars"]
    for key, bar in bars:
        lines.append(f"  {'PASS' if bar.passed else 'FAIL'}  [{key}] {bar.label}: {bar.measured}")
    failed = sum(not bar.passed for _, bar in bars)
    lines.append(f"  {len(bars) - failed}/{len(bars)} bars pass; {seconds:.0f}s")
    return lines, failed
