"""Receipt OCR + extraction accuracy and speed on the receipts_dev set, per OCR engine.

The data set (real scanned receipts with vendor/date/total labels, research use only) is
read from ``DESKBOOKS_RECEIPTS_DEV`` or ``../shared/data/receipts_dev`` beside the repo; it is
never copied into the repo, and the report names files and fields only, never their text.

Each engine runs in its own subprocess so that its peak RSS is measured on its own.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

from benchmarks.common import FIXED_NOW, ROOT, machine_details

NAME = "ocr"
ENGINES = ("rapidocr", "tesseract")
QUICK_COUNT = 8
_MONTHS = {m: i for i, m in enumerate(
    "JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split(), start=1)}


def dataset_dir() -> Path:
    """Where the labelled receipts live (env override, else shared/ beside the checkout)."""
    override = os.environ.get("DESKBOOKS_RECEIPTS_DEV")
    return Path(override) if override else ROOT.parent / "shared" / "data" / "receipts_dev"


def load_labels(directory: Path) -> list[dict[str, str]]:
    """The labels.jsonl rows: image, vendor, date, total (strings as printed)."""
    path = directory / "labels.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]


def normalize_vendor(name: str | None) -> str:
    """Case-, space- and punctuation-insensitive form of a vendor name."""
    return re.sub(r"[^A-Z0-9]", "", (name or "").upper())


def vendor_matches(predicted: str | None, label: str) -> bool:
    """Equal after normalising, or one a prefix of the other (at least 8 characters)."""
    a, b = normalize_vendor(predicted), normalize_vendor(label)
    if not a:
        return False
    if a == b:
        return True
    short, long_ = sorted((a, b), key=len)
    return len(short) >= 8 and long_.startswith(short)


def parse_label_date(text: str) -> date | None:
    """A label date as printed (mostly day-first: DD/MM/YYYY, DD-MM-YY, DD MON YYYY)."""
    text = text.strip().upper()
    match = re.fullmatch(r"(\d{1,2})[/\-.](\d{1,2})[/\-.](\d{2}|\d{4})", text)
    if match:
        a, b, year = int(match[1]), int(match[2]), int(match[3])
        year += 2000 if year < 100 else 0
        for day, month in ((a, b), (b, a)):  # day-first, unless that cannot be a date
            try:
                return date(year, month, day)
            except ValueError:
                continue
        return None
    match = re.fullmatch(r"(\d{1,2})\s*([A-Z]{3})[A-Z]*\s*(\d{4})", text)
    if match and match[2] in _MONTHS:
        return date(int(match[3]), _MONTHS[match[2]], int(match[1]))
    match = re.fullmatch(r"(\d{4})[/\-.](\d{1,2})[/\-.](\d{1,2})", text)
    if match:
        return date(int(match[1]), int(match[2]), int(match[3]))
    return None


def parse_label_total(text: str) -> int | None:
    """A label total ("12.30", "RM 12.30", "$12.30") in cents."""
    match = re.search(r"(\d+)[.,](\d{2})\b", text.replace(",", "") if "." in text else text)
    if not match:
        return None
    return int(match[1]) * 100 + int(match[2])


# --- worker (one engine, one process) -----------------------------------------------------

def _worker(engine_name: str, quick: bool) -> dict[str, object]:
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    from finance.receipts import OcrUnavailableError, extract_fields, get_engine, load_receipt

    directory = dataset_dir()
    labels = load_labels(directory)
    if quick:
        labels = labels[:QUICK_COUNT]
    started = time.perf_counter()
    try:
        engine = get_engine(engine_name)
    except OcrUnavailableError as exc:
        return {"engine": engine_name, "error": str(exc)}
    startup_ms = int((time.perf_counter() - started) * 1000)
    rows = []
    for label in labels:
        data = (directory / label["image"]).read_bytes()
        t0 = time.perf_counter()
        loaded = load_receipt(data)
        page = loaded.pages[0]
        assert page.image is not None
        result = engine.recognize(page.image)
        fields = extract_fields(result, date_order="day_first", today=FIXED_NOW.date(),
                                default_currency="MYR")
        elapsed_ms = int((time.perf_counter() - t0) * 1000)
        rows.append({
            "image": label["image"],
            "ms": elapsed_ms,
            "vendor": vendor_matches(fields.vendor, label["vendor"]),
            "date": fields.date is not None and fields.date == parse_label_date(label["date"]),
            "total": fields.total_cents is not None
            and fields.total_cents == parse_label_total(label["total"]),
            "total_found": fields.total_cents is not None,
            "confidence": fields.confidence.overall,
        })
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_mb = 0
    if engine_name == "tesseract" and labels:
        biggest = max(labels, key=lambda lb: (directory / lb["image"]).stat().st_size)
        page = load_receipt((directory / biggest["image"]).read_bytes()).pages[0]
        assert page.image is not None
        child_mb = _tesseract_peak_mb(page.image)
    return {"engine": engine_name, "startup_ms": startup_ms, "rows": rows,
            "peak_rss_mb": self_kb // 1024, "child_peak_rss_mb": child_mb}


def _tesseract_peak_mb(image: object) -> int:
    """Peak RSS of one tesseract run (VmHWM polled from /proc; rusage would count the fork)."""
    import shutil
    import tempfile

    from PIL import Image

    binary = shutil.which("tesseract")
    if binary is None or not isinstance(image, Image.Image):
        return 0
    gray = image.convert("L")
    if gray.width < 1000:  # the engine's own upscaling
        gray = gray.resize((1000, gray.height * 1000 // gray.width))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "page.png"
        gray.save(path)
        process = subprocess.Popen([binary, str(path), "-", "--psm", "6", "tsv"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   env=dict(os.environ, OMP_THREAD_LIMIT="1"))
        peak_kb = 0
        status = Path(f"/proc/{process.pid}/status")
        while process.poll() is None:
            try:
                match = re.search(r"VmHWM:\s+(\d+)", status.read_text())
            except OSError:
                break
            if match:
                peak_kb = max(peak_kb, int(match.group(1)))
            time.sleep(0.005)
        process.wait()
    return peak_kb // 1024


def _run_worker(engine_name: str, quick: bool) -> dict[str, object]:
    env = dict(os.environ, ORT_DISABLE_TELEMETRY="1")
    command = [sys.executable, "-m", "benchmarks.bench_ocr", "--worker", engine_name]
    if quick:
        command.append("--quick")
    completed = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env,
                               check=False, timeout=3600)
    if completed.returncode != 0:
        return {"engine": engine_name,
                "error": f"worker failed: {completed.stderr.strip().splitlines()[-1:]}"}
    result: dict[str, object] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


# --- report -------------------------------------------------------------------------------

def _seconds(ms: int) -> str:
    return f"{ms // 1000}.{ms % 1000 // 10:02d}"


def _pct(hits: int, total: int) -> str:
    return f"{hits * 100 // total}% ({hits}/{total})" if total else "–"


def run(quick: bool = False) -> str:
    """Benchmark every engine and return the Markdown section for docs/benchmarks.md."""
    directory = dataset_dir()
    header = "## Receipt OCR and field extraction (receipts_dev)"
    if not (directory / "labels.jsonl").exists():
        return "\n".join([header, "", f"Skipped: no labelled receipts at `{directory}` (set "
                          "DESKBOOKS_RECEIPTS_DEV)."])
    results = [_run_worker(name, quick) for name in ENGINES]
    table = []
    scores: dict[str, tuple[int, int]] = {}
    notes = []
    misses = []
    for result in results:
        name = str(result["engine"])
        if "error" in result:
            table.append(f"| {name} | – | – | – | – | – | – | not run: {result['error']} |")
            continue
        rows: list[dict[str, object]] = result["rows"]  # type: ignore[assignment]
        n = len(rows)
        vendor = sum(bool(r["vendor"]) for r in rows)
        when = sum(bool(r["date"]) for r in rows)
        total = sum(bool(r["total"]) for r in rows)
        median_ms = statistics.median_low(int(str(r["ms"])) for r in rows)
        rss = f"{result['peak_rss_mb']} MB"
        if name == "tesseract":
            rss += f" + {result['child_peak_rss_mb']} MB per tesseract process"
        table.append(
            f"| {name} | {n} | {_pct(vendor, n)} | {_pct(when, n)} | {_pct(total, n)} | "
            f"{_seconds(median_ms)} | {_seconds(int(str(result['startup_ms'])))} | {rss} |")
        scores[name] = (2 * total + when + vendor, -median_ms)
        missed = [f"{r['image']} ({', '.join(f for f in ('vendor', 'date', 'total') if not r[f])})"
                  for r in rows if not (r["vendor"] and r["date"] and r["total"])]
        if missed:
            misses.append(f"- {name}: " + "; ".join(missed))
    from finance.receipts.ocr import DEFAULT_ENGINE

    if scores:
        best = max(scores, key=lambda k: scores[k])
        notes.append(
            f"**Default engine: `{best}`** (most totals, then dates and vendors right; ties go "
            "to the faster engine)."
            + ("" if best == DEFAULT_ENGINE else
               f" Note: `finance.receipts.ocr.DEFAULT_ENGINE` is still `{DEFAULT_ENGINE}`."))
    load = os.getloadavg()[0]
    return "\n".join([
        header,
        "",
        f"Machine: {machine_details()}; load average {load:.1f} at the end of the run "
        "(timings are wall-clock and rise when the machine is shared)",
        "",
        f"Data: {'first ' + str(QUICK_COUNT) + ' of ' if quick else ''}the labelled scans in "
        "`receipts_dev` (ICDAR-2019 SROIE receipts, research use only; read in place, never "
        "copied). Pipeline per receipt: safe load (EXIF, contrast, deskew) → OCR → rows merged "
        "by vertical position → rule-based extraction (`date_order=day_first`). Vendor counts "
        "as right when equal to the label ignoring case, spaces and punctuation, or a prefix "
        "of it (≥ 8 characters); dates compare as dates, totals in cents.",
        "",
        "| engine | receipts | vendor | date | total | median s/receipt | engine start s "
        "| peak RSS |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
        *table,
        "",
        *notes,
        "",
        "The extraction rules were written while looking at this set's OCR output (general "
        "rules, no per-file values), so treat these figures as optimistic for unseen "
        "receipts. Receipts with at least one wrong field:",
        "",
        *misses,
    ])


def main() -> None:
    """Worker entry point: ``python -m benchmarks.bench_ocr --worker ENGINE [--quick]``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--worker", choices=ENGINES, required=True)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    sys.stdout.write(json.dumps(_worker(args.worker, args.quick)) + "\n")


if __name__ == "__main__":
    main()
