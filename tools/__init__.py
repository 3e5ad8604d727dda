"""Typed agent tools: plain functions over the core services (DESIGN §7)."""
