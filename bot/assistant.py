"""The assistant: one entry point for Slack and the terminal, with or without an LLM.

With an LLM configured (OPENAI_BASE_URL / OPENAI_API_KEY / DESKBOOKS_LLM_MODEL) it is a
LangChain agent (``create_agent`` + ``ChatOpenAI``) over the typed tools; without one, the
offline router picks the tool and its arguments. Both paths call the same tools through
``tools.base.invoke`` with the same run context, so roles are always checked in the store.

Conversation memory lives in the ``conversation_message`` table per thread key, so a restart
loses nothing. LLM calls and tokens are counted from the API's ``usage`` fields (no tiktoken).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import select

from finance.authz import Actor, role_of
from finance.models import ConversationMessage, SlackUser
from finance.services import Services
from tools.base import ToolContext

log = logging.getLogger("deskbooks.assistant")

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"
HISTORY_TURNS = 12  # messages of earlier conversation sent back to the model
MAX_QUESTION_CHARS = 4000
VOCAB_TTL_S = 60.0


@dataclass(frozen=True)
class Prompt:
    name: str
    version: str
    text: str


def load_prompt(name: str, prompts_dir: Path = PROMPTS_DIR) -> Prompt:
    """A prompt file ``<name>.md`` with front matter (``version:``), loaded by name."""
    if not re.fullmatch(r"[a-z0-9_]+", name):
        raise ValueError(f"bad prompt name {name!r}")
    raw = (prompts_dir / f"{name}.md").read_text(encoding="utf-8")
    version = "0"
    match = re.match(r"^---\n(.*?)\n---\n", raw, re.S)
    if match:
        for line in match.group(1).splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "version":
                version = value.strip()
        raw = raw[match.end():]
    return Prompt(name, version, raw.strip())


@dataclass
class Answer:
    text: str
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    pending_actions: list[dict[str, str]] = field(default_factory=list)
    llm_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    correlation_id: str = ""
    path: str = "router"  # router / llm

    def as_json(self) -> dict[str, Any]:
        return {"answer": self.text,
                "tool_calls": [{"name": c["name"], "args": _jsonable(c["args"])}
                               for c in self.tool_calls]}


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


@dataclass(frozen=True)
class Request:
    text: str
    actor: Actor
    today: date
    timezone: str = "UTC"
    location_id: int | None = None
    thread_key: str | None = None
    fetch_file: Callable[[str], bytes] | None = None
    allow_local_files: bool = False


def build_request(services: Services, actor: Actor, text: str, thread_key: str | None, *,
                  fetch_file: Callable[[str], bytes] | None = None,
                  allow_local_files: bool = False) -> Request:
    """A request in the caller's location: their time zone decides what "today" means."""
    from finance.models import Location

    with services.session() as session:
        loc = None
        if not actor.is_system:
            user = session.execute(select(SlackUser).where(
                SlackUser.user_id == actor.user_id,
                SlackUser.team_id == actor.team_id)).scalar_one_or_none()
            if user is not None and user.location_id is not None:
                loc = session.get(Location, user.location_id)
        if loc is None:
            loc = session.execute(select(Location).order_by(Location.id)).scalars().first()
    tz = loc.timezone if loc else "UTC"
    return Request(text=text, actor=actor, today=services.today(tz), timezone=tz,
                   location_id=loc.id if loc else None, thread_key=thread_key,
                   fetch_file=fetch_file, allow_local_files=allow_local_files)


def build_chat_model(services: Services) -> Any:
    """``ChatOpenAI`` against any OpenAI-compatible server, or None when no LLM is configured."""
    settings = services.settings
    if not settings.llm_configured:
        return None
    from langchain_openai import ChatOpenAI

    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "none"
    return ChatOpenAI(model=settings.llm_model, base_url=settings.openai_base_url,
                      api_key=key, timeout=60, max_retries=2, temperature=0)


class Assistant:
    """Answers one request at a time; holds no per-conversation state in memory."""

    def __init__(self, services: Services, *, chat_model: Any = None,
                 prompt: str = "system") -> None:
        self.services = services
        self.chat_model = chat_model
        self.prompt = load_prompt(prompt)
        self._vocab: Any = None
        self._vocab_at = 0.0

    # ------------------------------------------------------------------ entry point

    def ask(self, request: Request) -> Answer:
        text = request.text.strip()
        ctx = ToolContext(services=self.services, actor=request.actor, today=request.today,
                          timezone=request.timezone, location_id=request.location_id,
                          thread_key=request.thread_key, fetch_file=request.fetch_file,
                          allow_local_files=request.allow_local_files)
        if not text:
            return Answer("Ask me about invoices, balances, KPIs, bills or receipts.",
                          correlation_id=ctx.correlation_id)
        if len(text) > MAX_QUESTION_CHARS:
            return Answer(f"That message is too long for me ({len(text):,} characters; "
                          f"the limit is {MAX_QUESTION_CHARS:,}).",
                          correlation_id=ctx.correlation_id)
        started = time.perf_counter()
        with self.services.session() as session:
            role = role_of(session, request.actor)
            user = None
            if not request.actor.is_system:
                user = session.execute(select(SlackUser).where(
                    SlackUser.team_id == request.actor.team_id,
                    SlackUser.user_id == request.actor.user_id)).scalar_one_or_none()
        if role is None:
            return Answer("I don't know you yet: ask a deskbooks admin to add your Slack user "
                          "with a role.", correlation_id=ctx.correlation_id)
        if self.chat_model is not None:
            answer = self._ask_llm(ctx, text, role.value, user.name if user else "operator")
        else:
            answer = self._ask_router(ctx, text)
        answer.correlation_id = ctx.correlation_id
        answer.tool_calls = list(ctx.calls)
        self._remember(request.thread_key, text, answer)
        log.info("answered ref=%s path=%s tools=%s llm_calls=%d tokens_in=%d tokens_out=%d "
                 "ms=%.0f", ctx.correlation_id, answer.path,
                 [c["name"] for c in ctx.calls], answer.llm_calls, answer.input_tokens,
                 answer.output_tokens, (time.perf_counter() - started) * 1000)
        return answer

    # ------------------------------------------------------------------ offline router

    def _ask_router(self, ctx: ToolContext, text: str) -> Answer:
        from bot.offline import answer_offline

        reply, token = answer_offline(ctx, text, self.vocabulary())
        answer = Answer(reply, path="router")
        if token:
            answer.pending_actions = [{"token": token, "summary": reply.splitlines()[0]}]
        return answer

    def vocabulary(self) -> Any:
        """The router's view of members, plans and locations, refreshed every minute."""
        now = time.monotonic()
        if self._vocab is None or now - self._vocab_at > VOCAB_TTL_S:
            from bot.router import load_vocabulary

            with self.services.session() as session:
                self._vocab = load_vocabulary(session)
            self._vocab_at = now
        return self._vocab

    # ------------------------------------------------------------------ LLM agent

    def _ask_llm(self, ctx: ToolContext, text: str, role: str, user_name: str) -> Answer:
        from langchain.agents import create_agent
        from langchain_core.messages import AIMessage, HumanMessage

        from tools.langchain_adapter import langchain_tools

        system = self.prompt.text.format(today=ctx.today.isoformat(), timezone=ctx.timezone,
                                         user_name=_one_line(user_name), role=role)
        agent = create_agent(self.chat_model, langchain_tools(ctx), system_prompt=system)
        history = self._history(ctx.thread_key)
        try:
            state = agent.invoke({"messages": [*history, HumanMessage(text)]},
                                 {"recursion_limit": 12})
        except Exception:
            log.exception("LLM run failed (ref %s)", ctx.correlation_id)
            return Answer(f"I could not reach the language model just now "
                          f"(ref {ctx.correlation_id}). Try again, or use /books for quick "
                          "answers.", path="llm")
        new = state["messages"][len(history) + 1:]
        calls = [m for m in new if isinstance(m, AIMessage)]
        final = calls[-1] if calls else None
        answer = Answer(_text_of(final) if final else "", path="llm", llm_calls=len(calls))
        for m in calls:
            usage = m.usage_metadata or {}
            answer.input_tokens += int(usage.get("input_tokens", 0))
            answer.output_tokens += int(usage.get("output_tokens", 0))
        answer.pending_actions = _pending_from_messages(new)
        if not answer.text:
            answer.text = "I have no answer for that."
        return answer

    def _history(self, thread_key: str | None) -> list[Any]:
        if not thread_key:
            return []
        from langchain_core.messages import AIMessage, HumanMessage

        with self.services.session() as session:
            rows = session.execute(
                select(ConversationMessage).where(ConversationMessage.thread_key == thread_key)
                .order_by(ConversationMessage.id.desc()).limit(HISTORY_TURNS)
            ).scalars().all()
        out: list[Any] = []
        for row in reversed(rows):
            content = str(row.content.get("text", ""))
            out.append(HumanMessage(content) if row.role == "user" else AIMessage(content))
        return out

    def _remember(self, thread_key: str | None, text: str, answer: Answer) -> None:
        if not thread_key:
            return
        with self.services.session() as session:
            session.add(ConversationMessage(thread_key=thread_key, role="user",
                                            content={"text": text[:MAX_QUESTION_CHARS]}))
            session.add(ConversationMessage(
                thread_key=thread_key, role="assistant",
                content={"text": answer.text, "tools": [c["name"] for c in answer.tool_calls],
                         "ref": answer.correlation_id}))


def _text_of(message: Any) -> str:
    content = message.content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) if isinstance(part, dict) else str(part)
                        for part in content).strip()
    return str(content).strip()


def _one_line(text: str) -> str:
    return " ".join(text.split())[:80].replace("{", "(").replace("}", ")")


def _pending_from_messages(messages: list[Any]) -> list[dict[str, str]]:
    from langchain_core.messages import ToolMessage

    out = []
    for m in messages:
        if isinstance(m, ToolMessage):
            try:
                data = json.loads(m.content) if isinstance(m.content, str) else {}
            except ValueError:
                continue
            if isinstance(data, dict) and data.get("pending_action"):
                out.append({"token": data["pending_action"], "summary": data.get("summary", "")})
    return out
