"""The HTML report as text: self-contained, escaped, and carrying the numbers a reviewer relies on.

tests/test_browser.py loads it in headless Chromium; these tests read the markup itself."""

from __future__ import annotations

import base64
import hashlib
import re
from collections import Counter
from html.parser import HTMLParser

from auditor.findings import Status
from auditor.reports import render, status_counts
from auditor.reports.html import _who, build_page
from tests.report_data import accept, demo_result, error_result, first, run_info, with_baseline

EVIL = "<script>document.body.setAttribute('data-pwned','1')</script><img src=x onerror=alert(1)>"


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text of <script> and <style> elements."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.raw: dict[str, list[str]] = {"script": [], "style": []}
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in = tag if tag in self.raw else None

    def handle_endtag(self, tag: str) -> None:
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in:
            self.raw[self._in].append(data)


def parse(text: str) -> Tags:
    p = Tags()
    p.feed(text)
    return p


def sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def test_demo_html_carries_the_totals_the_charts_and_every_template() -> None:
    result = demo_result()
    text = render("html", result, run_info(result))
    tags = parse(text).tags
    totals = status_counts(result.findings)
    cards = {a["data-total"]: a for t, a in tags if t == "div" and "data-total" in a}
    assert set(cards) == {"FAIL", "ERROR", "ACCEPTED", "PASS", "N/A"}
    for status, n in totals.items():
        assert re.search(rf'data-total="{re.escape(status)}"><b>{n}</b>', text), status
    bars = [a for t, a in tags if t == "g" and a.get("class") == "bar"]
    practice_bars = bars[: len({c.meta.practice for c in result.checks})]
    assert sum(int(a["data-fail"] or 0) for a in practice_bars) == totals["FAIL"]
    assert sum(int(a["data-pass"] or 0) for a in practice_bars) == totals["PASS"]
    # one group per template, and each lists its FAIL/ERROR/ACCEPTED rows (PASS and N/A are named, not listed)
    groups = [a for t, a in tags if t == "details" and "tpl" in (a.get("class") or "")]
    assert len(groups) == len(result.templates) == 7
    rows = Counter(a["data-s"] for t, a in tags if t == "tr" and "data-s" in a)
    assert rows == Counter({"FAIL": totals["FAIL"]})
    assert "PASS: AIB-" in text


def test_least_privilege_rows_are_grouped_per_principal() -> None:
    result = demo_result()
    page = build_page(result, run_info(result))
    lp = [f for f in result.findings if f.check_id.startswith("AIB-LP-") and f.principal_id]
    assert {p.principal_id.lower() for p in page.principals} == {f.principal_id.lower() for f in lp}
    assert sum(p.rows for p in page.principals) == len(lp)
    assert sum(p.counts["FAIL"] for p in page.principals) == sum(1 for f in lp if f.status == Status.FAIL)
    worst = page.principals[0]
    assert worst.counts["FAIL"] == max(p.counts["FAIL"] for p in page.principals)  # most FAILs first
    deleted = next(p for p in page.principals if p.principal_type == "Unknown")
    assert deleted.templates >= 1 and deleted.roles and deleted.checks
    # every row of a principal carries its ID, so the "rows" link (#q=<id>) finds all of them
    text = render("html", result, run_info(result))
    assert f'href="#q={deleted.principal_id}"' in text
    for f in lp:
        assert f.principal_id.lower() in (f.detail + _who(f)).lower()


def test_page_is_self_contained_under_a_strict_content_security_policy() -> None:
    result = demo_result()
    text = render("html", result, run_info(result))
    parsed = parse(text)
    (csp,) = [a["content"] for t, a in parsed.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert csp is not None
    assert "default-src 'none'" in csp and "connect-src 'none'" in csp and "unsafe" not in csp
    (script,) = parsed.raw["script"]
    (style,) = parsed.raw["style"]
    assert f"script-src {sha256(script)}" in csp and f"style-src {sha256(style)}" in csp
    # nothing is loaded: no src, no stylesheet link, no CSS url(); links are plain <a href> to Microsoft Learn
    assert not [a for t, a in parsed.tags if "src" in a or t in ("link", "img", "iframe", "object", "embed")]
    assert "url(" not in style and "@import" not in style
    hrefs = {a["href"] or "" for t, a in parsed.tags if t == "a"}
    docs = {h for h in hrefs if h.startswith("https://learn.microsoft.com/")}
    filters = {h for h in hrefs if h.startswith("#q=")}  # "this principal's rows": a filter on the page itself
    assert docs and filters and hrefs == docs | filters
    assert not [a for t, a in parsed.tags if "style" in a]  # style="" would be blocked by the policy


def test_arm_text_is_escaped_everywhere() -> None:
    result = demo_result()
    result.templates[0].template.name = EVIL
    fail = first(result, Status.FAIL, "AIB-LP-001", principal=True)
    fail.detail, fail.role_name, fail.principal_name = EVIL, EVIL, EVIL
    accept(fail, reason=EVIL, owner=EVIL)
    text = render("html", result, run_info(result))
    assert text.count("<script") == 1 and "<img" not in text and "onerror=alert(1)>" not in text
    assert "&lt;script&gt;document.body.setAttribute(&#39;data-pwned&#39;,&#39;1&#39;)&lt;/script&gt;" in text


def test_control_and_bidi_characters_are_shown_as_escapes() -> None:
    result = demo_result()
    result.templates[0].template.name = "tpl-\u202eevil\x1b[31m"
    text = render("html", result, run_info(result))
    assert "\u202e" not in text and "\x1b" not in text
    assert "tpl-\\u202eevil\\x1b[31m" in text


def test_accepted_rows_show_the_exception() -> None:
    result = demo_result()
    accepted = accept(first(result, Status.FAIL, "AIB-GAL-004"))
    text = render("html", result, run_info(result))
    assert 'data-total="ACCEPTED"><b>1</b>' in text
    assert "accepted: vendor image, risk accepted by CISO; owner secops@contoso.com; expires 2027-03-31" in text
    assert accepted.detail in text


def test_baseline_sections_list_new_and_fixed_only_when_a_baseline_was_given() -> None:
    plain = demo_result()
    assert 'id="changes"' not in render("html", plain, run_info(plain))
    result = demo_result()
    new, regressed, fixed = with_baseline(result)
    page = build_page(result, run_info(result))
    assert page.baseline and page.change_counts == {"new": 1, "regressed": 1, "fixed": 2}
    assert {r.finding_id for r in page.changed_rows} == {new.finding_id, regressed.finding_id}
    assert {r.change for r in page.changed_rows} == {"new", "regressed"}
    assert {r.finding_id for r in page.fixed_rows} == {f.finding_id for f in result.fixed}
    text = render("html", result, run_info(result))
    assert 'id="changes"' in text and 'data-change="new"><b>1</b>' in text and 'data-change="fixed"><b>2</b>' in text
    assert "tpl-retired" in text  # a fixed finding whose template is gone is still listed


def test_failed_reads_and_incomplete_audit_are_shown() -> None:
    result = error_result()
    text = render("html", result, run_info(result))
    assert "exit 3" in text and "audit incomplete" in text
    assert "could not read locks at" in text and "could not read imageTemplates at" in text
    rows = Counter(a["data-s"] for t, a in parse(text).tags if t == "tr" and "data-s" in a)
    assert rows == Counter({"ERROR": 3})  # two checks on tpl-win, and the failed template list on a row of its own


def test_large_estates_start_folded_and_small_ones_open() -> None:
    result = demo_result()
    assert all(t.open for t in build_page(result, run_info(result)).templates)
    result.templates = result.templates * 2  # 14 > OPEN_TEMPLATES_UP_TO
    assert not any(t.open for t in build_page(result, run_info(result)).templates)
