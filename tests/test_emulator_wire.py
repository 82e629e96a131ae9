"""The emulator must not distort what it measures: each answer leaves in one write on a TCP_NODELAY socket, and a
list is filtered once and paged from that prepared list (same items, same order as unpaged)."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from auditor.emulator import Emulator
from auditor.emulator.store import EstateStore, ScopedDoc
from fixtures import builders as b

SUB = "11111111-1111-1111-1111-111111111111"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
CONTRIB = "b24988ac-6180-42a0-ab88-20f7382dd24c"
MG = "/providers/Microsoft.Management/managementGroups/mg-wire"
TEMPLATES = [b.template(SUB, f"rg-{i % 3}", f"tpl-{i}") for i in range(9)]


def _assignments() -> list[dict[str, Any]]:
    out = [b.role_assignment(MG, CONTRIB, "p-mg", "Group", sub=SUB), b.role_assignment(b.sub_id(SUB), READER, "p-0", sub=SUB)]
    out.append(b.role_assignment(b.sub_id(SUB), CONTRIB, "p-0", sub=SUB))
    for i, t in enumerate(TEMPLATES):
        out.append(b.role_assignment(t["id"], READER, f"p-{i % 4}", sub=SUB))
        out.append(b.role_assignment(b.rg_id(SUB, f"rg-{i % 3}"), CONTRIB, f"p-{i % 2}", sub=SUB, name=b.guid(f"rg:{i}")))
    return out


ESTATE = b.snapshot(
    [SUB],
    {
        "imageTemplates": TEMPLATES,
        "resourceGroups": [b.resource_group(SUB, f"rg-{i}") for i in range(3)],
        "roleAssignments": _assignments(),
        "roleDefinitions": [
            b.role_definition(READER, "Reader", ["*/read"], sub=SUB),
            b.role_definition(CONTRIB, "Contributor", ["*"], sub=SUB),
        ],
    },
    ancestors={SUB: [MG]},
)
ASSIGNMENTS = f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleAssignments"


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(ESTATE, page_size=3) as emulator:
        yield emulator


def _tls(emulator: Emulator) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=emulator.ca_bundle)
    host, port = emulator.endpoint.removeprefix("https://").split(":")
    return context.wrap_socket(socket.create_connection((host, int(port)), timeout=10), server_hostname=host)


def _request(path: str) -> bytes:
    return f"GET {path}?api-version=2022-04-01 HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer t\r\n\r\n".encode()


def _one_recv(sock: ssl.SSLSocket) -> tuple[bytes, int]:
    """What ONE recv returns, and the Content-Length it announces. A TLS recv returns at most one record, and one
    write is one record: an answer written as headers then body arrives headers-only here."""
    data = sock.recv(1 << 16)
    head, sep, _ = data.partition(b"\r\n\r\n")
    assert sep, f"the first recv did not even hold the whole head: {data[:200]!r}"
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
    return data, len(head) + len(sep) + length


def test_a_small_answer_arrives_whole_in_one_recv_and_keep_alive_still_holds(emu: Emulator) -> None:
    with _tls(emu) as sock:
        for path in (b.sub_id(SUB), TEMPLATES[0]["id"], b.sub_id(SUB)):  # three answers over one connection
            sock.sendall(_request(path))
            data, whole = _one_recv(sock)
            assert data.startswith(b"HTTP/1.1 200 OK\r\n")
            assert len(data) == whole, f"one recv held {len(data)} of {whole} bytes: the answer was written in pieces"
    # The same holds for an error answer (the ARM envelope is a body too).
    with _tls(emu) as sock:
        sock.sendall(_request(f"{b.rg_id(SUB, 'rg-0')}/providers/Microsoft.VirtualMachineImages/imageTemplates/nope"))
        data, whole = _one_recv(sock)
        assert data.startswith(b"HTTP/1.1 404 Not Found\r\n") and len(data) == whole and b"ResourceNotFound" in data


def test_accepted_connections_have_tcp_nodelay(emu: Emulator) -> None:
    with _tls(emu) as sock:
        sock.sendall(_request(b.sub_id(SUB)))
        _one_recv(sock)
        httpd = emu._httpd
        assert httpd is not None
        with httpd._open_lock:
            server_side = list(httpd._open)
        assert server_side, "the emulator tracks no open connection"
        assert all(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for s in server_side)


def _pages(emulator: Emulator, path: str, query: str) -> tuple[list[dict[str, Any]], int]:
    """Every item of a list, following nextLinks, and how many pages it took."""
    items: list[dict[str, Any]] = []
    url: str | None = f"{emulator.endpoint}{path}?{query}"
    pages = 0
    with requests.Session() as session:
        while url:
            response = session.get(url, headers={"Authorization": "Bearer t"}, verify=emulator.ca_bundle, timeout=10)
            assert response.status_code == 200, response.text
            body = response.json()
            items += body["value"]
            url = body.get("nextLink")
            pages += 1
    return items, pages


@pytest.mark.parametrize(
    "flt",
    [None, "atScope()", "principalId eq 'p-1'", "principalId eq 'p-0'", "atScope() and principalId eq 'p-0'"],
)
def test_prepared_list_pages_give_the_unpaged_items_in_order_and_filter_once(
    flt: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from urllib.parse import quote

    query = "api-version=2022-04-01" + (f"&$filter={quote(flt)}" if flt else "")
    with Emulator(ESTATE, page_size=10_000) as whole:
        expected, one = _pages(whole, ASSIGNMENTS, query)
    assert one == 1 and len(expected) >= 2
    calls: list[str] = []
    original = EstateStore.scoped

    def counting(self: EstateStore, kind: str, within: str | None = None) -> list[ScopedDoc]:
        calls.append(kind)
        return original(self, kind, within)

    monkeypatch.setattr(EstateStore, "scoped", counting)
    with Emulator(ESTATE, page_size=1) as paged:
        got, pages = _pages(paged, ASSIGNMENTS, query)
        assert [d["id"] for d in got] == [d["id"] for d in expected]
        assert pages == len(expected)
        assert calls == ["roleAssignments"], f"{pages} pages filtered the collection {len(calls)} times"
        again, _ = _pages(paged, ASSIGNMENTS, query)  # a second run pages the same prepared list
        assert again == got and len(calls) == 1


def test_each_filter_has_its_own_prepared_list(emu: Emulator) -> None:
    everything, _ = _pages(emu, ASSIGNMENTS, "api-version=2022-04-01")
    at_scope, _ = _pages(emu, ASSIGNMENTS, "api-version=2022-04-01&$filter=atScope%28%29")
    p1, _ = _pages(emu, ASSIGNMENTS, "api-version=2022-04-01&$filter=principalId%20eq%20%27p-1%27")
    assert len(everything) == len(ESTATE["resources"]["roleAssignments"])  # at, above and below the subscription
    assert {d["properties"]["scope"] for d in at_scope} == {MG, b.sub_id(SUB)}
    assert p1 and all(d["properties"]["principalId"] == "p-1" for d in p1)
    # Another list on the same path (templates in a resource group vs the subscription) is not confused either.
    in_rg_path = f"{b.rg_id(SUB, 'rg-1')}/providers/Microsoft.VirtualMachineImages/imageTemplates"
    in_rg, _ = _pages(emu, in_rg_path, "api-version=2025-10-01")
    assert sorted(t["name"] for t in in_rg) == ["tpl-1", "tpl-4", "tpl-7"]


def test_a_bad_filter_or_skip_token_is_refused_on_every_page(emu: Emulator) -> None:
    base = f"{emu.endpoint}/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions?api-version=2022-04-01"
    for query in ("&$filter=foo%20eq%20%27x%27", "&$filter=foo%20eq%20%27x%27&$skiptoken=3"):
        response = requests.get(base + query, headers={"Authorization": "Bearer t"}, verify=emu.ca_bundle, timeout=10)
        assert response.status_code == 400 and response.json()["error"]["code"] == "InvalidFilterInQueryString"
    bad = requests.get(
        f"{emu.endpoint}{ASSIGNMENTS}?api-version=2022-04-01&$skiptoken=x",
        headers={"Authorization": "Bearer t"},
        verify=emu.ca_bundle,
        timeout=10,
    )
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "InvalidSkipToken"
