"""The rules knowledge base (knowledge/ in Chroma) and the expense history index."""

from __future__ import annotations

import json
import uuid
from datetime import date
from pathlib import Path

import chromadb
import pytest
import yaml
from chromadb.api import ClientAPI
from chromadb.config import Settings as ChromaSettings
from sqlalchemy import select
from typer.testing import CliRunner

from finance.embeddings import LocalEmbeddingFunction
from finance.kb import (
    ExpenseHistory,
    HistoryItem,
    KnowledgeBase,
    KnowledgeError,
    load_rules,
    open_history,
    open_kb,
    parse_markdown,
    parse_yaml,
    sync_history,
)
from finance.models import Expense, ExpenseStatus
from finance.services import Services
from finance.settings import ConfigError, default_knowledge_dir, load_settings
from tests.helpers import add_location

KNOWLEDGE = default_knowledge_dir()

PROCEDURE = """---
id: refunds
title: Refunds
tags: [billing, members]
---
# Refunds

Refunds are explicit.

## Approval

A manager approves every refund.

## Method

Refunds go back to the original payment method.
"""

CLOSE = """---
id: close
title: Month-end close
tags: [sop]
---
## Locking

Lock the month when the close is done.
"""


@pytest.fixture(scope="module")
def ef() -> LocalEmbeddingFunction:
    return LocalEmbeddingFunction()


@pytest.fixture(scope="module")
def client() -> ClientAPI:
    """One in-memory Chroma per module; tests keep apart through unique collection names."""
    return chromadb.EphemeralClient(settings=ChromaSettings(anonymized_telemetry=False))


def _name() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def small_dir(tmp_path: Path) -> Path:
    root = tmp_path / "knowledge"
    root.mkdir()
    (root / "refunds.md").write_text(PROCEDURE, encoding="utf-8")
    (root / "close.md").write_text(CLOSE, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def real_kb(client: ClientAPI, ef: LocalEmbeddingFunction) -> KnowledgeBase:
    """The shipped knowledge/ directory, ingested once for the module."""
    kb = KnowledgeBase(client, ef, KNOWLEDGE, collection_name=_name())
    kb.ingest()
    return kb


# --------------------------------------------------------------------------- parsing


def test_markdown_splits_into_sections_with_stable_ids() -> None:
    """Each ## section is a rule `<doc id>#<slug>`; text before it is the overview."""
    docs = parse_markdown(PROCEDURE, "refunds.md")
    assert [d.rule_id for d in docs] == ["refunds#overview", "refunds#approval", "refunds#method"]
    assert docs[1].title == "Refunds — Approval"
    assert docs[1].text == "A manager approves every refund."
    assert docs[1].tags == ("billing", "members") and docs[1].source == "refunds.md"


def test_markdown_without_front_matter_uses_file_name_and_heading() -> None:
    """No front matter: the id comes from the file name, the title from the # heading."""
    docs = parse_markdown("# Petty cash\n\n## Limit\n\nAt most $200 in the box.\n",
                          "Petty Cash.md")
    assert [(d.rule_id, d.title) for d in docs] == [("petty-cash#limit", "Petty cash — Limit")]


@pytest.mark.parametrize("text, message", [
    ("---\nid: [unclosed\n---\n## A\n\nx\n", "front matter is not valid YAML"),
    ("---\n- a list\n---\n## A\n\nx\n", "front matter must be a mapping"),
    ("---\nid: Bad Id\n---\n## A\n\nx\n", "must be lowercase"),
    ("## Same\n\nx\n\n## Same\n\ny\n", "two sections named 'Same'"),
])
def test_bad_markdown_is_refused_with_the_file_name(text: str, message: str) -> None:
    """Broken front matter, bad ids and duplicate headings name the file and the problem."""
    with pytest.raises(KnowledgeError, match=message) as info:
        parse_markdown(text, "broken.md")
    assert "broken.md" in str(info.value)


def test_yaml_tables_become_one_rule_per_row() -> None:
    """The chart gives one rule per account; tax rates one per location; rules one per rule."""
    chart = parse_yaml((KNOWLEDGE / "chart_of_accounts.yaml").read_text(), "chart_of_accounts.yaml")
    accounts = yaml.safe_load((KNOWLEDGE / "chart_of_accounts.yaml").read_text())["accounts"]
    assert [d.rule_id for d in chart] == [f"chart-of-accounts#{a['code']}" for a in accounts]
    deposit = next(d for d in chart if d.rule_id == "chart-of-accounts#2300")
    assert "Member Security Deposits" in deposit.text and "never revenue" in deposit.text
    tax = parse_yaml("id: tax-rates\nlocations:\n  DT:\n    name: Downtown\n"
                     "    effective_from: 2020-01-01\n    rates: {event: '8.875'}\n",
                     "tax_rates.yaml")
    assert [d.rule_id for d in tax] == ["tax-rates#dt"] and "event 8.875%" in tax[0].text
    rules = parse_yaml("id: categorization-rules\nrules:\n  - id: coffee\n    vendor: [starbucks]\n"
                       "    account: '6000'\n    reason: coffee for members\n",
                       "categorization_rules.yaml")
    assert [d.rule_id for d in rules] == ["categorization-rules#coffee"]
    assert "coffee for members" in rules[0].text and "6000" in rules[0].text


def test_other_yaml_keeps_its_comments() -> None:
    """A small policy file is one rule whose text includes its explanatory comments."""
    text = "# Petty cash policy.\n# Keep receipts.\nid: petty-cash\nlimit: '200.00'\n"
    (doc,) = parse_yaml(text, "petty_cash.yaml")
    assert doc.rule_id == "petty-cash"
    assert "Petty cash policy. Keep receipts." in doc.text and "limit: 200.00" in doc.text


def test_shipped_knowledge_parses_with_unique_ids() -> None:
    """Every file in knowledge/ parses; every Markdown file has id, title and tags."""
    docs = load_rules(KNOWLEDGE)
    ids = [d.rule_id for d in docs]
    assert len(ids) == len(set(ids))
    for path in KNOWLEDGE.glob("*.md"):
        front = yaml.safe_load(path.read_text(encoding="utf-8").split("---")[1])
        assert {"id", "title", "tags"} <= set(front), path.name
        assert any(d.source == path.name for d in docs)


def test_duplicate_ids_across_files_are_refused(small_dir: Path) -> None:
    """Two files declaring the same id cannot both be loaded."""
    (small_dir / "copy.md").write_text(PROCEDURE, encoding="utf-8")
    with pytest.raises(KnowledgeError, match="defined in both"):
        load_rules(small_dir)


# --------------------------------------------------------------------------- ingest


def test_ingest_is_idempotent_and_tracks_edits_and_deletions(
    small_dir: Path, client: ClientAPI, ef: LocalEmbeddingFunction
) -> None:
    """First ingest adds all; then unchanged; an edit updates one; deletions remove."""
    kb = KnowledgeBase(client, ef, small_dir, collection_name=_name())
    first = kb.ingest()
    assert first.added == ("close#locking", "refunds#approval", "refunds#method",
                           "refunds#overview")
    assert (first.updated, first.removed) == ((), ())
    second = kb.ingest()
    assert second.unchanged == first.added and not (second.added or second.updated)

    (small_dir / "refunds.md").write_text(
        PROCEDURE.replace("A manager approves", "The CFO approves"), encoding="utf-8")
    third = kb.ingest()
    assert third.updated == ("refunds#approval",) and not third.added
    assert "CFO" in kb.search("who approves refunds", k=1)[0].text

    (small_dir / "refunds.md").write_text(PROCEDURE.split("## Method")[0], encoding="utf-8")
    (small_dir / "close.md").unlink()
    fourth = kb.ingest()
    assert fourth.removed == ("close#locking", "refunds#method")
    assert kb.count() == 2


def test_ingest_survives_a_new_client_on_the_same_store(
    small_dir: Path, tmp_path: Path, ef: LocalEmbeddingFunction
) -> None:
    """A persistent store remembers the hashes: a fresh process re-embeds nothing."""
    store = tmp_path / "chroma"
    settings = ChromaSettings(anonymized_telemetry=False)
    KnowledgeBase(chromadb.PersistentClient(path=str(store), settings=settings), ef,
                  small_dir).ingest()
    again = KnowledgeBase(chromadb.PersistentClient(path=str(store), settings=settings), ef,
                          small_dir).ingest()
    assert len(again.unchanged) == 4 and not (again.added or again.updated or again.removed)


def test_a_broken_file_leaves_the_collection_untouched(
    small_dir: Path, client: ClientAPI, ef: LocalEmbeddingFunction
) -> None:
    """Ingest parses everything first: one bad file means nothing is added or removed."""
    kb = KnowledgeBase(client, ef, small_dir, collection_name=_name())
    kb.ingest()
    (small_dir / "close.md").unlink()
    (small_dir / "bad.yaml").write_text("rules: [unclosed\n", encoding="utf-8")
    with pytest.raises(KnowledgeError, match="bad.yaml"):
        kb.ingest()
    assert kb.count() == 4


def test_missing_knowledge_dir_is_an_error(tmp_path: Path, client: ClientAPI,
                                           ef: LocalEmbeddingFunction) -> None:
    """A knowledge dir that does not exist is reported, not treated as empty (which would
    delete every rule)."""
    kb = KnowledgeBase(client, ef, tmp_path / "nope", collection_name=_name())
    with pytest.raises(KnowledgeError, match="does not exist"):
        kb.ingest()


# --------------------------------------------------------------------------- search


@pytest.mark.slow  # ingests the whole knowledge/ directory once per module
@pytest.mark.parametrize("question, rule_id", [
    ("when do downgrades take effect", "proration#downgrades-take-effect-at-period-end"),
    ("what is the capitalization threshold", "expenses#capitalization-threshold"),
    ("who approves a $7,000 bill", "bill-approvals#approval-thresholds"),
    ("is a member's security deposit revenue?",
     "security-deposits#deposits-are-liabilities-never-revenue"),
    ("when do we send reminders for overdue invoices", "dunning#reminder-schedule"),
    ("can I refund a proration credit to the member",
     "proration#proration-credits-are-not-refunds"),
])
def test_search_finds_the_rule_for_realistic_questions(
    real_kb: KnowledgeBase, question: str, rule_id: str
) -> None:
    """The operator's plain-language question brings up the matching rule first."""
    hits = real_kb.search(question, k=5)
    assert hits[0].rule_id == rule_id, [h.rule_id for h in hits]
    assert hits[0].score > hits[-1].score


@pytest.mark.slow  # ingests the whole knowledge/ directory once per module
@pytest.mark.parametrize("question, rule_id", [
    ("does a 1099 apply to contractors paid by credit card",
     "contractors-1099#card-payments-are-excluded"),
    ("what do I do when I lose a receipt", "receipt-submission#lost-receipts"),
    ("what account is 2300", "chart-of-accounts#2300"),
    ("sales tax rate for meeting rooms at Riverside", "tax-rates#rs"),
])
def test_search_ranks_the_rule_in_the_top_three(
    real_kb: KnowledgeBase, question: str, rule_id: str
) -> None:
    """Broader questions still rank the right rule among the first three."""
    assert rule_id in [h.rule_id for h in real_kb.search(question, k=3)]


@pytest.mark.slow  # ingests the whole knowledge/ directory once per module
def test_search_hits_carry_title_text_and_source(real_kb: KnowledgeBase) -> None:
    """A hit names its rule, title, source file and the section text."""
    hit = real_kb.search("how are invoices numbered", k=1)[0]
    assert hit.rule_id == "invoicing#invoice-numbers"
    assert hit.title == "Invoicing and invoice numbering — Invoice numbers"
    assert hit.source == "invoicing.md" and "never reset" in hit.text


@pytest.mark.slow  # ingests the whole knowledge/ directory once per module
def test_search_by_tag_only_returns_tagged_rules(real_kb: KnowledgeBase) -> None:
    """With tags, only rules carrying one of them come back."""
    hits = real_kb.search("who approves", k=10, tags=["sop"])
    assert hits and {h.rule_id.split("#")[0] for h in hits} <= {"month-end-close",
                                                                 "receipt-submission"}
    both = real_kb.search("deposit", k=20, tags=["sop", "deposits"])
    assert {h.rule_id.split("#")[0] for h in both} == {"month-end-close", "receipt-submission",
                                                       "security-deposits"}


def test_search_validates_the_query(small_dir: Path, client: ClientAPI,
                                    ef: LocalEmbeddingFunction) -> None:
    """An empty query or k < 1 is a KnowledgeError."""
    kb = KnowledgeBase(client, ef, small_dir, collection_name=_name())
    with pytest.raises(KnowledgeError, match="empty"):
        kb.search("   ")
    with pytest.raises(KnowledgeError, match="k must be"):
        kb.search("refunds", k=0)


def test_search_on_an_empty_collection_ingests_first(
    small_dir: Path, client: ClientAPI, ef: LocalEmbeddingFunction
) -> None:
    """The first search of a new store loads the knowledge files instead of finding nothing."""
    kb = KnowledgeBase(client, ef, small_dir, collection_name=_name())
    assert kb.count() == 0
    assert kb.search("when is the month locked", k=1)[0].rule_id == "close#locking"
    assert kb.count() == 4


# --------------------------------------------------------------------------- expense history

D = date(2026, 3, 1)


def _item(eid: int, vendor: str, account: str, *, desc: str | None = None, loc: int = 1,
          day: date = D, cents: int = 1_500, cc: str | None = "Member Experience") -> HistoryItem:
    return HistoryItem(eid, vendor, desc, cents, account, cc, loc, day)


@pytest.fixture
def history(client: ClientAPI, ef: LocalEmbeddingFunction) -> ExpenseHistory:
    return ExpenseHistory(client, ef, collection_name=_name())


def test_history_add_is_an_upsert_by_expense_id(history: ExpenseHistory) -> None:
    """Adding returns what was new or changed; the same items again change nothing."""
    items = [_item(1, "Starbucks", "6000"), _item(2, "Comcast Business", "5200",
                                                  desc="office internet")]
    assert history.add(items) == 2
    assert history.add(items) == 0
    assert history.add([_item(2, "Comcast Business", "5200", desc="fiber upgrade")]) == 1
    assert history.count() == 2
    assert history.similar("Comcast", k=1)[0].description == "fiber upgrade"


def test_history_similar_ranks_the_same_kind_of_vendor_first(history: ExpenseHistory) -> None:
    """A new coffee purchase is closest to past coffee purchases, with their coding."""
    history.add([
        _item(1, "Starbucks", "6000", desc="coffee for members"),
        _item(2, "Blue Bottle Coffee", "6000", desc="beans for the coffee bar"),
        _item(3, "Comcast Business", "5200", desc="monthly internet", cc="Technology"),
        _item(4, "Staples", "6100", desc="printer paper and pens", cc="Operations"),
        _item(5, "Herman Miller", "1500", desc="Aeron chair", cents=320_000, cc="Facilities"),
    ])
    near = history.similar("Starbucks Coffee", "lattes for a member meetup", k=3)
    assert [n.account_code for n in near[:2]] == ["6000", "6000"]
    assert near[0].expense_id == 1 and near[0].similarity > near[-1].similarity
    chair = history.similar("Herman Miller", "office chair", k=1)[0]
    assert (chair.expense_id, chair.account_code, chair.amount_cents, chair.cost_center) == (
        5, "1500", 320_000, "Facilities")


def test_history_filters_by_location_and_strictly_earlier_dates(history: ExpenseHistory) -> None:
    """`before` keeps only expenses dated before the day; `location_id` only that location."""
    history.add([
        _item(1, "Starbucks", "6000", day=date(2026, 1, 10), loc=1),
        _item(2, "Starbucks", "6950", day=date(2026, 2, 10), loc=1),
        _item(3, "Starbucks", "6010", day=date(2026, 2, 10), loc=2),
    ])
    assert {n.expense_id for n in history.similar("Starbucks", before=date(2026, 2, 10))} == {1}
    assert {n.expense_id for n in history.similar("Starbucks", location_id=2)} == {3}
    assert [n.expense_id for n in history.similar(
        "Starbucks", location_id=1, before=date(2026, 2, 11))] in ([1, 2], [2, 1])
    assert history.similar("Starbucks", before=date(2026, 1, 10)) == []
    assert len(history.similar("Starbucks", k=2)) == 2


def test_history_refuses_incomplete_items(history: ExpenseHistory) -> None:
    """An item without vendor or account is an error, not a silent skip; empty history is []."""
    assert history.similar("Anything") == []
    with pytest.raises(ValueError, match="account_code is empty"):
        history.add([_item(1, "Starbucks", "")])
    with pytest.raises(ValueError, match="vendor is empty"):
        history.add([_item(1, "  ", "6000")])
    with pytest.raises(ValueError, match="vendor is empty"):
        history.similar(" ")
    assert history.count() == 0


def _expense(loc: int, vendor: str, *, status: str, account: str | None,
             confirmed_by: str | None = None, desc: str | None = None) -> Expense:
    return Expense(vendor_name=vendor, location_id=loc, expense_date=D, amount_cents=2_000,
                   account_code=account, description=desc, status=status,
                   confirmed_by=confirmed_by)


def test_sync_history_indexes_confirmed_and_posted_expenses(
    services: Services, client: ClientAPI, ef: LocalEmbeddingFunction
) -> None:
    """Posted or confirmed expenses with an account are indexed once; changes follow."""
    history = ExpenseHistory(client, ef, collection_name=_name())
    with services.session() as s:
        loc = add_location(s)
        s.add_all([
            _expense(loc, "Starbucks", status=ExpenseStatus.POSTED, account="6000"),
            _expense(loc, "Comcast", status=ExpenseStatus.DRAFT, account="5200",
                     confirmed_by="UMGR"),
            _expense(loc, "Mystery Vendor", status=ExpenseStatus.DRAFT, account="6100"),
            _expense(loc, "Uncoded", status=ExpenseStatus.POSTED, account=None),
            _expense(loc, "Old Vendor", status=ExpenseStatus.DISCARDED, account="6100",
                     confirmed_by="UMGR"),
        ])
    assert sync_history(services, history=history) == 2
    assert sync_history(services, history=history) == 0
    assert {n.vendor for n in history.similar("Starbucks", k=8)} == {"Starbucks", "Comcast"}

    with services.session() as s:
        comcast = s.execute(select(Expense).where(Expense.vendor_name == "Comcast")).scalar_one()
        comcast.status = ExpenseStatus.DISCARDED
        starbucks = s.execute(
            select(Expense).where(Expense.vendor_name == "Starbucks")).scalar_one()
        starbucks.account_code = "6950"
        starbucks_id = starbucks.id
        with_session = sync_history(services, session=s, history=history)
    assert with_session == 1
    (only,) = history.similar("Starbucks", k=8)
    assert (only.expense_id, only.account_code, only.location_id) == (starbucks_id, "6950", loc)


def test_a_bad_chroma_url_is_a_config_error() -> None:
    """DESKBOOKS_CHROMA_URL must be an http(s) URL."""
    with pytest.raises(ConfigError, match="DESKBOOKS_CHROMA_URL"):
        load_settings(DESKBOOKS_CHROMA_URL="chroma:8000")


def test_open_kb_and_history_use_the_data_dir(sqlite_services: Services) -> None:
    """Without DESKBOOKS_CHROMA_URL both live in <data dir>/chroma and see the same store."""
    history = open_history(sqlite_services)
    with sqlite_services.session() as s:
        loc = add_location(s)
        s.add(_expense(loc, "Staples", status=ExpenseStatus.POSTED, account="6100"))
    assert sync_history(sqlite_services, history=history) == 1
    assert open_history(sqlite_services).count() == 1
    assert (sqlite_services.settings.data_dir / "chroma").is_dir()
    assert open_kb(sqlite_services).knowledge_dir == KNOWLEDGE


# --------------------------------------------------------------------------- CLI


def test_cli_ingest_then_search(small_dir: Path, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """`kb ingest` loads the files (then finds nothing new); `kb search --json` returns hits."""
    from bot.cli import app

    monkeypatch.setenv("DESKBOOKS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DESKBOOKS_KNOWLEDGE_DIR", str(small_dir))
    runner = CliRunner()
    first = runner.invoke(app, ["kb", "ingest"])
    assert first.exit_code == 0, first.output
    assert "4 rules" in first.output and "4 added" in first.output
    again = runner.invoke(app, ["kb", "ingest", "--json"])
    assert json.loads(again.output)["unchanged"] == 4
    found = runner.invoke(app, ["kb", "search", "who approves a refund", "--k", "2", "--json"])
    data = json.loads(found.output)
    assert [h["rule_id"] for h in data["hits"]][0] == "refunds#approval"
    assert len(data["hits"]) == 2
    text = runner.invoke(app, ["kb", "search", "lock the month", "--k", "1"])
    assert text.exit_code == 0 and "close#locking" in text.output


def test_cli_reports_bad_input_in_one_line(small_dir: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty query or a broken knowledge file exits 2 with one readable line."""
    from bot.cli import app

    monkeypatch.setenv("DESKBOOKS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DESKBOOKS_KNOWLEDGE_DIR", str(small_dir))
    runner = CliRunner()
    empty = runner.invoke(app, ["kb", "search", " "])
    assert empty.exit_code == 2 and "the search query is empty" in empty.output
    (small_dir / "broken.md").write_text("---\nid: [x\n---\n", encoding="utf-8")
    broken = runner.invoke(app, ["kb", "ingest"])
    assert broken.exit_code == 2 and "broken.md" in broken.output
    monkeypatch.setenv("DESKBOOKS_CHROMA_URL", "http://127.0.0.1:9")
    unreachable = runner.invoke(app, ["kb", "search", "refunds"])
    assert unreachable.exit_code == 2
    assert "cannot reach the ChromaDB server at http://127.0.0.1:9" in unreachable.output
