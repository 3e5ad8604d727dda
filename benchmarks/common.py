"""Shared benchmark plumbing: fresh databases, machine details, results into the docs."""

from __future__ import annotations

import os
import platform
import re
import sqlite3
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, create_engine, text

from finance import db
from finance.services import Services, build_services
from finance.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
PG_URL = os.environ.get(
    "DESKBOOKS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
FIXED_NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)


def postgres_reachable() -> bool:
    try:
        engine = create_engine(PG_URL)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:
        return False


@contextmanager
def fresh_services(backend: str) -> Iterator[Services]:
    """Services on an empty, migrated database that is thrown away afterwards."""
    settings = load_settings()
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            engine = db.make_engine(f"sqlite:///{tmp}/bench.db")
            svc = build_services(settings, clock=lambda: FIXED_NOW, engine=engine)
            svc.init_schema(fast=True)
            try:
                yield svc
            finally:
                engine.dispose()
        return
    with db.scratch_postgres_schema(PG_URL, "bench") as engine:
        svc = build_services(settings, clock=lambda: FIXED_NOW, engine=engine)
        svc.init_schema(fast=True)
        yield svc


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median(values: list[float]) -> float:
    return statistics.median(values)


def machine_details(engine: Engine | None = None) -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))  # type: ignore[union-attr]
        mem = f", {kb // 1024 // 1024} GiB RAM"
    except (OSError, AttributeError):
        pass
    pg = "PostgreSQL not reachable"
    if postgres_reachable():
        engine = create_engine(PG_URL)
        with engine.connect() as conn:
            pg = conn.execute(text("SHOW server_version")).scalar_one()
            pg = f"PostgreSQL {pg}"
        engine.dispose()
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, cwd=ROOT, check=False).stdout.strip()
    except OSError:
        commit = "?"
    return (f"{cpu}, {os.cpu_count()} cores{mem}; Python {platform.python_version()}; "
            f"SQLite {sqlite3.sqlite_version}; {pg}; commit {commit or '?'}; "
            f"run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section between the markers for ``name`` in the docs."""
    DOC.parent.mkdir(parents=True, exist_ok=True)
    text_ = DOC.read_text(encoding="utf-8") if DOC.exists() else (
        "# Benchmarks\n\nRun with `make bench` (or `python -m benchmarks.run NAME`). Each section "
        "is rewritten by its benchmark; figures are medians on the machine named in the section.\n"
    )
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text_ and end in text_:
        before, rest = text_.split(start, 1)
        _, after = rest.split(end, 1)
        text_ = before + block + after
    else:
        text_ = text_.rstrip() + "\n\n" + block + "\n"
    DOC.write_text(text_, encoding="utf-8")


def run_or_profile(go: Callable[[], object], profile: str | None, top: int = 40) -> None:
    """Run ``go``; with a file name, under cProfile, dumping stats there and printing the top."""
    if not profile:
        go()
        return
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.runcall(go)
    profiler.dump_stats(profile)
    pstats.Stats(profile).sort_stats("cumulative").print_stats(top)
