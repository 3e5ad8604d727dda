"""`deskbooks ask`, `deskbooks chat` and `deskbooks confirm`: the assistant in a terminal."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

import typer

from bot.cli import AsOpt, JsonOpt, TodayOpt, _actor, _services, app, handle_errors
from finance.services import Services


def _assistant(services: Services) -> Any:
    from bot.assistant import Assistant, build_chat_model

    return Assistant(services, chat_model=build_chat_model(services))


def _request(services: Services, actor: Any, text: str, thread_key: str | None) -> Any:
    from bot.assistant import build_request

    return build_request(services, actor, text, thread_key, allow_local_files=True)


@app.command()
@handle_errors
def ask(
    question: Annotated[str, typer.Argument(help="What to ask, in plain language.")],
    thread: Annotated[str | None, typer.Option(help="Thread key to continue a conversation.")]
    = None,
    today: TodayOpt = None,
    as_user: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Ask the assistant one question (offline router, or the LLM when configured)."""
    services = _services(today)
    actor = _actor(services, as_user)
    answer = _assistant(services).ask(_request(services, actor, question, thread))
    if as_json:
        data = answer.as_json()
        if answer.pending_actions:
            data["pending_actions"] = answer.pending_actions
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    typer.echo(answer.text)
    for action in answer.pending_actions:
        typer.echo(f"(to go ahead: deskbooks confirm {action['token']})")


@app.command()
@handle_errors
def confirm(
    token: Annotated[str, typer.Argument(help="The token a preview printed.")],
    today: TodayOpt = None,
    as_user: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Confirm a prepared write (billing run, posting): your role is checked, it runs once."""
    from tools import actions

    services = _services(today)
    actor = _actor(services, as_user)
    result = actions.confirm(services, actor, token, today=services.today())
    if as_json:
        typer.echo(json.dumps({"outcome": result.outcome, "message": result.message,
                               "result": result.result}, indent=2, default=str))
    else:
        typer.echo(result.message)
        nxt = (result.result or {}).get("next_action")
        if nxt:
            typer.echo(f"(next: deskbooks confirm {nxt})")
    if result.outcome not in ("done", "already_done"):
        raise typer.Exit(2)


def run_chat(services: Services, actor: Any) -> None:
    """A terminal conversation with memory (one thread per session); 'confirm' runs a preview."""
    from tools import actions

    assistant = _assistant(services)
    thread = f"cli:{uuid.uuid4().hex[:12]}"
    mode = "LLM" if assistant.chat_model is not None else "offline router"
    typer.echo(f"deskbooks chat ({mode}). Ask a question; 'confirm' runs the last preview; "
               "'quit' leaves.")
    pending: str | None = None
    while True:
        try:
            text = input("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            typer.echo("")
            return
        if text.lower() in ("quit", "exit", "q"):
            return
        if text.lower() == "confirm":
            if not pending:
                typer.echo("bot> there is nothing waiting for confirmation")
                continue
            result = actions.confirm(services, actor, pending, today=services.today())
            typer.echo(f"bot> {result.message}")
            pending = (result.result or {}).get("next_action")
            continue
        answer = assistant.ask(_request(services, actor, text, thread))
        typer.echo("bot> " + answer.text.replace("\n", "\n     "))
        pending = answer.pending_actions[-1]["token"] if answer.pending_actions else None


@app.command()
@handle_errors
def chat(today: TodayOpt = None, as_user: AsOpt = None) -> None:
    """Talk to the assistant in the terminal."""
    services = _services(today)
    run_chat(services, _actor(services, as_user))
