"""The Markdown summary for $GITHUB_STEP_SUMMARY: the counts, new FAILs first, a capped table that cannot link or
inject markup, and a size far below GitHub's 1 MiB limit."""

from __future__ import annotations

import re

import pytest

from auditor.findings import Status
from auditor.reports import render
from auditor.reports.markdown import MAX_ROWS, cell
from tests.report_data import accept, demo_result, error_result, first, run_info, with_baseline


def table_rows(text: str, header_start: str) -> list[list[str]]:
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[at + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


def test_counts_and_a_capped_table_of_what_needs_attention() -> None:
    result = demo_result()
    text = render("markdown", result, run_info(result))
    fails = result.count(Status.FAIL)
    assert text.startswith(f"## aib-audit: {fails} FAIL, 0 ERROR\n")
    assert "Exit 1: audit complete, at least one check failed. 7 templates in" in text
    assert f"| {fails} | 0 | 0 | {result.count(Status.PASS)} | {result.count(Status.NA)} |" in text
    rows = table_rows(text, "| Status | Severity |")
    assert len(rows) == MAX_ROWS < fails
    assert f"… {fails - MAX_ROWS:,} more FAIL/ERROR rows: see the CSV, JSON or HTML report." in text
    assert all(len(r) == 7 and r[0] == "FAIL" for r in rows)
    assert [r[1] for r in rows] == sorted((r[1] for r in rows), key=["high", "medium", "low", "info"].index)
    checks = table_rows(text, "| Check | Severity | Title |")
    assert sum(int(r[3]) for r in checks) == fails


def test_new_and_regressed_fails_come_first() -> None:
    result = demo_result()
    new, regressed, _ = with_baseline(result)
    text = render("markdown", result, run_info(result))
    assert "Since the baseline: **1 new** and **1 regressed** FAIL, **2 fixed**." in text
    rows = table_rows(text, "| Change | Status |")
    assert {rows[0][0], rows[1][0]} == {"new", "regressed"}
    assert {rows[0][3], rows[1][3]} == {new.check_id, regressed.check_id}
    assert all(r[0] == "unchanged" for r in rows[2:])


def test_errors_come_before_old_fails_and_notes_are_listed() -> None:
    result = error_result()
    result.notes = ["exception 3 matched no row (stale)"]
    text = render("markdown", result, run_info(result))
    assert text.startswith("## aib-audit: 0 FAIL, 3 ERROR\n") and "Exit 3: audit incomplete" in text
    rows = table_rows(text, "| Status | Severity |")
    assert [r[0] for r in rows] == ["ERROR"] * 3
    assert "- exception 3 matched no row (stale)" in text and "- could not read locks at" in text


def test_accepted_rows_are_counted_not_listed() -> None:
    result = demo_result()
    accepted = accept(first(result, Status.FAIL, "AIB-GAL-004"))
    text = render("markdown", result, run_info(result))
    assert "| 1 | " in text.split("| FAIL | ERROR | ACCEPTED | PASS | N/A |")[1].splitlines()[2]
    assert accepted.detail not in text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a | b\nc", "a \\| b c"),
        ("<img src=x onerror=alert(1)>", "\\<img src=x onerror=alert(1)\\>"),
        ("[click](javascript:alert(1)) **bold** _it_ ~x~", "\\[click\\](javascript:alert(1)) \\*\\*bold\\*\\* \\_it\\_ \\~x\\~"),
        ("fetches http://example.com/a.sh over http", "fetches `http://example.com/a.sh` over http"),
        ("owner alice@contoso.com", "owner `alice@contoso.com`"),
        ("see www.example.com|x", "see `www.example.com\\|x`"),
        ("live\u202e \x1b[2J", "live\\\\u202e \\\\x1b\\[2J"),  # shown as \u202e: the escape's backslash is escaped
        ("`tick` http://h/`x`", "\\`tick\\` `` http://h/`x` ``"),
    ],
)
def test_cells_are_inert(raw: str, expected: str) -> None:
    assert cell(raw) == expected


def test_long_cells_are_cut_and_a_huge_estate_stays_small() -> None:
    assert cell("x" * 1000) == "x" * 299 + "…"
    result = demo_result()
    for f in result.findings:
        f.detail = "y" * 5000
    result.findings = result.findings * 200  # 55,000 rows
    text = render("markdown", result, run_info(result))
    assert len(text.encode("utf-8")) < 64 * 1024  # GitHub's step summary limit is 1 MiB
