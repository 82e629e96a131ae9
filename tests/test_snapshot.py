"""Snapshots from disk: anything that is not a valid snapshot is one clear error (exit 2), never a crash."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from auditor.cli import run
from auditor.snapshot import LIMIT_ENV, MAX_DEPTH, Snapshot, SnapshotError, nesting_depth, size_limit
from fixtures import builders as b

SUB = b.guid("snapshot-sub")


def valid() -> dict[str, Any]:
    tpl = b.template(SUB, "rg", "tpl", identity_doc=b.identity(SUB, "rg", "id"))
    err = {
        "kind": "locks",
        "scope": b.sub_id(SUB),
        "status": 403,
        "code": "AuthorizationFailed",
        "message": "no",
        "permission": "",
    }
    return b.snapshot([SUB], {"imageTemplates": [tpl]}, [err])


def broken(path: str, value: Any) -> dict[str, Any]:
    doc = valid()
    *parents, last = path.split(".")
    node = doc
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return doc


CASES = {
    "meta not an object": (broken("meta", [1, 2]), '"meta" must be an object'),
    "errors not a list": (broken("errors", 5), '"errors" must be a list'),
    "error not an object": (broken("errors.0", "x"), "errors[0] must be an object"),
    "error of unknown kind": (broken("errors.0.kind", "widgets"), "kind 'widgets' is not one of"),
    "error status not a number": (broken("errors.0.status", "403"), "status must be an HTTP status code"),
    "error without scope": (broken("errors.0.scope", ""), "scope must be a string"),
    "no subscription": (broken("subscriptions", []), "audits nothing"),
    "subscription not a GUID": (broken("subscriptions", ["prod"]), "'prod', which is not a subscription ID"),
    "document without id": (broken("resources.imageTemplates.0", {"name": "x"}), 'resources.imageTemplates[0] has no "id"'),
}


@pytest.mark.parametrize("case", CASES)
def test_a_malformed_snapshot_is_refused_with_a_reason(case: str) -> None:
    doc, message = CASES[case]
    with pytest.raises(SnapshotError, match=message.replace("[", r"\[").replace("(", r"\(")):
        Snapshot.from_dict(doc)


@pytest.mark.parametrize("case", ["meta not an object", "errors not a list", "error status not a number"])
def test_the_cli_turns_a_malformed_snapshot_into_one_line_and_exit_2(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps(CASES[case][0]))
    for argv in (["--snapshot", str(path)], ["emulate", "--estate", str(path)]):
        code = run(argv)
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and err.startswith("aib-audit: error:"), (argv, err)


def test_an_unreadable_snapshot_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """chmod 000 does not stop root, so make the read itself fail as it does for other users."""
    path = tmp_path / "s.json"
    path.write_text(json.dumps(valid()))
    real = Path.open

    def denied(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", denied)
    code = run(["--snapshot", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "not readable (permission denied)" in err


def test_a_saved_snapshot_loads_back_the_same(tmp_path: Path) -> None:
    doc = valid()
    doc["subscriptionAncestors"] = {SUB: ["/providers/Microsoft.Management/managementGroups/root-mg", "/"]}
    snap = Snapshot.from_dict(doc)
    path = tmp_path / "s.json"
    snap.save(path)
    again = Snapshot.load(path)
    assert again.to_dict() == snap.to_dict()
    assert again.errors[0].status == 403 and again.subscription_ancestors == snap.subscription_ancestors
    # One ARM document per line (greppable, diffable): each template's document is a line of the file.
    docs = [ln.strip().rstrip(",") for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip().startswith('{"')]
    for template in snap.resources["imageTemplates"]:
        assert any(json.loads(line) == template for line in docs)


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"a": [], "b": {}, "c": {"x": []}, "e": 1, "f": None},
        {"d": {"x": [1, {"y": 'é\n"\u2028'}], "z": []}, "g": {"k": 1, "l": [1]}, "h": [[], {}, "s"]},
    ],
)
def test_the_line_writer_is_json(data: dict[str, Any]) -> None:
    import io

    from auditor.snapshot import write_json_lines

    out = io.StringIO()
    write_json_lines(data, out)
    assert json.loads(out.getvalue()) == data


# --------------------------------------------------------------------------------------------- hostile files (issue 7, case 8)


def _one_line_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str], *fragments: str) -> float:
    started = time.monotonic()
    code = run(argv)
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("aib-audit: error:"), (argv, err)
    for fragment in fragments:
        assert fragment in err, err
    return elapsed


def test_a_snapshot_nested_100000_deep_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    elapsed = _one_line_exit_2(capsys, ["--snapshot", str(path)], f"more than {MAX_DEPTH} deep")
    assert elapsed < 10
    _one_line_exit_2(capsys, ["emulate", "--estate", str(path)], f"more than {MAX_DEPTH} deep")


def test_a_snapshot_just_too_deep_for_the_walk_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Deep enough to fail the depth check, shallow enough that the JSON parser itself accepts it."""
    doc = valid()
    deep: Any = "x"
    for _ in range(MAX_DEPTH + 5):
        deep = {"k": deep}
    doc["resources"]["imageTemplates"][0]["properties"] = deep
    path = tmp_path / "deep.json"
    path.write_text(json.dumps(doc))
    _one_line_exit_2(capsys, ["--snapshot", str(path)], f"more than {MAX_DEPTH} deep")
    assert nesting_depth(doc, MAX_DEPTH) > MAX_DEPTH and nesting_depth(valid(), MAX_DEPTH) < 20


def test_dev_zero_is_refused_at_once_with_the_default_limit(capsys: pytest.CaptureFixture[str]) -> None:
    elapsed = _one_line_exit_2(capsys, ["--snapshot", "/dev/zero"], "not a JSON text (it holds NUL bytes)")
    assert elapsed < 10


def test_a_snapshot_over_the_size_limit_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "big.json"
    text = json.dumps(valid())
    path.write_text(text + " " * (2 << 20))  # valid JSON, padded past 2 MiB
    monkeypatch.setenv(LIMIT_ENV, "1")
    _one_line_exit_2(capsys, ["--snapshot", str(path)], "larger than 1 MiB", LIMIT_ENV)
    monkeypatch.setenv(LIMIT_ENV, "3")
    assert Snapshot.load(path).subscriptions == [SUB]
    monkeypatch.setenv(LIMIT_ENV, "lots")
    _one_line_exit_2(capsys, ["--snapshot", str(path)], f"{LIMIT_ENV} must be a whole number")
    monkeypatch.delenv(LIMIT_ENV)
    assert size_limit() == 512 << 20


def test_reading_stops_at_the_limit(tmp_path: Path) -> None:
    """An endless stream without NULs (a FIFO fed forever) ends at the limit, not at memory's end."""
    fifo = tmp_path / "endless"
    os.mkfifo(fifo)
    stop = threading.Event()

    def feed() -> None:
        try:
            with open(fifo, "wb") as fh:
                while not stop.is_set():
                    fh.write(b"[" * 65536)
        except BrokenPipeError:
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        with pytest.raises(SnapshotError, match="larger than 1 MiB"):
            Snapshot.load(fifo, limit_bytes=1 << 20)
    finally:
        stop.set()
        writer.join(timeout=10)


def test_add_and_put_keep_first_and_replace_by_id_across_many_pages() -> None:
    """add() keeps the first copy of an ID, put() replaces it; both index the IDs once (not per page) and notice
    a bucket that was replaced or edited in between."""
    snap = Snapshot(subscriptions=["s"])
    for page in range(50):
        snap.add("locks", [{"id": f"/L/{i}", "page": page} for i in range(page * 10, page * 10 + 20)])
    locks = snap.resources["locks"]
    assert [d["id"] for d in locks] == [f"/L/{i}" for i in range(510)]
    assert locks[15]["page"] == 0 and locks[25]["page"] == 1  # first copy kept
    snap.put("locks", [{"id": "/l/15", "page": "get"}, {"id": "/L/new"}])
    assert locks[15] == {"id": "/l/15", "page": "get"} and locks[-1] == {"id": "/L/new"} and len(locks) == 511
    locks.append({"id": "/L/edited"})  # edited behind its back
    snap.add("locks", [{"id": "/l/EDITED"}])
    assert len(locks) == 512
    snap.resources["locks"] = [{"id": "/L/0"}]  # replaced
    snap.add("locks", [{"id": "/L/0"}, {"id": "/L/1"}])
    assert snap.resources["locks"] == [{"id": "/L/0"}, {"id": "/L/1"}]
