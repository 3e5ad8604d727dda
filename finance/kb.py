"""The rules knowledge base and the operator's expense history, in ChromaDB (DESIGN §2, §4).

``KnowledgeBase`` ingests ``knowledge/`` (Markdown with YAML front matter, split into one
searchable rule per ``##`` section, plus the YAML tables: chart of accounts, tax rates,
categorization rules, approval policy) idempotently by stable id: a content hash in each
record's metadata means unchanged rules are skipped, changed ones re-embedded and rules whose
file or section disappeared are removed.

``ExpenseHistory`` holds categorized past expenses so a new receipt can be compared with what
the operator did before (vendor + description similarity, filtered by location and date).

Storage is a ChromaDB server when ``DESKBOOKS_CHROMA_URL`` is set, else an embedded store under
``<data dir>/chroma``. Every collection is opened with an explicit embedding function and its
name carries the embedding model's key, so vectors of different models never mix.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import yaml

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection
    from sqlmodel import Session

    from finance.embeddings import LocalEmbeddingFunction, OpenAICompatibleEmbeddingFunction
    from finance.services import Services
    from finance.settings import Settings

    EmbeddingFn = LocalEmbeddingFunction | OpenAICompatibleEmbeddingFunction

RULES_COLLECTION = "deskbooks-rules"
HISTORY_COLLECTION = "deskbooks-expenses"
_BATCH = 500


class KnowledgeError(Exception):
    """A knowledge file cannot be read, or a query is unusable; the message names the file."""


# --------------------------------------------------------------------------- chroma plumbing


def chroma_client(settings: Settings) -> ClientAPI:
    """An HTTP client for ``DESKBOOKS_CHROMA_URL``, else an embedded store in the data dir."""
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")  # see finance.embeddings
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    if settings.chroma_url:
        url = urlsplit(settings.chroma_url)
        ssl = url.scheme == "https"
        try:
            return chromadb.HttpClient(
                host=url.hostname or "localhost",
                port=url.port or (443 if ssl else 8000),
                ssl=ssl,
                settings=chroma_settings,
            )
        except ValueError as exc:  # chromadb's "Could not connect to a Chroma server"
            raise KnowledgeError(
                f"cannot reach the ChromaDB server at {settings.chroma_url} "
                f"(DESKBOOKS_CHROMA_URL): {exc}"
            ) from None
    path = Path(settings.data_dir) / "chroma"
    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=chroma_settings)


def _collection(client: ClientAPI, base: str, ef: EmbeddingFn) -> Collection:
    name = f"{base}-{ef.key}"[:63].rstrip("-_.")
    return client.get_or_create_collection(
        name,
        embedding_function=ef,  # type: ignore[arg-type]
        configuration={"hnsw": {"space": "cosine"}},
        metadata={"embedding_model": json.dumps(ef.get_config(), sort_keys=True)},
    )


def _stored_hashes(collection: Collection, ids: Sequence[str] | None = None) -> dict[str, str]:
    """id -> content hash of the records in the collection (all, or only ``ids``)."""
    out: dict[str, str] = {}
    if ids is not None:
        for start in range(0, len(ids), _BATCH):
            got = collection.get(ids=list(ids[start : start + _BATCH]), include=["metadatas"])
            for rid, meta in zip(got["ids"], got["metadatas"] or [], strict=True):
                out[rid] = str((meta or {}).get("content_sha256", ""))
        return out
    offset = 0
    while True:
        got = collection.get(include=["metadatas"], limit=_BATCH, offset=offset)
        for rid, meta in zip(got["ids"], got["metadatas"] or [], strict=True):
            out[rid] = str((meta or {}).get("content_sha256", ""))
        if len(got["ids"]) < _BATCH:
            return out
        offset += _BATCH


def _hash(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _upsert(collection: Collection, ef: EmbeddingFn, ids: list[str], embed_texts: list[str],
            documents: list[str], metadatas: list[dict[str, Any]]) -> None:
    for start in range(0, len(ids), _BATCH):
        end = start + _BATCH
        collection.upsert(
            ids=ids[start:end],
            embeddings=ef(embed_texts[start:end]),
            documents=documents[start:end],
            metadatas=metadatas[start:end],  # type: ignore[arg-type]
        )


# --------------------------------------------------------------------------- knowledge files


@dataclass(frozen=True)
class RuleDoc:
    """One searchable rule: a Markdown section or one row of a YAML table."""

    rule_id: str
    title: str
    text: str
    source: str
    tags: tuple[str, ...] = ()

    def content_hash(self) -> str:
        return _hash({"title": self.title, "text": self.text, "source": self.source,
                      "tags": sorted(self.tags)})


@dataclass(frozen=True)
class RuleHit:
    """A search result; ``score`` ranks it: the cosine similarity (1.0 = same meaning) plus
    up to ``KEYWORD_WEIGHT`` for the share of the query's words the rule contains."""

    rule_id: str
    title: str
    text: str
    source: str
    score: float  # float-ok

    def as_dict(self) -> dict[str, Any]:
        return {"rule_id": self.rule_id, "title": self.title, "text": self.text,
                "source": self.source, "score": round(self.score, 4)}


@dataclass(frozen=True)
class IngestReport:
    """Rule ids by outcome of one ingest (each tuple sorted)."""

    added: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        return len(self.added) + len(self.updated) + len(self.unchanged)

    def as_dict(self) -> dict[str, Any]:
        return {"added": len(self.added), "updated": len(self.updated),
                "unchanged": len(self.unchanged), "removed": len(self.removed),
                "rules": self.total,
                "ids": {"added": list(self.added), "updated": list(self.updated),
                        "removed": list(self.removed)}}


def slugify(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug or "section"


_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.DOTALL)
_HEADING = re.compile(r"^(#{1,2})[ \t]+(.+?)[ \t#]*$", re.MULTILINE)


def parse_markdown(text: str, source: str) -> list[RuleDoc]:
    """Split a Markdown rule file into one ``RuleDoc`` per ``##`` section.

    Front matter (optional) gives ``id``, ``title`` and ``tags``; without it the file name is
    the id and the first ``#`` heading the title. Text before the first ``##`` becomes the
    ``<id>#overview`` rule when it says anything.
    """
    meta: dict[str, Any] = {}
    match = _FRONT_MATTER.match(text)
    if match:
        try:
            loaded = yaml.safe_load(match.group(1)) or {}
        except yaml.YAMLError as exc:
            raise KnowledgeError(f"{source}: front matter is not valid YAML ({exc})") from None
        if not isinstance(loaded, dict):
            raise KnowledgeError(f"{source}: front matter must be a mapping (id, title, tags)")
        meta = loaded
        text = text[match.end():]
    doc_id = str(meta.get("id") or slugify(Path(source).stem))
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", doc_id):
        raise KnowledgeError(f"{source}: id {doc_id!r} must be lowercase letters, digits, "
                             "'.', '_' or '-'")
    tags_raw = meta.get("tags") or []
    if isinstance(tags_raw, str):
        tags_raw = [t.strip() for t in tags_raw.split(",")]
    if not isinstance(tags_raw, list):
        raise KnowledgeError(f"{source}: tags must be a list")
    tags = tuple(slugify(str(t)) for t in tags_raw if str(t).strip())
    title = str(meta.get("title") or "")

    sections: list[tuple[str, str]] = []  # (heading, body)
    heading, lines = "", []
    for line in text.splitlines():
        found = _HEADING.match(line)
        if found and len(found.group(1)) == 1 and not title:
            title = found.group(2).strip()
            continue
        if found and len(found.group(1)) == 1:
            continue  # the document's own title line
        if found:
            sections.append((heading, "\n".join(lines).strip()))
            heading, lines = found.group(2).strip(), []
        else:
            lines.append(line)
    sections.append((heading, "\n".join(lines).strip()))
    title = title or doc_id

    docs: list[RuleDoc] = []
    seen: set[str] = set()
    for heading, body in sections:
        if not body:
            continue
        slug = slugify(heading) if heading else "overview"
        rule_id = f"{doc_id}#{slug}"
        if rule_id in seen:
            raise KnowledgeError(f"{source}: two sections named {heading!r}; headings must be "
                                 "unique within a file (they are the rule ids)")
        seen.add(rule_id)
        docs.append(RuleDoc(rule_id, f"{title} — {heading}" if heading else title, body,
                            source, tags))
    return docs


_TOP_KEY = re.compile(r"^([A-Za-z_][\w-]*)[ \t]*:")
_META_KEYS = ("id", "version", "title")
_SINGLE_DOC_CHARS = 1600


def _yaml_comments(text: str) -> tuple[str, dict[str, str]]:
    """The file's header comment and, per top-level key, the comments that explain it
    (the comment block right above the key plus comments inside its block)."""
    header: list[str] = []
    by_key: dict[str, list[str]] = {}
    pending: list[str] = []
    current: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        found = _TOP_KEY.match(line)
        if found:
            current = found.group(1)
            by_key[current] = pending
            pending = []
        elif stripped.startswith("#"):
            comment = stripped.lstrip("#").strip()
            if set(comment) <= set("-=_ "):  # ruler lines
                continue
            if line.startswith("#"):
                pending.append(comment)
            elif current is not None:
                by_key[current].append(comment)
        elif not stripped and current is None and pending:
            header.extend(pending)
            pending = []
    for key in _META_KEYS:
        header.extend(by_key.pop(key, []))
    return " ".join(header), {k: " ".join(v) for k, v in by_key.items()}


def _flat(value: Any) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_flat(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_flat(v) for v in value)
    return str(value)


def _chart_docs(data: dict[str, Any], source: str, doc_id: str) -> list[RuleDoc]:
    docs = []
    for row in data.get("accounts") or []:
        code, name, kind = str(row["code"]), str(row["name"]), str(row.get("type", ""))
        contra = " (contra account)" if row.get("contra") else ""
        note = f" Note: {row['note']}." if row.get("note") else ""
        inactive = " Inactive: do not post to it." if row.get("active") is False else ""
        docs.append(RuleDoc(
            f"{doc_id}#{code}", f"Account {code} {name}",
            f"Account {code} {name} is a {kind} account{contra} in the chart of accounts."
            f"{note}{inactive}",
            source, ("chart-of-accounts", slugify(kind) or "account")))
    return docs


def _tax_docs(data: dict[str, Any], source: str, doc_id: str) -> list[RuleDoc]:
    docs = []
    for code, loc in (data.get("locations") or {}).items():
        rates = loc.get("rates") or {}
        listed = ", ".join(f"{kind.replace('_', ' ')} {rate}%" for kind, rate in rates.items())
        name = loc.get("name") or code
        docs.append(RuleDoc(
            f"{doc_id}#{slugify(str(code))}", f"Sales tax rates at {name} ({code})",
            f"Sales tax at location {code} ({name}), effective from "
            f"{loc.get('effective_from', '?')}: {listed or 'no taxed line kinds'}. Line kinds "
            "not listed are not taxed at this location. Tax is computed per invoice line on the "
            "already-rounded line amount.",
            source, ("sales-tax", "tax-rates")))
    return docs


def _rule_docs(items: list[Any], source: str, doc_id: str) -> list[RuleDoc]:
    docs = []
    for n, item in enumerate(items, 1):
        if not isinstance(item, dict):
            raise KnowledgeError(f"{source}: rule {n} is not a mapping")
        key = str(item.get("id") or item.get("name") or n)
        reason = str(item.get("reason") or "").strip()
        conditions = _flat({k: v for k, v in item.items() if k not in ("id", "reason")})
        title = f"Categorization rule {key}" + (f": {reason}" if reason else "")
        docs.append(RuleDoc(f"{doc_id}#{slugify(key)}", title,
                            f"Categorization rule {key}. {reason + '. ' if reason else ''}"
                            f"{conditions}.", source, ("categorization",)))
    return docs


def _keyed_docs(data: dict[str, Any], text: str, source: str, doc_id: str, title: str,
                tag: str, skip: Sequence[str] = ()) -> list[RuleDoc]:
    """One rule for a small file, else one per top-level key (each with its comments)."""
    header, comments = _yaml_comments(text)
    parts = []
    for key, value in data.items():
        if key in _META_KEYS or key in skip:
            continue
        note = comments.get(key, "")
        parts.append((key, (note + " " if note else "") + f"{key}: {_flat(value)}"))
    whole = "\n".join(([header] if header else []) + [p for _, p in parts])
    if not skip and len(whole) <= _SINGLE_DOC_CHARS:
        return [RuleDoc(doc_id, title, whole, source, (tag,))] if whole.strip() else []
    docs = [RuleDoc(f"{doc_id}#overview", title, header, source, (tag,))] if header else []
    docs += [RuleDoc(f"{doc_id}#{slugify(key)}", f"{title}: {key.replace('_', ' ')}", body,
                     source, (tag,)) for key, body in parts]
    return docs


def parse_yaml(text: str, source: str) -> list[RuleDoc]:
    """Rules from a YAML file: the chart (one per account), tax rates (one per location),
    categorization rules (one per rule, plus its other settings); any other file is one rule
    (its comments plus its content), or one per top-level key when it is long."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise KnowledgeError(f"{source}: not valid YAML ({exc})") from None
    if data is None:
        return []
    stem = slugify(Path(source).stem)
    if not isinstance(data, dict):
        return [RuleDoc(stem, stem.replace("-", " ").capitalize(), _flat(data), source, (stem,))]
    doc_id = str(data.get("id") or stem)
    title = str(data.get("title") or doc_id.replace("-", " ").capitalize())
    try:
        if stem == "chart-of-accounts" and "accounts" in data:
            return _chart_docs(data, source, doc_id)
        if stem == "tax-rates" and "locations" in data:
            return _tax_docs(data, source, doc_id)
        if stem == "categorization-rules" and isinstance(data.get("rules"), list):
            return (_rule_docs(data["rules"], source, doc_id)
                    + _keyed_docs(data, text, source, doc_id, title, "categorization",
                                  skip=("rules",)))
    except (KeyError, TypeError, AttributeError) as exc:
        raise KnowledgeError(f"{source}: unexpected layout ({type(exc).__name__}: {exc})") from None
    return _keyed_docs(data, text, source, doc_id, title, stem)


def load_rules(knowledge_dir: Path) -> list[RuleDoc]:
    """Every rule in ``knowledge_dir`` (``*.md``, ``*.yaml``, ``*.yml``), ids unique."""
    if not knowledge_dir.is_dir():
        raise KnowledgeError(f"knowledge directory {knowledge_dir} does not exist")
    docs: list[RuleDoc] = []
    owner: dict[str, str] = {}
    for path in sorted(knowledge_dir.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        source = path.relative_to(knowledge_dir).as_posix()
        suffix = path.suffix.lower()
        if suffix not in (".md", ".yaml", ".yml"):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise KnowledgeError(f"{source}: cannot read ({exc})") from None
        found = parse_markdown(text, source) if suffix == ".md" else parse_yaml(text, source)
        for doc in found:
            if doc.rule_id in owner:
                raise KnowledgeError(f"rule id {doc.rule_id!r} is defined in both "
                                     f"{owner[doc.rule_id]} and {source}")
            owner[doc.rule_id] = source
            docs.append(doc)
    return docs


# --------------------------------------------------------------------------- knowledge base

#: Weight of the keyword overlap added to the cosine similarity when ranking rules: enough to
#: break near-ties in favour of the rule that names the query's numbers and words ("$7,000",
#: "2300", "1099"), too little to outvote meaning.
KEYWORD_WEIGHT = 0.15  # float-ok
_STOPWORDS = frozenset(
    "a an and are as at be by can do does for from how i if in is it its may me my of on or "
    "our should so that the their then there this to was we what when where which who whom "
    "why will with you your".split())


def _terms(text: str) -> list[str]:
    words = re.findall(r"[a-z0-9]+", text.lower().replace(",", ""))
    return sorted({w for w in words if w not in _STOPWORDS and (len(w) > 1 or w.isdigit())})


def _overlap(terms: list[str], text: str) -> float:  # float-ok
    """Share of query terms found in ``text`` (words match on their first five letters)."""
    if not terms:
        return 0.0  # float-ok
    words = set(re.findall(r"[a-z0-9]+", text.lower().replace(",", "")))
    stems = {w[:5] for w in words if len(w) >= 5 and not w.isdigit()}
    found = sum(1 for t in terms
                if t in words or (len(t) >= 5 and not t.isdigit() and t[:5] in stems))
    return found / len(terms)



class KnowledgeBase:
    """The searchable rules in ``knowledge/``, stored in one Chroma collection."""

    def __init__(self, client: ClientAPI, embedding_function: EmbeddingFn, knowledge_dir: Path,
                 *, collection_name: str = RULES_COLLECTION) -> None:
        self.knowledge_dir = Path(knowledge_dir)
        self._ef = embedding_function
        self._collection = _collection(client, collection_name, embedding_function)

    @property
    def collection_name(self) -> str:
        return self._collection.name

    def count(self) -> int:
        return self._collection.count()

    def ingest(self) -> IngestReport:
        """Bring the collection in line with the files; unchanged rules are not re-embedded."""
        docs = load_rules(self.knowledge_dir)  # parse everything first: all-or-nothing
        stored = _stored_hashes(self._collection)
        added, updated, unchanged, changed = [], [], [], []
        for doc in docs:
            digest = doc.content_hash()
            if doc.rule_id not in stored:
                added.append(doc.rule_id)
                changed.append((doc, digest))
            elif stored[doc.rule_id] != digest:
                updated.append(doc.rule_id)
                changed.append((doc, digest))
            else:
                unchanged.append(doc.rule_id)
        if changed:
            _upsert(
                self._collection, self._ef,
                [d.rule_id for d, _ in changed],
                [f"{d.title}\n{d.text}" for d, _ in changed],
                [d.text for d, _ in changed],
                [self._metadata(d, digest) for d, digest in changed],
            )
        current = {d.rule_id for d in docs}
        removed = sorted(set(stored) - current)
        for start in range(0, len(removed), _BATCH):
            self._collection.delete(ids=removed[start : start + _BATCH])
        return IngestReport(tuple(sorted(added)), tuple(sorted(updated)),
                            tuple(sorted(unchanged)), tuple(removed))

    @staticmethod
    def _metadata(doc: RuleDoc, digest: str) -> dict[str, Any]:
        meta: dict[str, Any] = {"title": doc.title, "source": doc.source,
                                "doc_id": doc.rule_id.split("#", 1)[0],
                                "tags": ",".join(doc.tags), "content_sha256": digest}
        for tag in doc.tags:
            meta[f"tag_{tag}"] = True
        return meta

    def search(self, query: str, k: int = 5, tags: Sequence[str] | None = None) -> list[RuleHit]:
        """The ``k`` rules closest in meaning to ``query``, best first (optionally only those
        carrying one of ``tags``). Ingests first when the collection is still empty."""
        query = (query or "").strip()
        if not query:
            raise KnowledgeError("the search query is empty")
        if k < 1:
            raise KnowledgeError("k must be at least 1")
        if self._collection.count() == 0:
            self.ingest()
        total = self._collection.count()
        if total == 0:
            return []
        where: dict[str, Any] | None = None
        if tags:
            clauses = [{f"tag_{slugify(t)}": True} for t in tags]
            where = clauses[0] if len(clauses) == 1 else {"$or": clauses}
        result = self._collection.query(
            query_embeddings=self._ef([query]), n_results=min(max(4 * k, 20), total),
            where=where, include=["documents", "metadatas", "distances"],
        )
        terms = _terms(query)
        hits = []
        for rid, text, meta, dist in zip(result["ids"][0], (result["documents"] or [[]])[0],
                                         (result["metadatas"] or [[]])[0],
                                         (result["distances"] or [[]])[0], strict=True):
            meta = meta or {}
            title = str(meta.get("title", rid))
            cosine = 1.0 - float(dist)  # float-ok
            score = cosine + KEYWORD_WEIGHT * _overlap(terms, f"{title} {text}")
            hits.append(RuleHit(rid, title, text or "", str(meta.get("source", "")), score))
        hits.sort(key=lambda h: (-h.score, h.rule_id))
        return hits[:k]


# --------------------------------------------------------------------------- expense history


@dataclass(frozen=True)
class HistoryItem:
    """A categorized past expense."""

    expense_id: int
    vendor: str
    description: str | None
    amount_cents: int
    account_code: str
    cost_center: str | None
    location_id: int
    expense_date: date


@dataclass(frozen=True)
class Neighbor:
    """A past expense similar to the one being categorized; ``similarity`` is the cosine."""

    expense_id: int
    vendor: str
    description: str | None
    account_code: str
    cost_center: str | None
    location_id: int
    amount_cents: int
    similarity: float  # float-ok


def _history_text(vendor: str, description: str | None) -> str:
    vendor = " ".join(vendor.split())
    description = " ".join((description or "").split())
    return f"{vendor}. {description}" if description else vendor


class ExpenseHistory:
    """Categorized expenses indexed by vendor + description, one record per expense id."""

    def __init__(self, client: ClientAPI, embedding_function: EmbeddingFn, *,
                 collection_name: str = HISTORY_COLLECTION) -> None:
        self.embedding_function = embedding_function
        self._collection = _collection(client, collection_name, embedding_function)

    def add(self, items: Iterable[HistoryItem]) -> int:
        """Upsert by expense id; returns how many were new or changed (unchanged are skipped)."""
        latest: dict[str, HistoryItem] = {}
        for item in items:
            if not item.vendor or not item.vendor.strip():
                raise ValueError(f"expense {item.expense_id}: vendor is empty")
            if not item.account_code:
                raise ValueError(f"expense {item.expense_id}: account_code is empty")
            latest[f"exp-{item.expense_id}"] = item
        if not latest:
            return 0
        ids = list(latest)
        stored = _stored_hashes(self._collection, ids)
        metas = {rid: self._metadata(item) for rid, item in latest.items()}
        todo = [rid for rid in ids if stored.get(rid) != metas[rid]["content_sha256"]]
        if todo:
            _upsert(self._collection, self.embedding_function, todo,
                    [_history_text(latest[r].vendor, latest[r].description) for r in todo],
                    [_history_text(latest[r].vendor, latest[r].description) for r in todo],
                    [metas[r] for r in todo])
        return len(todo)

    def remove(self, expense_ids: Iterable[int]) -> int:
        """Drop expenses from the index; returns how many were there."""
        ids = [f"exp-{i}" for i in expense_ids]
        present = list(_stored_hashes(self._collection, ids)) if ids else []
        for start in range(0, len(present), _BATCH):
            self._collection.delete(ids=present[start : start + _BATCH])
        return len(present)

    @staticmethod
    def _metadata(item: HistoryItem) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "expense_id": int(item.expense_id), "vendor": item.vendor,
            "account_code": item.account_code, "location_id": int(item.location_id),
            "amount_cents": int(item.amount_cents),
            "expense_date": item.expense_date.isoformat(),
            "expense_day": item.expense_date.toordinal(),
        }
        if item.description:
            meta["description"] = item.description
        if item.cost_center:
            meta["cost_center"] = item.cost_center
        meta["content_sha256"] = _hash(meta)
        return meta

    def similar(self, vendor: str, description: str | None = None, *, k: int = 8,
                location_id: int | None = None, before: date | None = None) -> list[Neighbor]:
        """The ``k`` most similar past expenses, best first; ``before`` keeps only expenses
        dated strictly earlier, ``location_id`` only that location's."""
        if not vendor or not vendor.strip():
            raise ValueError("vendor is empty")
        if k < 1:
            raise ValueError("k must be at least 1")
        total = self._collection.count()
        if total == 0:
            return []
        clauses: list[dict[str, Any]] = []
        if location_id is not None:
            clauses.append({"location_id": int(location_id)})
        if before is not None:
            clauses.append({"expense_day": {"$lt": before.toordinal()}})
        where: dict[str, Any] | None = (None if not clauses else clauses[0] if len(clauses) == 1
                                        else {"$and": clauses})
        result = self._collection.query(
            query_embeddings=self.embedding_function([_history_text(vendor, description)]),
            n_results=min(k, total), where=where, include=["metadatas", "distances"],
        )
        out = []
        for meta, dist in zip((result["metadatas"] or [[]])[0], (result["distances"] or [[]])[0],
                              strict=True):
            m = dict(meta or {})
            out.append(Neighbor(
                expense_id=int(m["expense_id"]), vendor=str(m["vendor"]),
                description=str(m["description"]) if m.get("description") else None,
                account_code=str(m["account_code"]),
                cost_center=str(m["cost_center"]) if m.get("cost_center") else None,
                location_id=int(m["location_id"]), amount_cents=int(m["amount_cents"]),
                similarity=1.0 - float(dist)))  # float-ok
        return out

    def count(self) -> int:
        return self._collection.count()


# --------------------------------------------------------------------------- wiring


def open_kb(services: Services, *, client: ClientAPI | None = None,
            embedding_function: EmbeddingFn | None = None) -> KnowledgeBase:
    """The knowledge base for these services' settings (knowledge dir, Chroma, embeddings)."""
    from finance.embeddings import embedding_function as make_ef

    settings = services.settings
    return KnowledgeBase(client or chroma_client(settings),
                         embedding_function or make_ef(settings), settings.knowledge_path)


def open_history(services: Services, *, client: ClientAPI | None = None,
                 embedding_function: EmbeddingFn | None = None) -> ExpenseHistory:
    """The expense history index for these services' settings."""
    from finance.embeddings import embedding_function as make_ef

    settings = services.settings
    return ExpenseHistory(client or chroma_client(settings),
                          embedding_function or make_ef(settings))


def _eligible_rows(session: Session) -> Iterator[tuple[Any, ...]]:
    from sqlalchemy import select

    from finance.models import Expense

    stmt = select(Expense.id, Expense.vendor_name, Expense.description, Expense.amount_cents,
                  Expense.account_code, Expense.cost_center, Expense.location_id,
                  Expense.expense_date, Expense.status, Expense.confirmed_by
                  ).order_by(Expense.id)  # type: ignore[arg-type]
    yield from session.execute(stmt)  # type: ignore[misc]


def sync_history(services: Services, *, session: Session | None = None,
                 history: ExpenseHistory | None = None) -> int:
    """Index every confirmed or posted expense that has an account code; idempotent.

    Expenses that were discarded or lost their account code since the last sync are removed.
    Returns how many expenses were added or re-indexed (0 when nothing changed).
    """
    from finance.models import ExpenseStatus

    history = history or open_history(services)

    def collect(s: Session) -> tuple[list[HistoryItem], list[int]]:
        keep, drop = [], []
        for (eid, vendor, desc, amount, account, cost_center, location_id, day, status,
             confirmed_by) in _eligible_rows(s):
            eligible = bool(account) and bool(vendor and vendor.strip()) and (
                status == ExpenseStatus.POSTED
                or (confirmed_by is not None and status != ExpenseStatus.DISCARDED))
            if eligible:
                keep.append(HistoryItem(eid, vendor, desc, amount, account, cost_center,
                                        location_id, day))
            else:
                drop.append(eid)
        return keep, drop

    if session is not None:
        keep, drop = collect(session)
    else:
        with services.session() as s:
            keep, drop = collect(s)
    written = history.add(keep)
    history.remove(drop)
    return written
