"""CLI command groups, one module per area.

Each module imports ``app`` and the helpers from ``bot.cli`` and declares its commands with
``@app.command()`` or its own ``typer.Typer`` added via ``app.add_typer``. ``bot.cli`` imports
every module here when it is loaded, so a new area needs no edit elsewhere.
"""
