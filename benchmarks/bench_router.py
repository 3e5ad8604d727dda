"""The offline router: accuracy on the labeled requests and latency per request.

Accuracy: tool AND arguments exact (or a clarifying question / "not understood" where the label
says so) on tests/data/router_requests.yaml, reported for the ``dev`` part (written before the
router) and the ``heldout`` part (written after it, never used to tune it). Latency: median and
p95 of ``route()`` per request over the whole set, with the demo vocabulary (400 members) and
with 10,000 members (the demo's plus 9,600 generated from the demo's name pools). The vocabulary
is built once, outside the timing, as the bot does. Goal: accuracy >= 95 %, latency <= 50 ms.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from bot.router import (
    Clarify,
    Decision,
    MemberEntry,
    NotUnderstood,
    Routed,
    Vocabulary,
    route,
    vocabulary_from_dict,
)
from finance import demo_data

NAME = "router"
DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
REQUESTS = DATA / "router_requests.yaml"
VOCABULARY = DATA / "router_vocabulary.json"


@dataclass(frozen=True)
class Case:
    text: str
    today: date
    tz: str
    files: tuple[str, ...]
    expect: dict[str, Any]
    split: str

    @property
    def label(self) -> str:
        """The tool, or "clarify" / "not_understood", that the case expects."""
        if self.expect.get("clarify"):
            return "clarify"
        if self.expect.get("not_understood"):
            return "not_understood"
        return str(self.expect["tool"])


def _plain(value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def load_cases(path: Path = REQUESTS) -> list[Case]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    defaults = data.get("defaults", {})
    cases = []
    for split in ("dev", "heldout"):
        for item in data.get(split) or []:
            today = item.get("today", defaults["today"])
            cases.append(Case(
                text=item["text"],
                today=today if isinstance(today, date) else date.fromisoformat(str(today)),
                tz=item.get("tz", defaults["tz"]),
                files=tuple(item.get("files", ())),
                expect=_plain(item["expect"]),
                split=split,
            ))
    return cases


def demo_vocabulary() -> Vocabulary:
    """The demo space's vocabulary (seed_demo members=400, seed=7), from its snapshot."""
    return vocabulary_from_dict(json.loads(VOCABULARY.read_text(encoding="utf-8")))


def big_vocabulary(members: int = 10_000, seed: int = 11) -> Vocabulary:
    """The demo vocabulary grown to ``members`` with names drawn like the demo draws them."""
    base = demo_vocabulary()
    rng = random.Random(seed)
    taken = {m.name.lower() for m in base.members}
    extra: list[MemberEntry] = []
    locations = [loc.name for loc in base.locations]
    n = len(base.members)
    while n + len(extra) < members:
        if rng.random() < 0.4:
            name = f"{rng.choice(demo_data.COMPANY_WORDS)} {rng.choice(demo_data.COMPANY_KINDS)}"
            if rng.random() < 0.3:
                name = (f"{rng.choice(demo_data.COMPANY_WORDS)} "
                        f"{rng.choice(demo_data.COMPANY_WORDS)} "
                        f"{rng.choice(demo_data.COMPANY_KINDS)}")
            kind = "company"
        else:
            last = rng.choice(demo_data.LAST_NAMES)
            if rng.random() < 0.3:
                last = f"{last}-{rng.choice(demo_data.LAST_NAMES)}"
            name = f"{rng.choice(demo_data.FIRST_NAMES)} {last}"
            kind = "person"
        if name.lower() in taken:
            continue
        taken.add(name.lower())
        extra.append(MemberEntry(code=f"M-{n + len(extra) + 1:06d}", name=name, kind=kind,
                                 location=rng.choice(locations)))
    return Vocabulary(members=[*base.members, *extra], plans=base.plans,
                      locations=base.locations, vendors=base.vendors)


def route_case(case: Case, vocab: Vocabulary) -> Decision:
    return route(case.text, vocab=vocab, today=case.today, location_tz=case.tz,
                 files=case.files)


def is_correct(case: Case, decision: Decision) -> bool:
    if case.label == "clarify":
        return isinstance(decision, Clarify)
    if case.label == "not_understood":
        return isinstance(decision, NotUnderstood)
    return (isinstance(decision, Routed) and decision.tool == case.expect["tool"]
            and decision.args == case.expect.get("args", {}))


def describe(decision: Decision) -> str:
    if isinstance(decision, Routed):
        return f"{decision.tool} {decision.args}"
    if isinstance(decision, Clarify):
        return f"clarify: {decision.question} {list(decision.options)}"
    return "not understood"


@dataclass
class Report:
    total: int = 0
    correct: int = 0
    per_label: Counter[str] = field(default_factory=Counter)
    per_label_ok: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0

    def table(self) -> str:
        rows = [f"{label:24} {self.per_label_ok[label]:3}/{self.per_label[label]:<3}"
                for label in sorted(self.per_label)]
        return "\n".join(rows)


def evaluate(cases: list[Case], vocab: Vocabulary) -> Report:
    report = Report()
    for case in cases:
        decision = route_case(case, vocab)
        ok = is_correct(case, decision)
        report.total += 1
        report.per_label[case.label] += 1
        if ok:
            report.correct += 1
            report.per_label_ok[case.label] += 1
        else:
            report.failures.append(f"[{case.split}] {case.text!r} (today {case.today}, files "
                                   f"{list(case.files)})\n    expected {case.expect}\n"
                                   f"    got      {describe(decision)}")
    return report


def _latencies(cases: list[Case], vocab: Vocabulary, rounds: int) -> list[float]:
    for case in cases:  # warm-up (regex and fuzzy caches)
        route_case(case, vocab)
    timings = []
    for _ in range(rounds):
        for case in cases:
            start = time.perf_counter()
            route_case(case, vocab)
            timings.append(time.perf_counter() - start)
    return timings


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def run(quick: bool = False) -> str:
    from benchmarks.common import machine_details

    cases = load_cases()
    rounds = 1 if quick else 5
    lines = [
        "## Offline router",
        "",
        f"Machine: {machine_details()}.",
        "",
        f"Labeled set: {len(cases)} requests in tests/data/router_requests.yaml "
        f"({sum(c.split == 'dev' for c in cases)} dev, "
        f"{sum(c.split == 'heldout' for c in cases)} held out). Accuracy = tool and arguments "
        "exact, or a clarifying question where the label expects one. Latency = one `route()` "
        f"call, {rounds} pass(es) over the set after a warm-up; vocabulary built once outside "
        "the timing. Goals: accuracy >= 95 %, latency <= 50 ms per request.",
        "",
        "| members | build vocabulary | accuracy (dev) | accuracy (held out) | median | p95 "
        "| max |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in (400, 10_000):
        start = time.perf_counter()
        vocab = demo_vocabulary() if size == 400 else big_vocabulary(size)
        build = time.perf_counter() - start
        dev = evaluate([c for c in cases if c.split == "dev"], vocab)
        held = evaluate([c for c in cases if c.split == "heldout"], vocab)
        timings = _latencies(cases, vocab, rounds)
        lines.append(
            f"| {len(vocab.members):,} | {build * 1000:.0f} ms | {dev.correct}/{dev.total} "
            f"({dev.accuracy:.1%}) | {held.correct}/{held.total} ({held.accuracy:.1%}) | "
            f"{statistics.median(timings) * 1000:.2f} ms | {_p95(timings) * 1000:.2f} ms | "
            f"{max(timings) * 1000:.2f} ms |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover
    cases = load_cases()
    report = evaluate(cases, demo_vocabulary())
    print(report.table())  # noqa: T201
    print("\n".join(report.failures))  # noqa: T201
    print(f"{report.correct}/{report.total} = {report.accuracy:.1%}")  # noqa: T201
