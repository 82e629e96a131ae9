"""Microsoft Graph on the emulator's host, under /v1.0: what aib-audit reads, from the estate's directory.

- `POST /v1.0/directoryObjects/getByIds` (`{"ids": [...], "types": [...]}`, at most 1,000 IDs): the estate's
  `directoryObjects` with those IDs; an ID the directory does not hold is left out, as Graph does for a deleted
  principal.
- `GET /v1.0/groups/{id}/transitiveMembers` (`$top` up to 999, `$skiptoken`, an absolute `@odata.nextLink`): the
  group's `groupMembers` entry; 404 `Request_ResourceNotFound` for a group the directory does not hold.

An estate without any `directoryObjects` (one written before Graph, or for ARM only) gets a nameless directory:
every principal its role assignments name exists, as the type ARM reports and without a display name, except
principalType `Unknown` (deleted, as ARM says) and `ForeignGroup` (another tenant's); no group's members are
known (404). So such an estate audits as it did before Graph: no names, the same verdicts, no warning. Errors use
Graph's envelope (`{"error": {"code", "message", "innerError"}}`); the server's `--forbid /v1.0` gives Graph's
403 `Authorization_RequestDenied` (an identity without directory read), for one group `--forbid
/v1.0/groups/{id}`.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from auditor.snapshot import Snapshot

from .responses import ArmError, Response, json_response

GET_BY_IDS = "/v1.0/directoryobjects/getbyids"
MAX_IDS = 1000
DEFAULT_TOP = 100
MAX_TOP = 999


def is_graph_path(path: str) -> bool:
    return path.lower() == "/v1.0" or path.lower().startswith("/v1.0/")


def graph_error(status: int, code: str, message: str) -> ArmError:
    return ArmError(status, code, message)


def forbidden() -> ArmError:
    return graph_error(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")


def unauthenticated() -> ArmError:
    return graph_error(401, "InvalidAuthenticationToken", "Access token is empty.")


def _odata_type(obj: dict[str, Any]) -> str:
    return str(obj.get("@odata.type") or "").rsplit(".", 1)[-1].lower()


class GraphDirectory:
    """The estate's directory, indexed by lower-case object ID."""

    def __init__(self, snapshot: Snapshot, page_size: int = DEFAULT_TOP) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        for obj in snapshot.resources.get("directoryObjects", []) or _nameless(snapshot):
            self.objects.setdefault(str(obj.get("id", "")).lower(), obj)
        self.members: dict[str, list[dict[str, Any]]] = {}
        for doc in snapshot.resources.get("groupMembers", []):
            listed = doc.get("transitiveMembers")
            self.members.setdefault(str(doc.get("id", "")).lower(), listed if isinstance(listed, list) else [])
        self.page_size = min(page_size, MAX_TOP)
        self.nameless = not snapshot.resources.get("directoryObjects")

    def handle(self, method: str, path: str, params: dict[str, str], body: bytes, endpoint: str) -> Response:
        low = path.lower()
        if method == "POST" and low == GET_BY_IDS:
            return self._get_by_ids(body, endpoint)
        segs = [s for s in path.split("/") if s]
        low_segs = [x.lower() for x in segs]
        if method in ("GET", "HEAD") and len(segs) == 4 and low_segs[1] == "groups" and low_segs[3] == "transitivemembers":
            return self._transitive_members(segs[2], path, params, endpoint)
        raise graph_error(400, "Request_UnsupportedQuery", f"The aib-audit emulator does not serve {method} {path}.")

    def _get_by_ids(self, body: bytes, endpoint: str) -> Response:
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            raise graph_error(400, "BadRequest", "Unable to read JSON request payload.") from None
        ids = payload.get("ids") if isinstance(payload, dict) else None
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise graph_error(400, "Request_BadRequest", "The 'ids' parameter is required and must be a list of strings.")
        if len(ids) > MAX_IDS:
            raise graph_error(400, "Request_BadRequest", f"The number of ids exceeds the maximum of {MAX_IDS}.")
        types = {str(t).lower() for t in payload.get("types") or []}
        found = [o for i in ids if (o := self.objects.get(i.lower())) is not None and (not types or _odata_type(o) in types)]
        return json_response(200, {"@odata.context": f"{endpoint}/v1.0/$metadata#directoryObjects", "value": found})

    def _transitive_members(self, group_id: str, path: str, params: dict[str, str], endpoint: str) -> Response:
        group = self.objects.get(group_id.lower())
        if group is None or _odata_type(group) != "group":
            raise graph_error(
                404,
                "Request_ResourceNotFound",
                f"Resource '{group_id}' does not exist or one of its queried reference-property objects are not present.",
            )
        members = self.members.get(group_id.lower())
        if members is None and self.nameless:
            raise graph_error(404, "Request_ResourceNotFound", f"The estate does not say who is in group '{group_id}'.")
        members = members or []
        lower = {k.lower(): v for k, v in params.items()}
        try:
            top = int(lower.get("$top", self.page_size))
            start = int(lower.get("$skiptoken", 0))
        except ValueError:
            raise graph_error(400, "Request_BadRequest", "Invalid $top or $skiptoken.") from None
        if not 1 <= top <= MAX_TOP or start < 0:
            raise graph_error(400, "Request_BadRequest", f"Invalid page size {top}: 1 to {MAX_TOP}.")
        top = min(top, self.page_size)
        page = members[start : start + top]
        out: dict[str, Any] = {"@odata.context": f"{endpoint}/v1.0/$metadata#directoryObjects", "value": page}
        if start + top < len(members):
            out["@odata.nextLink"] = f"{endpoint}{quote(path, safe='/')}?$top={top}&$skiptoken={start + top}"
        return json_response(200, out)


# ARM principalType -> Graph @odata.type, for estates without a directory of their own.
_GRAPH_TYPES = {"user": "user", "group": "group", "serviceprincipal": "servicePrincipal", "device": "device"}


def _nameless(snapshot: Snapshot) -> list[dict[str, Any]]:
    """Directory objects for the principals an estate's role assignments name (see the module docstring)."""
    out: dict[str, dict[str, Any]] = {}
    for kind in ("roleAssignments", "roleEligibilityScheduleInstances"):
        for doc in snapshot.resources.get(kind, []):
            raw = doc.get("properties")
            props: dict[str, Any] = raw if isinstance(raw, dict) else {}
            pid, arm_type = str(props.get("principalId") or ""), str(props.get("principalType") or "").lower()
            if not pid or arm_type in ("unknown", "foreigngroup"):
                continue
            graph_type = _GRAPH_TYPES.get(arm_type, "directoryObject")
            out.setdefault(pid.lower(), {"@odata.type": f"#microsoft.graph.{graph_type}", "id": pid})
    return list(out.values())
