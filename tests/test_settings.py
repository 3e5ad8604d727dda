"""Settings fail fast with readable messages and never print secrets."""

from __future__ import annotations

import pytest

from finance.settings import ConfigError, load_settings


def test_defaults_use_sqlite_under_the_data_dir(tmp_path):
    """With nothing configured the store is a SQLite file in the data dir, no LLM, no Slack."""
    s = load_settings(DESKBOOKS_DATA_DIR=str(tmp_path))
    assert s.effective_database_url == f"sqlite:///{tmp_path}/deskbooks.db"
    assert not s.llm_configured
    assert s.slack_bot_token is None
    assert s.proration_rule == "actual_days"


def test_postgres_urls_are_normalized_to_psycopg3(monkeypatch):
    """postgres:// and postgresql:// both select the psycopg 3 driver we ship."""
    monkeypatch.setenv("DESKBOOKS_DATABASE_URL", "postgres://u@db:5432/books")
    assert load_settings().effective_database_url == "postgresql+psycopg://u@db:5432/books"


@pytest.mark.parametrize(
    "env, fragment",
    [
        ({"DESKBOOKS_DATABASE_URL": "mysql://x"}, "DESKBOOKS_DATABASE_URL"),
        ({"DESKBOOKS_PRORATION_RULE": "daily"}, "DESKBOOKS_PRORATION_RULE"),
        ({"SLACK_API_URL": "slack.com/api"}, "SLACK_API_URL"),
        ({"OPENAI_BASE_URL": "http://127.0.0.1:8000/v1"}, "DESKBOOKS_LLM_MODEL"),
        ({"DESKBOOKS_CAPITALIZATION_THRESHOLD_CENTS": "-5"}, "CAPITALIZATION"),
        ({"DESKBOOKS_INVOICE_PREFIX": "INV-2026!"}, "DESKBOOKS_INVOICE_PREFIX"),
    ],
)
def test_bad_values_fail_fast_naming_the_variable(monkeypatch, env, fragment):
    """Each bad value raises ConfigError whose message names what to fix."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match=fragment):
        load_settings()


def test_secrets_never_appear_in_repr_or_errors(monkeypatch):
    """Tokens are SecretStr: repr and error messages do not reveal them."""
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-very-secret-token")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret")
    monkeypatch.setenv("DESKBOOKS_PRORATION_RULE", "bogus")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "very-secret" not in str(info.value)
    monkeypatch.setenv("DESKBOOKS_PRORATION_RULE", "kill_bill")
    monkeypatch.setenv("DESKBOOKS_LLM_MODEL", "gpt-4o-mini")
    s = load_settings()
    assert "very-secret" not in repr(s) and "very-secret" not in str(s.model_dump())
    assert s.llm_configured
    assert s.slack_bot_token.get_secret_value() == "xoxb-very-secret-token"
