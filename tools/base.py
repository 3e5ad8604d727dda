"""The tool contract: typed input and output, the caller from the run context, one invoke path.

Every tool is a plain function ``fn(ctx, params) -> Output`` registered with :func:`tool`.
``invoke`` is the only way in, for the LangChain adapter, the offline router and Slack alike:
it validates the arguments, checks the caller's role *in the store* (never from arguments),
runs the function and maps domain errors to a :class:`ToolError` whose message is safe to show.

Write tools never write on their own: they return a preview and a pending action (see
``tools.actions``) that an authorized person confirms with a click.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

from pydantic import BaseModel, ConfigDict, ValidationError

from finance.authz import Actor, NotAuthorized, require_role
from finance.models import Role
from finance.services import Services

log = logging.getLogger("deskbooks.tools")

EVERYONE = frozenset({Role.STAFF, Role.MANAGER, Role.GM, Role.CFO, Role.ADMIN})
MANAGERS = frozenset({Role.MANAGER, Role.GM, Role.CFO, Role.ADMIN})
FINANCE = frozenset({Role.MANAGER, Role.CFO, Role.ADMIN})


class ToolError(Exception):
    """A tool could not do what was asked; the message is meant for the person asking."""


class ToolInput(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ToolOutput(BaseModel):
    """Every result has a one-line ``summary`` for people plus the data for machines."""

    summary: str


FileFetcher = Callable[[str], bytes]


@dataclass
class ToolContext:
    """Who is asking and where; built by the entrypoint, never by the model."""

    services: Services
    actor: Actor
    today: date
    timezone: str = "UTC"
    location_id: int | None = None
    thread_key: str | None = None
    correlation_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    fetch_file: FileFetcher | None = None  # Slack file ids -> bytes (bot layer provides it)
    allow_local_files: bool = False  # the terminal may scan local paths; Slack never
    notify_bill: Callable[[int], Any] | None = None  # posts a bill to its approvers (Slack)
    calls: list[dict[str, Any]] = field(default_factory=list)


I = TypeVar("I", bound=ToolInput)
O = TypeVar("O", bound=ToolOutput)


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    input_model: type[ToolInput]
    output_model: type[ToolOutput]
    fn: Callable[[ToolContext, Any], ToolOutput]
    roles: frozenset[Role]
    writes: bool = False  # True: the tool only ever returns a preview + pending action

    def json_schema(self) -> dict[str, Any]:
        """The OpenAI function-calling schema of this tool's arguments."""
        schema = self.input_model.model_json_schema()
        schema.pop("title", None)
        return {"type": "function",
                "function": {"name": self.name, "description": self.description,
                             "parameters": schema}}


_REGISTRY: dict[str, ToolSpec] = {}


def tool(name: str, *, roles: frozenset[Role], writes: bool = False) -> Callable[[Any], Any]:
    """Register ``fn(ctx, params: SomeInput) -> SomeOutput``; its docstring is the model's guide."""

    def register(fn: Callable[[ToolContext, Any], ToolOutput]) -> Callable[..., ToolOutput]:
        hints = get_type_hints(fn)
        params = [v for k, v in hints.items() if k not in ("ctx", "return")]
        if len(params) != 1 or not issubclass(params[0], ToolInput):
            raise TypeError(f"tool {name} must take (ctx, params: ToolInput subclass)")
        doc = " ".join((fn.__doc__ or "").split())
        if not doc:
            raise TypeError(f"tool {name} needs a docstring saying when to use it")
        if name in _REGISTRY and _REGISTRY[name].fn is not fn:
            raise TypeError(f"tool {name} registered twice")
        _REGISTRY[name] = ToolSpec(name, doc, params[0], hints["return"], fn, roles, writes)
        return fn

    return register


def all_tools() -> dict[str, ToolSpec]:
    """Every tool, importing the tool modules of this package on first use."""
    import tools

    for info in pkgutil.iter_modules(tools.__path__):
        if not info.name.startswith("_") and info.name not in ("base", "langchain_adapter"):
            importlib.import_module(f"tools.{info.name}")
    return dict(sorted(_REGISTRY.items()))


def get_tool(name: str) -> ToolSpec:
    tools_ = all_tools()
    if name not in tools_:
        raise ToolError(f"there is no tool called {name!r}")
    return tools_[name]


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:4]:
        where = ".".join(str(p) for p in err["loc"]) or "input"
        parts.append(f"{where}: {err['msg']}")
    return "invalid arguments (" + "; ".join(parts) + ")"


def invoke(ctx: ToolContext, name: str, args: dict[str, Any] | None) -> ToolOutput:
    """Validate, authorize (role from the store), run, and map errors for one tool call."""
    spec = get_tool(name)
    ctx.calls.append({"name": name, "args": dict(args or {})})
    try:
        params = spec.input_model.model_validate(args or {})
    except ValidationError as exc:
        raise ToolError(_validation_message(exc)) from None
    try:
        with ctx.services.session() as session:
            require_role(session, ctx.actor, set(spec.roles), f"use {name.replace('_', ' ')}")
        return spec.fn(ctx, params)
    except ToolError:
        raise
    except NotAuthorized as exc:
        raise ToolError(str(exc)) from None
    except (ValueError, LookupError, PermissionError) as exc:
        # domain errors (BillingError, LedgerError, ReportError... are ValueErrors) carry
        # messages written for people
        raise ToolError(str(exc)) from None
    except Exception:
        log.exception("tool %s failed (ref %s)", name, ctx.correlation_id)
        raise ToolError(
            f"something went wrong while running {name} (ref {ctx.correlation_id})"
        ) from None


def read_local_file(ctx: ToolContext, path: str, *, limit: int) -> bytes:
    """A local file, only for the terminal (a Slack user must never read the server's disk)."""
    if not ctx.allow_local_files:
        raise ToolError("only Slack file ids can be scanned here; share the file with the bot")
    target = Path(path).expanduser()
    try:
        size = target.stat().st_size
        if size > limit:
            raise ToolError(f"{target.name} is {size:,} bytes; the limit is {limit:,} bytes")
        return target.read_bytes()
    except OSError as exc:
        raise ToolError(f"cannot read {path}: {exc.strerror}") from None
