"""ARM paths -> handlers over the estate.

Paths arrive decoded (the SDKs percent-encode scopes, `/%2Fsubscriptions%2F...`) with duplicate slashes
collapsed; every segment is matched case-insensitively. Extension resources under
`{scope}/providers/Microsoft.Authorization/...` are routed by the last such segment; everything else by
`/subscriptions/{s}[/resourceGroups/{rg}][/providers/{ns}/{type}[/{name}[/{child}[/{childName}]]]]`.
Lists are paged with an absolute `nextLink` carrying `$skiptoken`, `api-version` and `$filter`. A list is filtered
once per (path, query) and its pages are cut from that prepared list (the `$skiptoken` is an offset into it): the
served estate never changes, and re-filtering 100,000 role assignments for every page of 100 cost the emulator
more CPU than the collector it measures.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from auditor.snapshot import PERMISSIONS

from .filters import filter_role_definitions, in_view, matches, parse_scope_filter
from .responses import (
    ArmError,
    Response,
    bad_request,
    json_response,
    not_found,
    resource_group_not_found,
    resource_not_found,
    subscription_not_found,
)
from .store import ARM_TYPES, CHILD_KINDS, EXTENSION_KINDS, TYPED_KINDS, EstateStore
from .tenant import is_descendants_path

AUTH_MARK = "/providers/microsoft.authorization/"
SKIP_KEYS = ("$skiptoken",)
# Query parameters that do not change what a list holds: left out of the prepared-list key.
UNKEYED = ("$skiptoken", "api-version")
# Prepared lists kept at once (least recently used go first): enough for every list a run pages concurrently.
PREPARED_LISTS = 256
SUBSCRIPTION_READ = "Microsoft.Resources/subscriptions/read"
DESCENDANTS_READ = "Microsoft.Management/managementGroups/descendants/read"
GENERIC_READ = "*/read"

# Not-found codes ARM uses for a missing extension resource.
_EXTENSION_NOT_FOUND: dict[str, str] = {
    "locks": "LockNotFound",
    "roleAssignments": "RoleAssignmentNotFound",
    "roleDefinitions": "RoleDefinitionDoesNotExist",
    "denyAssignments": "DenyAssignmentNotFound",
    "roleEligibilityScheduleInstances": "RoleEligibilityScheduleInstanceNotFound",
}


@dataclass
class Request:
    path: str  # decoded, one slash between segments, no trailing slash, original case
    params: dict[str, str] = field(default_factory=dict)  # query, keys as sent
    endpoint: str = ""

    def param(self, name: str) -> str | None:
        """Case-insensitive query lookup (`$skipToken` and `$skiptoken` are the same to ARM)."""
        wanted = name.lower()
        for key, value in self.params.items():
            if key.lower() == wanted:
                return value
        return None


@dataclass(frozen=True)
class Route:
    action: str  # the permission a read here needs; named in 403 messages
    run: Callable[[Request], Response]


# Role-assignment lists below the tenant root come in one page on ARM: the List For Scope reference says of
# `$skipToken` "Only supported on provider level calls" (learn.microsoft.com/rest/api/authorization/role-assignments/
# list-for-scope), and a subscription holds at most 4,000 of them. The benchmarks serve them that way; tests keep
# the default (every list paged) so the collector's paging of them stays exercised.
ARM_WHOLE_LISTS = frozenset({"roleAssignments"})


class Router:
    def __init__(self, store: EstateStore, page_size: int, whole_lists: frozenset[str] = frozenset()) -> None:
        if page_size < 1:
            raise ValueError("page_size must be >= 1")
        self.store = store
        self.page_size = page_size
        self.whole_lists = whole_lists  # kinds whose lists below the root are served in one page
        self._prepared: OrderedDict[tuple[str, tuple[tuple[str, str], ...]], list[dict[str, Any]]] = OrderedDict()
        self._prepared_lock = threading.Lock()

    # --- entry point ----------------------------------------------------------------------------------------

    def resolve(self, path: str) -> Route:
        """Find the handler for a GET on `path`; raises ArmError for paths ARM would not serve."""
        idx = path.lower().rfind(AUTH_MARK)
        if idx >= 0:
            return self._extension(path[:idx] or "/", path[idx + len(AUTH_MARK) :].split("/"))
        if (group := is_descendants_path(path)) is not None:
            return Route(DESCENDANTS_READ, lambda req: self._descendants(req, group))
        segs = [s for s in path.split("/") if s]
        low = [s.lower() for s in segs]
        if low[:1] != ["subscriptions"]:
            raise not_found("NotFound", f"The emulator does not serve '{path}'.")
        if len(segs) == 1:
            return Route(SUBSCRIPTION_READ, lambda req: self._page(req, self.store.subscription_docs))
        sub = segs[1]
        rest, low_rest = segs[2:], low[2:]
        if not rest:
            return Route(SUBSCRIPTION_READ, lambda req: self._subscription(sub))
        if low_rest[0] == "resourcegroups":
            return self._under_resource_groups(sub, rest[1:], low_rest[1:])
        if low_rest[0] == "providers":
            return self._typed(sub, None, rest[1:])
        raise self._unknown_type(path)

    # --- subscriptions and resource groups ------------------------------------------------------------------

    def _check_sub(self, sub: str) -> None:
        if not self.store.has_subscription(sub):
            raise subscription_not_found(sub)

    def _check_rg(self, sub: str, rg: str) -> None:
        self._check_sub(sub)
        if not self.store.resource_group_known(sub, rg):
            raise resource_group_not_found(rg)

    def _descendants(self, req: Request, group: str) -> Response:
        if not self.store.tenant.has_group(group):
            raise not_found("NotFound", f"The management group '{group}' was not found.")
        return self._page(req, lambda: self.store.tenant.descendants(group))

    def _subscription(self, sub: str) -> Response:
        self._check_sub(sub)
        return json_response(200, self.store.subscription_doc(sub))

    def _under_resource_groups(self, sub: str, rest: list[str], low: list[str]) -> Route:
        action = PERMISSIONS["resourceGroups"]
        if not rest:

            def list_rgs(req: Request) -> Response:
                self._check_sub(sub)
                return self._page(req, lambda: self.store.resource_groups(sub))

            return Route(action, list_rgs)
        rg = rest[0]
        if len(rest) == 1:

            def get_rg(req: Request) -> Response:
                self._check_sub(sub)
                doc = self.store.resource_group_doc(sub, rg)
                if doc is None:
                    raise resource_group_not_found(rg)
                return json_response(200, doc)

            return Route(action, get_rg)
        if low[1] == "providers":
            return self._typed(sub, rg, rest[2:])
        raise self._unknown_type("/".join(rest))

    # --- typed resources: templates, identities, galleries and their children -------------------------------

    def _typed(self, sub: str, rg: str | None, rest: list[str]) -> Route:
        if len(rest) < 2:
            raise self._unknown_type("/".join(rest))
        kind = TYPED_KINDS.get(f"{rest[0]}/{rest[1]}".lower())
        if kind is None:
            raise self._unknown_type(f"{rest[0]}/{rest[1]}")
        tail = rest[2:]
        if not tail:
            return Route(PERMISSIONS[kind], lambda req: self._list_typed(req, kind, sub, rg))
        if rg is None:
            raise self._unknown_type("/".join(rest))  # a named resource always sits in a resource group
        base = f"/subscriptions/{sub}/resourceGroups/{rg}/providers/{rest[0]}/{rest[1]}/{tail[0]}"
        if len(tail) == 1:
            return Route(PERMISSIONS[kind], lambda req: self._get_typed(kind, sub, rg, base, req))
        child = CHILD_KINDS.get((kind, tail[1].lower()))
        if child is None or len(tail) > 3:
            raise self._unknown_type("/".join(rest))
        child_name = tail[2] if len(tail) == 3 else None
        return Route(PERMISSIONS[child], lambda req: self._child(req, kind, child, sub, rg, base, child_name))

    def _list_typed(self, req: Request, kind: str, sub: str, rg: str | None) -> Response:
        if rg is None:
            self._check_sub(sub)
        else:
            self._check_rg(sub, rg)

        def docs() -> list[dict[str, Any]]:
            found = self.store.in_subscription(kind, sub) if rg is None else self.store.in_resource_group(kind, sub, rg)
            if kind == "galleries":
                return [without_sharing_groups(d) for d in found]  # lists never expand them
            return found

        return self._page(req, docs)

    def _get_typed(self, kind: str, sub: str, rg: str, resource_id: str, req: Request | None = None) -> Response:
        self._check_rg(sub, rg)
        doc = self.store.get(kind, resource_id)
        if doc is None:
            raise resource_not_found(ARM_TYPES[kind], resource_id.rsplit("/", 1)[-1], rg)
        if kind == "galleries" and not (req is not None and expands_sharing_groups(req.param("$expand"))):
            doc = without_sharing_groups(doc)
        return json_response(200, doc)

    def _child(self, req: Request, kind: str, child: str, sub: str, rg: str, parent_id: str, name: str | None) -> Response:
        self._get_typed(kind, sub, rg, parent_id)  # the parent must exist (404 names the parent)
        if name is None:
            return self._page(req, lambda: self.store.children(child, parent_id))
        child_id = f"{parent_id}/{ARM_TYPES[child].rsplit('/', 1)[-1]}/{name}"
        doc = self.store.get(child, child_id)
        if doc is None:
            parent_name = parent_id.rsplit("/", 1)[-1]
            raise resource_not_found(ARM_TYPES[child], f"{parent_name}/{name}", rg)
        return json_response(200, doc)

    # --- Microsoft.Authorization extension resources --------------------------------------------------------

    def _extension(self, scope: str, rest: list[str]) -> Route:
        kind = EXTENSION_KINDS.get(rest[0].lower()) if rest else None
        if kind is None or len(rest) > 2:
            raise self._unknown_type("Microsoft.Authorization/" + "/".join(rest))
        action = PERMISSIONS[kind]
        if len(rest) == 2:
            return Route(action, lambda req: self._get_extension(kind, scope, rest[1]))
        if kind == "roleDefinitions":
            return Route(action, lambda req: self._list_role_definitions(req, scope))
        return Route(action, lambda req: self._list_extension(req, kind, scope))

    def _check_scope(self, scope: str) -> None:
        parts = [s for s in scope.split("/") if s]
        if len(parts) >= 2 and parts[0].lower() == "subscriptions":
            self._check_sub(parts[1])

    def _list_extension(self, req: Request, kind: str, scope: str) -> Response:
        self._check_scope(scope)
        flt = parse_scope_filter(req.param("$filter"), kind)
        ancestors = self.store.ancestors

        def docs() -> list[dict[str, Any]]:
            candidates = self.store.scoped(kind, scope)
            return [s.doc for s in candidates if in_view(s.scope, scope, flt, ancestors) and matches(s.doc, flt)]

        whole = kind in self.whole_lists and scope.strip("/") != ""
        return self._page(req, docs, whole=whole)

    def _list_role_definitions(self, req: Request, scope: str) -> Response:
        self._check_scope(scope)
        expression = req.param("$filter")
        filter_role_definitions([], scope, expression)  # an unsupported filter is a 400 on every page, cached or not
        return self._page(
            req, lambda: filter_role_definitions(self.store.all("roleDefinitions"), scope, expression, self.store.ancestors)
        )

    def _get_extension(self, kind: str, scope: str, name: str) -> Response:
        self._check_scope(scope)
        if kind == "roleDefinitions":
            doc = self.store.role_definition(name)  # ARM finds a definition by GUID whatever the prefix
        else:
            doc = self.store.get(kind, f"{scope.rstrip('/')}/providers/Microsoft.Authorization/{kind}/{name}")
        if doc is None:
            if kind == "roleDefinitions":
                raise not_found(_EXTENSION_NOT_FOUND[kind], f"The specified role definition with ID '{name}' does not exist.")
            raise not_found(_EXTENSION_NOT_FOUND[kind], f"The {kind[:-1]} '{name}' does not exist at scope '{scope}'.")
        return json_response(200, doc)

    # --- helpers --------------------------------------------------------------------------------------------

    def _unknown_type(self, what: str) -> ArmError:
        return bad_request("InvalidResourceType", f"The resource type or path '{what}' is not served by the aib-audit emulator.")

    def _page(self, req: Request, compute: Callable[[], list[dict[str, Any]]], *, whole: bool = False) -> Response:
        """One page of the list `compute` gives for this path and query; it is computed once and every page is cut
        from that prepared list. `whole`: the list is one page, however long."""
        if whole:
            return json_response(200, {"value": compute()})
        token = req.param("$skiptoken")
        try:
            start = int(token) if token else 0
        except ValueError:
            raise bad_request("InvalidSkipToken", f"The skip token '{token}' is not valid.") from None
        if start < 0:
            raise bad_request("InvalidSkipToken", f"The skip token '{token}' is not valid.")
        items = self._prepared_list(req, compute)
        end = start + self.page_size
        body: dict[str, Any] = {"value": items[start:end]}
        if end < len(items):
            body["nextLink"] = self._next_link(req, end)
        return json_response(200, body)

    def _prepared_list(self, req: Request, compute: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """The list for (path, query without `$skiptoken`/`api-version`), computed on its first page. Only lists
        longer than a page are kept: a one-page list is never asked for again in the same paging."""
        params = tuple(sorted((k.lower(), v) for k, v in req.params.items() if k.lower() not in UNKEYED))
        key = (req.path.lower(), params)
        with self._prepared_lock:
            items = self._prepared.get(key)
            if items is not None:
                self._prepared.move_to_end(key)
                return items
        items = compute()  # outside the lock: two first pages of different lists are filtered concurrently
        if len(items) > self.page_size:
            with self._prepared_lock:
                self._prepared[key] = items
                while len(self._prepared) > PREPARED_LISTS:
                    self._prepared.popitem(last=False)
        return items

    def _next_link(self, req: Request, start: int, endpoint: str | None = None) -> str:
        pairs = [(k, v) for k, v in req.params.items() if k.lower() not in SKIP_KEYS]
        pairs.append(("$skiptoken", str(start)))
        query = "&".join(f"{quote(k, safe='$')}={quote(v, safe='')}" for k, v in pairs)
        return f"{endpoint or req.endpoint}{quote(req.path, safe='/')}?{query}"

    def page_link(self, req: Request, endpoint: str) -> str:
        """The absolute link to the page `req` asked for, on `endpoint` (faults: self-links, foreign links)."""
        token = req.param("$skiptoken")
        return self._next_link(req, int(token) if token and token.isdigit() else 0, endpoint)


def expands_sharing_groups(expand: str | None) -> bool:
    """`$expand=sharingProfile/Groups` (case-insensitive): ARM returns a gallery's sharing groups only then."""
    return any(part.strip().lower() == "sharingprofile/groups" for part in (expand or "").split(","))


def without_sharing_groups(doc: dict[str, Any]) -> dict[str, Any]:
    """A gallery as ARM answers without the expand: sharingProfile keeps `permissions`, loses `groups`."""
    profile = (doc.get("properties") or {}).get("sharingProfile")
    if not isinstance(profile, dict) or "groups" not in profile:
        return doc
    props = {**doc["properties"], "sharingProfile": {k: v for k, v in profile.items() if k != "groups"}}
    return {**doc, "properties": props}
