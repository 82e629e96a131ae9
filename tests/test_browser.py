"""The HTML report in a real browser: headless Chromium (Debian's `chromium`, which .ci/run installs) loads the
demo's report from a file, runs its script, and the test reads the DOM it left and takes a screenshot.

Chromium cannot reach the network here: the page is a file:// URL whose Content-Security-Policy forbids every
fetch, the browser runs with DNS mapped to nothing and a proxy on a closed loopback port, and background
networking (updates, sync, first-run) is switched off. Skipped, with the reason, only where no chromium exists.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

from auditor.cli import run
from auditor.findings import Status
from auditor.reports import render
from tests.report_data import demo_result, first, run_info

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (.ci/run installs Debian's chromium package)")
EVIL = "<script>document.body.setAttribute('data-pwned','1')</script>"


def chromium(profile: Path, *args: str, timeout: float = 120.0) -> str:
    assert CHROMIUM is not None
    cmd = [
        CHROMIUM,
        "--headless",
        "--disable-gpu",
        "--no-sandbox",  # CI runs as root
        f"--user-data-dir={profile}",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-default-apps",
        "--disable-sync",
        "--disable-extensions",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--proxy-server=http://127.0.0.1:9",
        "--virtual-time-budget=10000",
        *args,
    ]
    env = {**os.environ, "HOME": str(profile)}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@dataclass
class DemoReport:
    html: Path
    summary: dict[str, int]
    tmp: Path


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoReport]:
    """`aib-audit --demo` writes the report exactly as `make demo` does; its JSON twin gives the expected numbers."""
    tmp = tmp_path_factory.mktemp("browser")
    html, js = tmp / "demo.html", tmp / "demo.json"
    assert run(["--demo", "--format", "html", "--output", str(html)]) == 1
    assert run(["--demo", "--format", "json", "--output", str(js)]) == 1
    yield DemoReport(html, json.loads(js.read_text(encoding="utf-8"))["summary"], tmp)


def text_of(dom: str, pattern: str) -> str:
    m = re.search(pattern, dom, re.S)
    assert m, f"{pattern!r} not in the rendered DOM"
    return m.group(1)


def test_browser_renders_the_demo_counts_and_the_script_ran(demo_report: DemoReport) -> None:
    dom = chromium(demo_report.tmp / "profile", "--dump-dom", demo_report.html.as_uri())
    assert 'data-ready="yes"' in dom, "the report's script did not run"
    summary = demo_report.summary
    for status in ("FAIL", "ERROR", "ACCEPTED", "PASS", "N/A"):
        assert text_of(dom, rf'data-total="{re.escape(status)}"><b>(\d+)</b>') == str(summary[status])
    # counted by the script from the rows the page rendered
    for status in ("FAIL", "ERROR", "ACCEPTED"):
        assert text_of(dom, rf'data-shown-status="{status}">(\d+)<') == str(summary[status])
    shown, total = map(int, re.search(r"(\d+) of (\d+) rows shown", dom).groups())  # type: ignore[union-attr]
    assert shown == total > summary["FAIL"]
    # the practice chart's bars add up to the same FAILs
    practice = text_of(dom, r'id="chart-practice"(.*?)</svg>')
    assert sum(int(n) for n in re.findall(r'data-fail="(\d+)"', practice)) == summary["FAIL"]


def test_filter_from_the_url_narrows_every_table(demo_report: DemoReport) -> None:
    result = demo_result()
    fail = first(result, Status.FAIL, "AIB-LP-001", principal=True)
    template = fail.template_id.rsplit("/", 1)[-1]
    expected = sum(
        1 for f in result.findings if f.status == Status.FAIL and f.check_id == "AIB-LP-001" and f.template_id == fail.template_id
    )
    url = demo_report.html.as_uri() + "#q=" + quote(f"{template} AIB-LP-001")
    dom = chromium(demo_report.tmp / "profile", "--dump-dom", url)
    assert 'data-filtered="yes"' in dom
    assert text_of(dom, r'data-shown-status="FAIL">(\d+)<') == str(expected) != "0"
    assert expected < demo_report.summary["FAIL"]
    # the other templates' groups are hidden, this one is not
    tpl_groups = re.findall(r"<details class=\"grp tpl\"([^>]*)>\s*<summary data-gh=\"\"><b>([^<]+)</b>", dom)
    assert len(tpl_groups) == len(result.templates)
    assert all(("hidden" in attrs) == (name != template) for attrs, name in tpl_groups)


def test_screenshot_reads_well(demo_report: DemoReport) -> None:
    shot = demo_report.tmp / "demo.png"  # kept in pytest's temp dir for a person to look at
    chromium(demo_report.tmp / "profile", f"--screenshot={shot}", "--window-size=1400,2000", demo_report.html.as_uri())
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000  # a rendered page, not a blank one


def test_markup_in_arm_text_does_not_run(tmp_path: Path) -> None:
    result = demo_result()
    result.templates[0].template.name = EVIL
    f = first(result, Status.FAIL, "AIB-LP-001", principal=True)
    f.detail = f.role_name = EVIL
    page = tmp_path / "evil.html"
    page.write_text(render("html", result, run_info(result)), encoding="utf-8")
    dom = chromium(tmp_path / "profile", "--dump-dom", page.as_uri())
    body = text_of(dom, r"(<body[^>]*>)")
    assert 'data-ready="yes"' in body and "data-pwned" not in body  # our script ran; the injected one did not
    assert dom.count("<script") == 1
    assert "&lt;script&gt;document.body.setAttribute('data-pwned','1')&lt;/script&gt;" in dom  # shown as text


def test_a_principals_rows_link_filters_to_that_principal(demo_report: DemoReport) -> None:
    result = demo_result()
    deleted = next(f for f in result.findings if f.principal_type == "Unknown")
    expected = sum(1 for f in result.findings if f.status == Status.FAIL and f.principal_id == deleted.principal_id)
    dom = chromium(demo_report.tmp / "profile", "--dump-dom", demo_report.html.as_uri() + f"#q={deleted.principal_id}")
    assert f'href="#q={deleted.principal_id}"' in dom  # the link in the per-principal table
    assert text_of(dom, r'data-shown-status="FAIL">(\d+)<') == str(expected) != "0"
