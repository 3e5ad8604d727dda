"""The one place that exposes the typed tools to LangChain.

Each tool becomes a ``StructuredTool`` whose schema is the tool's pydantic input model. The run
context (who is asking, where, today) is closed over here, so the model can neither see nor set
it. Results go back to the model as JSON text; errors as ``{"error": ...}`` so the model can
explain them instead of the run crashing.
"""

from __future__ import annotations

import json
from typing import Any

from langchain_core.tools import StructuredTool

from tools.base import ToolContext, ToolError, all_tools, invoke


def langchain_tools(ctx: ToolContext) -> list[StructuredTool]:
    out = []
    for spec in all_tools().values():

        def run(_name: str = spec.name, **kwargs: Any) -> str:
            try:
                result = invoke(ctx, _name, kwargs)
            except ToolError as exc:
                return json.dumps({"error": str(exc)})
            return result.model_dump_json()

        out.append(StructuredTool.from_function(
            func=run, name=spec.name, description=spec.description,
            args_schema=spec.input_model, infer_schema=False))
    return out
