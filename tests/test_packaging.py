"""`pip install .` (not just the editable install the tests use) must ship every package and data file:
without checks/metadata/*.toml the catalog is empty, without fixtures/estates/demo.json `--demo` fails."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_python_package_is_listed() -> None:
    on_disk = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for top in ("auditor", "checks", "fixtures")
        for p in (ROOT / top).rglob("__init__.py")
    }
    assert on_disk == set(CONFIG["packages"])


def test_package_data_covers_metadata_and_estates() -> None:
    needed = {
        "checks": list((ROOT / "checks" / "metadata").glob("*.toml")),
        "fixtures": list((ROOT / "fixtures" / "estates").glob("*.json")),
    }
    for package, files in needed.items():
        assert files, f"no data files found for {package}"
        globs = CONFIG["package-data"][package]
        # setuptools expands each glob relative to the package directory, like Path.glob.
        shipped = {m for g in globs for m in (ROOT / package).glob(g)}
        for f in files:
            assert f in shipped, f"{f.relative_to(ROOT)} is not shipped by package-data {globs}"


def test_package_data_ships_the_html_report_template_and_assets() -> None:
    files = list((ROOT / "auditor" / "reports" / "templates").iterdir())
    assert {f.suffix for f in files} >= {".j2", ".js", ".css"}
    globs = CONFIG["package-data"]["auditor.reports"]
    shipped = {m for g in globs for m in (ROOT / "auditor" / "reports").glob(g)}
    for f in files:
        assert f in shipped, f"{f.relative_to(ROOT)} is not shipped by package-data {globs}"
