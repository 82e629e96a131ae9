"""The policy file: limits and accepted principals; a typo is an error, never a silent no-op."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from auditor.cli import run
from auditor.policy import PolicyError, load_policy
from checks.registry import catalog
from fixtures import builders as b

ALLOWED = b.guid("release-pipeline")


def test_toml_and_yaml_give_the_same_policy(tmp_path: Path) -> None:
    toml = tmp_path / "p.toml"
    toml.write_text(f'max_template_writers = 2\n[allowed_principals]\n"aib-lp-001" = ["{ALLOWED.upper()}"]\n')
    yaml = tmp_path / "p.yaml"
    yaml.write_text(f"max_template_writers: 2\nallowed_principals:\n  AIB-LP-001: ['{ALLOWED}']\n")
    for path in (toml, yaml):
        policy = load_policy(path, known_checks=catalog())
        assert policy.max_template_writers == 2
        assert policy.allows("AIB-LP-001", ALLOWED) and not policy.allows("AIB-LP-002", ALLOWED)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (f'[allowed_principals]\n"AIB-LP-01" = ["{ALLOWED}"]\n', "unknown check ID 'AIB-LP-01'"),
        ('[allowed_principals]\n"AIB-LP-001" = ["release-pipeline"]\n', "'release-pipeline' is not a principal object ID"),
        ("max_template_writers = -1\n", "max_template_writers must be a whole number"),
        ("max_writers = 3\n", "unknown policy keys"),
    ],
)
def test_a_policy_mistake_is_a_clear_error(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "p.toml"
    path.write_text(body)
    with pytest.raises(PolicyError, match=message):
        load_policy(path, known_checks=catalog())


def test_the_cli_rejects_a_policy_naming_an_unknown_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snapshot = tmp_path / "s.json"
    snapshot.write_text(json.dumps(b.snapshot([b.guid("policy-sub")], {})))
    policy = tmp_path / "p.toml"
    policy.write_text(f'[allowed_principals]\n"AIB-LP-099" = ["{ALLOWED}"]\n')
    code = run(["--snapshot", str(snapshot), "--policy", str(policy)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "unknown check ID 'AIB-LP-099'" in err
