"""deploy/prometheus: the alert rules pass `promtool check rules`, each alert has a unit test file
(firing and not firing) that passes `promtool test rules`, and the example config is valid."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from support.prometheus import PROMTOOL, require

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "prometheus"
ALERTS = DEPLOY / "alerts.yml"
RULE_TESTS = sorted((DEPLOY / "tests").glob("*.yml"))


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    require()
    return subprocess.run(
        [str(PROMTOOL), *args], capture_output=True, text=True, timeout=120, check=False
    )


def alert_names() -> list[str]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule["alert"] for group in groups for rule in group["rules"]]


def test_alert_rules_pass_promtool_check() -> None:
    result = promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_names())} rules found" in result.stdout


def test_example_scrape_config_is_valid() -> None:
    result = promtool("check", "config", str(DEPLOY / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_one_rule_test_that_fires_it_and_one_that_does_not() -> None:
    tested: dict[str, list[str]] = {}
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case["alert_rule_test"]:
                outcome = "fires" if check["exp_alerts"] else "silent"
                tested.setdefault(check["alertname"], []).append(outcome)
    assert sorted(tested) == sorted(alert_names())
    for name, outcomes in tested.items():
        assert set(outcomes) == {"fires", "silent"}, f"{name}: {outcomes}"


@pytest.mark.parametrize("path", RULE_TESTS, ids=[p.stem for p in RULE_TESTS])
def test_rule_unit_tests_pass(path: Path) -> None:
    result = promtool("test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
