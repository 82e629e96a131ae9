"""The directory view: who each principal is (Microsoft Graph), which ones are deleted, and who is in each group.

Built from a snapshot's `directoryObjects`, `groupMembers` and `meta.graph` (graph.py wrote them). Checks and the
runner see only these dataclasses. Everything here is an addition to ARM's answer: an empty Directory (Graph not
read, or a snapshot without it) changes no verdict.

- A principal is *deleted* only when a getByIds call that succeeded was asked about it and did not return it
  (`meta.graph.looked_up`). A failed or skipped lookup says nothing about anyone.
- With --expand-groups a group's members are its `transitiveMembers` (complete, whatever the nesting). The path
  "through G > H" is derived from the transitive lists of the nested groups too: a member of G that is in no
  nested group's list is a direct member; otherwise the path runs through the nested group (shortest first).
  When a nested group's own list could not be read, the path stops at the deepest group known.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

GROUP = "group"
USER = "user"
SERVICE_PRINCIPAL = "servicePrincipal"


@dataclass(frozen=True)
class Principal:
    id: str  # lower case
    kind: str  # user | group | servicePrincipal | device | orgContact ... (from @odata.type)
    name: str  # displayName
    upn: str = ""  # users: userPrincipalName
    app_id: str = ""  # service principals (applications, managed identities)
    sp_type: str = ""  # servicePrincipalType: Application | ManagedIdentity | Legacy | SocialIdp
    mail_nickname: str = ""  # groups

    @property
    def is_group(self) -> bool:
        return self.kind.lower() == GROUP

    @property
    def label(self) -> str:
        """`user Alice Example (alice@contoso.com)`, `service principal sp-x (ManagedIdentity)`, `group grp-x`."""
        kind = {USER: "user", GROUP: "group", SERVICE_PRINCIPAL: "service principal"}.get(self.kind, self.kind or "principal")
        extra = self.upn or self.sp_type
        return f"{kind} {self.name or self.id}" + (f" ({extra})" if extra else "")

    def evidence(self) -> dict[str, str]:
        out = {"id": self.id, "type": self.kind, "display_name": self.name}
        extra = {"upn": self.upn, "app_id": self.app_id, "sp_type": self.sp_type, "mail_nickname": self.mail_nickname}
        out.update({k: v for k, v in extra.items() if v})
        return out


def _s(value: Any) -> str:
    return value if isinstance(value, str) else ""


def parse_directory_object(obj: dict[str, Any]) -> Principal:
    return Principal(
        id=_s(obj.get("id")).lower(),
        kind=_s(obj.get("@odata.type")).rsplit(".", 1)[-1],
        name=_s(obj.get("displayName")),
        upn=_s(obj.get("userPrincipalName")),
        app_id=_s(obj.get("appId")),
        sp_type=_s(obj.get("servicePrincipalType")),
        mail_nickname=_s(obj.get("mailNickname")),
    )


@dataclass
class Directory:
    objects: dict[str, Principal] = field(default_factory=dict)
    looked_up: frozenset[str] = frozenset()  # IDs a successful getByIds was asked about
    members: dict[str, tuple[Principal, ...]] = field(default_factory=dict)  # group -> transitive members
    group_errors: dict[str, str] = field(default_factory=dict)  # group -> why its members could not be read
    expand: bool = False  # --expand-groups: groups are judged by their members
    foreign: set[str] = field(default_factory=set)  # principals of another tenant: never "deleted" (inventory.py)
    # Derived once (rows ask again for every template and check): every principal seen, direct members, paths.
    _known: dict[str, Principal] = field(default_factory=dict, init=False, repr=False, compare=False)
    _direct_cache: dict[str, set[str] | None] = field(default_factory=dict, init=False, repr=False, compare=False)
    _trees: dict[str, tuple[dict[str, str | None], dict[str, str]]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _evidence: dict[str, dict[str, str]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.reindex()

    def reindex(self) -> None:
        """Rebuild the derived indexes (after `members` or `objects` changed)."""
        self._known = {m.id: m for members in self.members.values() for m in members}
        self._known.update(self.objects)
        self._direct_cache.clear()
        self._trees.clear()
        self._evidence.clear()

    def principal(self, pid: str) -> Principal | None:
        return self.objects.get(pid.lower())

    def evidence_of(self, p: Principal) -> dict[str, str]:
        """`p.evidence()`, one dict per principal shared by all its rows (reports only read it): a dict per row
        was about 80 MiB of a live 10,000-template audit (668,000 rows)."""
        found = self._evidence.get(p.id)
        if found is None:
            found = self._evidence[p.id] = p.evidence()
        return found

    def is_deleted(self, pid: str) -> bool:
        key = pid.lower()
        return key in self.looked_up and key not in self.objects and key not in self.foreign

    def members_of(self, gid: str) -> tuple[Principal, ...] | None:
        """The group's transitive members, or None when they were not read."""
        return self.members.get(gid.lower())

    def unreadable_reason(self, gid: str, arm_type: str = "") -> str:
        if arm_type.lower() == "foreigngroup":
            return "it is a group of another tenant (ForeignGroup): this tenant's Microsoft Graph cannot list its members"
        why = self.group_errors.get(gid.lower())
        if why:
            return f"its members could not be read from Microsoft Graph ({why})"
        return "its members were not read from Microsoft Graph (collected without --expand-groups, or Graph was off)"

    def path(self, gid: str, member_id: str) -> list[str]:
        """Group IDs from `gid` down to the group that holds `member_id` directly (as far as known)."""
        start = gid.lower()
        if start not in self._trees:
            self._trees[start] = self._tree(start)
        parents, holder = self._trees[start]
        chain: list[str] = []
        node: str | None = holder.get(member_id.lower(), start)
        while node is not None:
            chain.append(node)
            node = parents.get(node)
        return chain[::-1]

    def _tree(self, start: str) -> tuple[dict[str, str | None], dict[str, str]]:
        """Breadth first from `start` over direct membership: each nested group's parent, and for each member the
        first group (fewest hops) that holds it directly. One walk per group, shared by all its members."""
        parents: dict[str, str | None] = {start: None}
        holder: dict[str, str] = {}
        queue = deque([start])
        while queue:
            g = queue.popleft()
            for child in sorted(self._direct(g) or ()):
                holder.setdefault(child, g)
                p = self._known.get(child)
                if child not in parents and p is not None and p.is_group:
                    parents[child] = g
                    queue.append(child)
        return parents, holder

    def _direct(self, gid: str) -> set[str] | None:
        """Members of `gid` that no nested group (whose list is known) also holds: its direct members, or a subset."""
        if gid not in self._direct_cache:
            self._direct_cache[gid] = self._direct_members(gid)
        return self._direct_cache[gid]

    def _direct_members(self, gid: str) -> set[str] | None:
        members = self.members.get(gid)
        if members is None:
            return None
        ids = {m.id for m in members}
        nested = set()
        for m in members:
            if m.is_group and (inner := self.members.get(m.id)) is not None:
                nested |= {x.id for x in inner}
        return ids - nested

    def name(self, pid: str) -> str:
        """The display name of any principal seen (a rights holder, or a member of a group read), else the ID."""
        p = self._known.get(pid.lower())
        return p.name if p and p.name else pid


def build_directory(resources: dict[str, list[dict[str, Any]]], meta: dict[str, Any], expand: bool = False) -> Directory:
    objects = {p.id: p for p in map(parse_directory_object, resources.get("directoryObjects", [])) if p.id}
    members: dict[str, tuple[Principal, ...]] = {}
    for doc in resources.get("groupMembers", []):
        listed = doc.get("transitiveMembers")
        if isinstance(listed, list):
            parsed = tuple(p for p in (parse_directory_object(m) for m in listed if isinstance(m, dict)) if p.id)
            members[_s(doc.get("id")).lower()] = parsed
    graph = meta.get("graph") if isinstance(meta.get("graph"), dict) else {}
    assert isinstance(graph, dict)
    looked_up = frozenset(str(i).lower() for i in graph.get("looked_up", []) if isinstance(i, str))
    errors = graph.get("group_errors") if isinstance(graph.get("group_errors"), dict) else {}
    assert isinstance(errors, dict)
    return Directory(
        objects=objects,
        looked_up=looked_up,
        members=members,
        group_errors={str(k).lower(): str(v) for k, v in errors.items()},
        expand=expand,
    )
