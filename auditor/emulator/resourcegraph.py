"""Resource Graph for the emulator: `POST /providers/Microsoft.ResourceGraph/resources` over the same estate.

Only the subset of KQL the collector sends is evaluated; any other query is a 400 `InvalidQuery`, so a change
to the collector's query that the emulator does not follow fails a test instead of passing on a guess:

    resources
    | where type =~ '<type>'                  (or: type in~ ('<type>', ...))
    | project col, name = a.b.c, ...          (dotted paths into the row; a plain name keeps its column)
    | order by id asc|desc                    (optional)

Rows are the estate's typed resources (templates, galleries, identities) as Resource Graph shows them: `type`
lower case, plus `subscriptionId` and `resourceGroup`. Results are paged: `options.$top` rows (at most 1,000)
and a `$skipToken` for the rest. The request must name its subscriptions, as the collector always does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from auditor import ids

from .responses import ArmError, Response, bad_request, json_response

MAX_TOP = 1000
_WHERE_EQ = re.compile(r"^where\s+type\s*=~\s*'([^']+)'$", re.IGNORECASE)
_WHERE_IN = re.compile(r"^where\s+type\s+in~\s*\(([^)]*)\)$", re.IGNORECASE)
_PROJECT = re.compile(r"^project\s+(.+)$", re.IGNORECASE | re.DOTALL)
_ORDER = re.compile(r"^order\s+by\s+([A-Za-z_][A-Za-z0-9_]*)(?:\s+(asc|desc))?$", re.IGNORECASE)
_COLUMN = re.compile(r"^(?:([A-Za-z_][A-Za-z0-9_]*)\s*=\s*)?([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)$")


@dataclass(frozen=True)
class Query:
    types: frozenset[str]
    columns: tuple[tuple[str, tuple[str, ...]], ...]  # (output name, path)
    order_by: str | None = None
    descending: bool = False


def _invalid(query: str, why: str) -> ArmError:
    return bad_request("InvalidQuery", f"Query is invalid: {why}. The aib-audit emulator does not evaluate: {query!r}")


def parse_query(text: str) -> Query:
    stages = [s.strip() for s in text.split("|")]
    if not stages or stages[0].lower() != "resources":
        raise _invalid(text, "only the 'resources' table is served")
    types: frozenset[str] | None = None
    columns: tuple[tuple[str, tuple[str, ...]], ...] | None = None
    order_by, descending = None, False
    for stage in stages[1:]:
        if (m := _WHERE_EQ.match(stage)) and types is None:
            types = frozenset({m.group(1).lower()})
        elif (m := _WHERE_IN.match(stage)) and types is None:
            names = [t.strip() for t in m.group(1).split(",")]
            if not names or not all(len(t) > 2 and t[0] == t[-1] == "'" for t in names):
                raise _invalid(text, f"bad list in {stage!r}")
            types = frozenset(t[1:-1].lower() for t in names)
        elif (m := _PROJECT.match(stage)) and columns is None:
            cols = []
            for part in m.group(1).split(","):
                c = _COLUMN.match(part.strip())
                if not c:
                    raise _invalid(text, f"bad column {part.strip()!r}")
                path = tuple(c.group(2).split("."))
                cols.append((c.group(1) or "_".join(path), path))
            columns = tuple(cols)
        elif (m := _ORDER.match(stage)) and order_by is None:
            order_by, descending = m.group(1), (m.group(2) or "asc").lower() == "desc"
        else:
            raise _invalid(text, f"unsupported operator {stage!r}")
    if types is None:
        raise _invalid(text, "a 'where type' filter is required")
    return Query(types, columns or (), order_by, descending)


def row_of(doc: dict[str, Any]) -> dict[str, Any]:
    """A resource as Resource Graph's `resources` table shows it."""
    rid = str(doc.get("id") or "")
    return {
        "id": rid,
        "name": doc.get("name"),
        "type": str(doc.get("type") or "").lower(),
        "location": doc.get("location"),
        "subscriptionId": ids.subscription_of(rid),
        "resourceGroup": (ids.resource_group_of(rid) or "").lower(),
        "tags": doc.get("tags") or {},
        "identity": doc.get("identity"),
        "properties": doc.get("properties") or {},
    }


def _get(row: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = row
    for key in path:
        if not isinstance(value, dict):
            return None
        value = next((v for k, v in value.items() if k.lower() == key.lower()), None)
    return value


def evaluate(body_bytes: bytes, docs: Callable[[], Iterable[dict[str, Any]]]) -> Response:
    """Answer one query request; `docs` yields every typed resource of the estate."""
    try:
        body = json.loads(body_bytes or b"{}")
    except ValueError:
        raise bad_request("InvalidRequestContent", "The request content was invalid and could not be deserialized.") from None
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        raise bad_request("InvalidRequestContent", "The request must carry a 'query' string.")
    subs = body.get("subscriptions")
    if not isinstance(subs, list) or not subs:
        raise bad_request("InvalidRequestContent", "The aib-audit emulator needs the request to name its subscriptions.")
    query = parse_query(body["query"])
    options = body.get("options") or {}
    if str(options.get("resultFormat", "objectArray")).lower() != "objectarray":
        raise bad_request("InvalidRequestContent", "The aib-audit emulator answers resultFormat objectArray only.")
    top = int(options.get("$top") or 100)
    if not 1 <= top <= MAX_TOP:
        raise bad_request("InvalidRequestContent", f"$top must be between 1 and {MAX_TOP}.")
    token = options.get("$skipToken")
    try:
        start = int(str(token)) if token else 0
    except ValueError:
        raise bad_request("InvalidSkipToken", f"The skip token '{token}' is not valid.") from None
    wanted = {str(s).lower() for s in subs}
    rows = [row_of(d) for d in docs()]
    rows = [r for r in rows if r["type"] in query.types and str(r["subscriptionId"]) in wanted]
    if query.order_by:
        rows.sort(key=lambda r: str(_get(r, (query.order_by or "",)) or "").lower(), reverse=query.descending)
    if query.columns:
        rows = [{name: _get(r, path) for name, path in query.columns} for r in rows]
    page = rows[start : start + top]
    out: dict[str, Any] = {
        "totalRecords": len(rows),
        "count": len(page),
        "data": page,
        "facets": [],
        "resultTruncated": "false",
    }
    if start + top < len(rows):
        out["$skipToken"] = str(start + top)
    return json_response(200, out)
