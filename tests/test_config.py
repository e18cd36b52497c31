"""config.yaml validation: every mistake names the key (and line) and why."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.config import load_settings, parse_duration
from pipeline.errors import ConfigError
from tests.conftest import CONFIG


def _load(tmp_path: Path, text: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    load_settings(path)


def test_shipped_style_config_loads(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    settings = load_settings(path)
    assert settings.database_url == f"sqlite:///{tmp_path}/var/test.db"
    assert settings.outbox_dir == tmp_path / "var" / "outbox"
    assert settings.schedule.max_lateness == timedelta(hours=2)
    assert settings.sendgrid.host == "https://api.sendgrid.com"
    assert settings.sendgrid.api_key_env == "SENDGRID_API_KEY"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("transport: outbox", "transport: carrier-pigeon"), "config.yaml:3: transport: Input should be"),
        (("outbox:\n  dir: var/outbox", "outbox:\n  dri: var/outbox"), "config.yaml:5: outbox.dri: unknown key"),
        (("timezone: America/Toronto", "timezone: Mars/Olympus"), "timezone: unknown IANA time zone"),
        (("  max_lateness: 2h", "  max_lateness: soon"), "schedule.max_lateness: expected seconds or a duration"),
        (("  from: newsroom@acme.example.com", "  from: not-an-address"), "sender.from: "),
        (("database: sqlite:///var/test.db", "database: test.db"), "database: must be a SQLAlchemy URL"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    assert edit[0] in CONFIG
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, CONFIG.replace(*edit))
    assert message in str(caught.value)


def test_missing_required_section(tmp_path: Path) -> None:
    text = CONFIG.split("organization:")[0] + "site:\n  base_url: https://x.example.com\n"
    with pytest.raises(ConfigError, match="organization: required key is missing"):
        _load(tmp_path, text)


def test_broken_yaml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config.yaml:2: not valid YAML"):
        _load(tmp_path, "database: x\n  bad: [indent\n")
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(tmp_path / "absent.yaml")


@given(st.integers(min_value=0, max_value=10**6))
def test_durations_accept_seconds_and_units(seconds: int) -> None:
    assert parse_duration(seconds) == timedelta(seconds=seconds)
    assert parse_duration(f"{seconds}s") == timedelta(seconds=seconds)
    assert parse_duration("1d 2h 3m 4s") == timedelta(days=1, hours=2, minutes=3, seconds=4)


@given(st.text(max_size=20))
def test_durations_reject_garbage_with_value_error(text: str) -> None:
    try:
        value = parse_duration(text)
    except ValueError:
        return
    assert value >= timedelta(0)


@pytest.mark.parametrize("name", ["config.yaml", "config.example.postgres.yaml"])
def test_the_shipped_configurations_load(name: str) -> None:
    from tests.conftest import ROOT

    settings = load_settings(ROOT / name)
    assert settings.database_url.startswith("sqlite:///" if name == "config.yaml" else "postgresql+psycopg://")
