"""``deskbooks kb``: ingest the rules knowledge base and search it (DESIGN §8)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from bot.cli import JsonOpt, UsageError, _emit, _settings, app, handle_errors

kb_app = typer.Typer(help="The rules knowledge base (knowledge/ in ChromaDB).",
                     no_args_is_help=True)
app.add_typer(kb_app, name="kb")


def _open() -> Any:
    """The knowledge base from settings; no database needed."""
    from finance.embeddings import EmbeddingError, embedding_function
    from finance.kb import KnowledgeBase, KnowledgeError, chroma_client

    settings = _settings()
    try:
        return KnowledgeBase(chroma_client(settings), embedding_function(settings),
                             settings.knowledge_path)
    except (EmbeddingError, KnowledgeError) as exc:
        raise UsageError(str(exc)) from None


@kb_app.command("ingest")
@handle_errors
def kb_ingest(as_json: JsonOpt = False) -> None:
    """Load knowledge/ into the rules collection (only new or changed rules are embedded)."""
    from finance.embeddings import EmbeddingError
    from finance.kb import KnowledgeError

    kb = _open()
    try:
        report = kb.ingest()
    except (KnowledgeError, EmbeddingError) as exc:
        raise UsageError(str(exc)) from None
    data = report.as_dict() | {"knowledge_dir": str(kb.knowledge_dir),
                               "collection": kb.collection_name}
    _emit(data, as_json,
          f"{report.total} rules from {kb.knowledge_dir}: {len(report.added)} added, "
          f"{len(report.updated)} updated, {len(report.unchanged)} unchanged, "
          f"{len(report.removed)} removed")


@kb_app.command("search")
@handle_errors
def kb_search(
    query: Annotated[str, typer.Argument(help="A question or keywords.")],
    k: Annotated[int, typer.Option("--k", min=1, max=50, help="How many rules.")] = 5,
    tag: Annotated[list[str] | None, typer.Option(
        "--tag", help="Only rules with this tag (repeatable).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The rules closest in meaning to QUERY, best first."""
    from finance.embeddings import EmbeddingError
    from finance.kb import KnowledgeError

    kb = _open()
    try:
        hits = kb.search(query, k=k, tags=tag or None)
    except (KnowledgeError, EmbeddingError) as exc:
        raise UsageError(str(exc)) from None
    lines = []
    for n, hit in enumerate(hits, 1):
        lines.append(f"{n}. [{hit.score:.2f}] {hit.rule_id} — {hit.title} ({hit.source})")
        lines.append("   " + " ".join(hit.text.split())[:300])
    _emit({"query": query, "hits": [h.as_dict() for h in hits]}, as_json,
          "\n".join(lines) if lines else "no rules found")
