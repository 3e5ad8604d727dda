"""Entrypoints: CLI, Slack app, agent wiring, scheduler jobs and the HTTP server."""
