"""deskbooks core domain: money, the SQL store, the double-entry ledger and its services.

The core never imports Slack or LangChain; entrypoints (bot/) and tools (tools/) import it.
"""
