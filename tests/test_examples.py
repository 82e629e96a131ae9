"""The CI examples (examples/*.yml and the README's YAML) parse, and every aib-audit command line in them uses
options the CLI really has, with report formats it really writes: a copied example must not fail on a typo."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from auditor.cli import app
from auditor.reports import FORMATS

ROOT = Path(__file__).resolve().parents[1]
GITHUB = ROOT / "examples" / "github-actions.yml"
AZURE_DEVOPS = ROOT / "examples" / "azure-pipelines.yml"
# Options of the workflow half of issue 10, built on another branch: until it lands they are the only options an
# example may use that the CLI does not have yet, and the test says so (a skip, never a silent pass).
PENDING = {"--exceptions", "--baseline", "--fail-on", "--fail-on-new", "--report"}
SEVERITIES = {"critical", "high", "medium", "low", "info"}


def cli_options() -> set[str]:
    command = typer.main.get_command(app)
    return {opt for p in command.params for opt in (*p.opts, *p.secondary_opts) if opt.startswith("-")}


def scripts(node: Any) -> list[str]:
    """Every shell script in a pipeline document: GitHub `run:`, Azure DevOps `script:`/`bash:`/`inlineScript:`."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("run", "script", "bash", "inlineScript") and isinstance(value, str):
                found.append(value)
            else:
                found += scripts(value)
    elif isinstance(node, list):
        for item in node:
            found += scripts(item)
    return found


def aib_audit_commands(script: str) -> list[list[str]]:
    """The argument lists of every `aib-audit ...` command, with the words of any bash array expanded into it."""
    joined = re.sub(r"\\\n\s*", " ", script)
    arrays: dict[str, list[str]] = {}
    for line in joined.splitlines():  # `name=(words)`; an empty `name=()` does not undo a fuller assignment
        for name, body in re.findall(r"(\w+)=\((.*)\)", line):
            arrays[name] = shlex.split(body) or arrays.get(name, [])
    commands = []
    for line in joined.splitlines():
        line = line.strip()
        if not line.startswith("aib-audit "):
            continue
        line = re.split(r"\s(?:\|\||&&|;)\s", line)[0]
        words: list[str] = []
        for word in shlex.split(line)[1:]:
            m = re.fullmatch(r"\$\{(\w+)\[@\]\}", word)
            words += arrays[m.group(1)] if m else [word]
        commands.append(words)
    return commands


def check_commands(commands: list[list[str]]) -> set[str]:
    """Assert every option is known (or pending) and every format real; return the pending options used."""
    assert commands, "no aib-audit command found"
    known = cli_options()
    pending: set[str] = set()
    for words in commands:
        for i, word in enumerate(words):
            if not word.startswith("-"):
                continue
            flag, _, inline = word.partition("=")
            value = inline or (words[i + 1] if i + 1 < len(words) else "")
            if flag not in known:
                assert flag in PENDING, f"aib-audit has no option {flag} ({' '.join(words)})"
                pending.add(flag)
            if flag == "--report":
                fmt, sep, path = value.partition("=")
                assert sep and path and fmt in FORMATS, f"--report {value}: not FORMAT=PATH with a known format"
            if flag in ("--format", "-f"):
                assert value in FORMATS, value
            if flag == "--fail-on":
                assert value in SEVERITIES, value
    return pending


def load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def finish(pending: set[str]) -> None:
    if pending:
        pytest.skip(f"the example uses {', '.join(sorted(pending))}, which this branch's CLI does not have yet (issue 10)")


def test_github_actions_example() -> None:
    doc = load(GITHUB)
    on = doc.get("on", doc.get(True))  # YAML 1.1 reads a bare `on` key as true
    assert "schedule" in on
    assert doc["permissions"] == {"contents": "read", "id-token": "write", "security-events": "write", "actions": "read"}
    steps = doc["jobs"]["audit"]["steps"]
    uses = [s.get("uses", "") for s in steps]
    assert any(u.startswith("azure/login@") for u in uses)
    assert any(u.startswith("github/codeql-action/upload-sarif@") for u in uses)
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@"))
    text = GITHUB.read_text(encoding="utf-8")
    assert f"--name {upload['with']['name']}" in text  # the next run downloads what this one uploads
    assert "aib-audit.json" in upload["with"]["path"]
    assert '>> "$GITHUB_STEP_SUMMARY"' in text
    commands = [c for s in scripts(doc) for c in aib_audit_commands(s)]
    flat = " ".join(" ".join(c) for c in commands)
    for needed in ("--exceptions", "--baseline", "sarif=", "markdown="):
        assert needed in flat
    finish(check_commands(commands))


def test_azure_devops_example() -> None:
    doc = load(AZURE_DEVOPS)
    tasks = {s.get("task", "").split("@")[0]: s for s in doc["steps"] if "task" in s}
    assert {"AzureCLI", "DownloadPipelineArtifact", "PublishBuildArtifacts", "PublishPipelineArtifact"} <= set(tasks)
    assert tasks["PublishBuildArtifacts"]["inputs"]["ArtifactName"] == "CodeAnalysisLogs"  # the SARIF Scans tab's artifact
    assert tasks["DownloadPipelineArtifact"]["inputs"]["artifactName"] == tasks["PublishPipelineArtifact"]["inputs"]["artifact"]
    assert tasks["DownloadPipelineArtifact"]["inputs"]["allowFailedBuilds"] is True
    assert "##vso[task.uploadsummary]" in tasks["AzureCLI"]["inputs"]["inlineScript"]
    commands = [c for s in scripts(doc) for c in aib_audit_commands(s)]
    flat = " ".join(" ".join(c) for c in commands)
    for needed in ("--exceptions", "--baseline", "sarif=", "markdown="):
        assert needed in flat
    finish(check_commands(commands))


def test_readme_yaml_blocks_parse_and_use_real_options() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", readme, re.S)
    assert blocks
    commands = []
    for block in blocks:
        commands += [c for s in scripts(yaml.safe_load(block)) for c in aib_audit_commands(s)]
    finish(check_commands(commands))


def test_the_checker_catches_a_typo() -> None:
    with pytest.raises(AssertionError, match="no option --subscriptions"):
        check_commands([["--subscriptions", "x"]])
    with pytest.raises(AssertionError, match="known format"):
        check_commands([["--report", "pdf=x.pdf"]])
    assert aib_audit_commands('b=(--baseline "a b.json")\naib-audit -s x \\\n  "${b[@]}" --report sarif=o.sarif || code=$?') == [
        ["-s", "x", "--baseline", "a b.json", "--report", "sarif=o.sarif"]
    ]
