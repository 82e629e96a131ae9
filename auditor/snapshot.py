"""The snapshot: what the collector read, as ARM returned it, plus the reads that failed.

The snapshot is the seam between I/O and analysis. The collector writes one, `--snapshot-out` saves it,
`--snapshot` loads it, the emulator serves one, and every fixture estate is one. Format (version 1):

    {
      "format": "aib-audit-snapshot",
      "version": 1,
      "meta": {"tool_version": str, "collected_at": ISO-8601, "arm_endpoint": str, "arm_calls": int,
               "notes": [str], "graph": {"endpoint", "calls", "looked_up", "expand_groups", "group_errors", "notes"}},
      "subscriptions": ["<guid>", ...],          # what was audited
      "resources": {                             # raw ARM documents, each list de-duplicated by id
        "imageTemplates": [...], "triggers": [...], "locks": [...], "resourceGroups": [...],
        "roleAssignments": [...], "roleDefinitions": [...], "denyAssignments": [...],
        "roleEligibilityScheduleInstances": [...], "userAssignedIdentities": [...],
        "galleries": [...], "galleryImages": [...],
        "directoryObjects": [...], "groupMembers": [...]   # optional: Microsoft Graph (see GRAPH_KINDS)
      },
      "errors": [                                # reads that failed; they make checks ERROR
        {"kind": "<one of the resources keys>", "scope": "<ARM id the read was for>",
         "status": 403, "code": "AuthorizationFailed", "message": "...",
         "permission": "Microsoft.Authorization/roleAssignments/read"}
      ],
      "subscriptionAncestors": {                 # optional: management groups and root above each subscription
        "<guid>": ["/providers/Microsoft.Management/managementGroups/mg", "/"]
      }
    }

An error's `scope` says how far it reaches: a failed subscription-wide list (scope `/subscriptions/{s}`)
taints every template in that subscription; a failed trigger list (scope = the template ID) taints one.

`subscriptionAncestors` (optional, added within version 1) lists, per audited subscription, the scopes of the
management-group and root level role assignments, deny assignments and PIM eligibilities that THAT
subscription's own lists returned: ARM returns those only when they sit above the subscription, so they say
which management groups the subscription is under. A management-group or root assignment applies to a
subscription only when its entry lists the scope; a subscription without an entry (older snapshots, hand-made
estates, a subscription whose RBAC lists failed) falls back to "every management group and `/` is above it".
The collector writes an entry (possibly empty) for each audited subscription whose RBAC lists all succeeded.

A snapshot is input from anywhere (a colleague, a CI artifact, `/dev/zero` by mistake), so loading is bounded: at
most `AIB_AUDIT_SNAPSHOT_LIMIT_MB` (default 512) MiB are read, a NUL byte ends the read at once (no JSON text has
one), and arrays and objects may nest at most MAX_DEPTH deep (ARM documents in a snapshot nest about ten deep).
Each is refused with one line (exit 2), in time and memory bounded by the limit.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from auditor import ids
from auditor.errors import UsageError

FORMAT = "aib-audit-snapshot"
VERSION = 1

KINDS: tuple[str, ...] = (
    "imageTemplates",
    "triggers",
    "locks",
    "resourceGroups",
    "roleAssignments",
    "roleDefinitions",
    "denyAssignments",
    "roleEligibilityScheduleInstances",
    "userAssignedIdentities",
    "galleries",
    "galleryImages",
)

# The permission a Reader-level auditor needs for each kind of read; said in ERROR findings.
PERMISSIONS: dict[str, str] = {
    "imageTemplates": "Microsoft.VirtualMachineImages/imageTemplates/read",
    "triggers": "Microsoft.VirtualMachineImages/imageTemplates/triggers/read",
    "locks": "Microsoft.Authorization/locks/read",
    "resourceGroups": "Microsoft.Resources/subscriptions/resourceGroups/read",
    "roleAssignments": "Microsoft.Authorization/roleAssignments/read",
    "roleDefinitions": "Microsoft.Authorization/roleDefinitions/read",
    "denyAssignments": "Microsoft.Authorization/denyAssignments/read",
    "roleEligibilityScheduleInstances": "Microsoft.Authorization/roleEligibilityScheduleInstances/read",
    "userAssignedIdentities": "Microsoft.ManagedIdentity/userAssignedIdentities/read",
    "galleries": "Microsoft.Compute/galleries/read",
    "galleryImages": "Microsoft.Compute/galleries/images/read",
    # Not a resource kind: a subscription found by --management-group / --all-subscriptions that could not be
    # read. It is not audited, and its read error is an ERROR row of its own.
    "subscriptions": "Microsoft.Resources/subscriptions/read",
}
ERROR_KINDS: tuple[str, ...] = (*KINDS, "subscriptions")


# Microsoft Graph documents (graph.py), kept as Graph returned them: `directoryObjects` are what getByIds gave for
# the principals of the role assignments (users, groups, service principals; `@odata.type` says which), and
# `groupMembers` are `{"id": <group>, "transitiveMembers": [<directory objects>]}`, one per group read with
# --expand-groups. Optional: written only when there is something in them, so ARM-only snapshots keep their bytes.
# `meta.graph` (graph.DirectoryRead.meta) says which IDs a successful getByIds was asked about (an ID asked about
# and not returned is a deleted principal) and which groups' members could not be read.
GRAPH_KINDS: tuple[str, ...] = ("directoryObjects", "groupMembers")

ANCESTORS_KEY = "subscriptionAncestors"

LIMIT_ENV = "AIB_AUDIT_SNAPSHOT_LIMIT_MB"
DEFAULT_LIMIT_MB = 512
MAX_DEPTH = 100  # well above any ARM document, well below Python's recursion limit for whatever walks the data
_CHUNK = 1 << 20


class SnapshotError(UsageError):
    """The snapshot file is missing, unreadable or not a valid snapshot (exit 2)."""


def _parse_ancestors(value: Any, source: str) -> dict[str, list[str]]:
    """`subscriptionAncestors`: an object of subscription ID -> list of scope strings (absent or null: empty)."""
    if value is None:
        return {}
    shape = f'{source}: "{ANCESTORS_KEY}" must map subscription IDs to lists of management-group or root scopes'
    if not isinstance(value, dict):
        raise SnapshotError(shape)
    out: dict[str, list[str]] = {}
    for sub, scopes in value.items():
        if not ids.is_guid(sub):
            raise SnapshotError(f"{shape} ({sub!r} is not a subscription ID)")
        if not isinstance(scopes, list) or not all(isinstance(s, str) and s.strip() for s in scopes):
            raise SnapshotError(f"{shape} (entry {sub!r})")
        bad = [s for s in scopes if ids.scope_level(s) not in ("root", "managementGroup")]
        if bad:
            raise SnapshotError(f"{shape} (entry {sub!r} lists {bad[0]!r})")
        out[str(sub)] = list(scopes)
    return out


@dataclass
class ReadError:
    kind: str
    scope: str
    status: int | None
    code: str
    message: str
    permission: str = ""

    def describe(self) -> str:
        status = f"HTTP {self.status}" if self.status else "no response"
        need = f"; needs {self.permission}" if self.permission else ""
        return f"could not read {self.kind} at {self.scope} ({status} {self.code}: {self.message}{need})"

    @property
    def denied(self) -> bool:
        return self.status in (401, 403)

    def reason(self) -> str:
        """What went wrong, in the reader's words: `access denied (needs <permission>)`, `not found`, ..."""
        if self.denied:
            need = self.permission or PERMISSIONS.get(self.kind, "")
            return "access denied" + (f" (needs {need})" if need else "")
        if self.status == 404:
            return "not found"
        return f"HTTP {self.status} {self.code}" if self.status else f"no response ({self.code})"


@dataclass
class Snapshot:
    subscriptions: list[str]
    resources: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {k: [] for k in KINDS})
    errors: list[ReadError] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    # subscription -> management-group / root scopes ARM reported above it (see the module docstring)
    subscription_ancestors: dict[str, list[str]] = field(default_factory=dict)

    # kind -> (the bucket it indexes, its length then, lower-case ID -> position): add() and put() run once per
    # page, and rebuilding the ID set each time made collecting quadratic. Rebuilt when the bucket was replaced or
    # changed length behind their back.
    _ids: dict[str, tuple[list[dict[str, Any]], int, dict[str, int]]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def _index(self, kind: str) -> tuple[list[dict[str, Any]], dict[str, int]]:
        bucket = self.resources.setdefault(kind, [])
        cached = self._ids.get(kind)
        if cached is not None and cached[0] is bucket and cached[1] == len(bucket):
            return bucket, cached[2]
        at: dict[str, int] = {}
        for i, d in enumerate(bucket):
            at.setdefault(str(d.get("id", "")).lower(), i)
        return bucket, at

    def _indexed(self, kind: str, bucket: list[dict[str, Any]], at: dict[str, int]) -> None:
        self._ids[kind] = (bucket, len(bucket), at)

    def add(self, kind: str, docs: list[dict[str, Any]]) -> None:
        """Add raw documents, keeping the first copy of each ID (lists overlap, e.g. atScope + unfiltered)."""
        bucket, at = self._index(kind)
        for doc in docs:
            key = str(doc.get("id", "")).lower()
            if key and key in at:
                continue
            at.setdefault(key, len(bucket))
            bucket.append(doc)
        self._indexed(kind, bucket, at)

    def put(self, kind: str, docs: list[dict[str, Any]]) -> None:
        """Add raw documents, replacing an earlier copy of the same ID (a fuller GET of a listed resource)."""
        bucket, at = self._index(kind)
        for doc in docs:
            key = str(doc.get("id", "")).lower()
            i = at.get(key)
            if i is None:
                at[key] = len(bucket)
                bucket.append(doc)
            else:
                bucket[i] = doc
        self._indexed(kind, bucket, at)

    def add_error(
        self, kind: str, scope: str, status: int | None, code: str, message: str, permission: str | None = None
    ) -> None:
        self.errors.append(
            ReadError(kind, scope, status, code, message, PERMISSIONS.get(kind, "") if permission is None else permission)
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "meta": self.meta,
            "subscriptions": self.subscriptions,
            "resources": {k: self.resources.get(k, []) for k in KINDS}
            | {k: self.resources[k] for k in GRAPH_KINDS if self.resources.get(k)},
            "errors": [asdict(e) for e in self.errors],
        }
        if self.subscription_ancestors:  # optional: snapshots without it stay byte-for-byte what they were
            out[ANCESTORS_KEY] = {sub: list(scopes) for sub, scopes in self.subscription_ancestors.items()}
        return out

    def save(self, path: str | Path) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            write_json_lines(self.to_dict(), fh)

    @classmethod
    def from_dict(cls, data: Any, source: str = "snapshot") -> Snapshot:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise SnapshotError(f'{source} is not an aib-audit snapshot (no "format": "{FORMAT}")')
        if data.get("version") != VERSION:
            raise SnapshotError(f"{source} has snapshot version {data.get('version')!r}; this aib-audit reads {VERSION}")
        subs = data.get("subscriptions")
        if not isinstance(subs, list) or not all(isinstance(s, str) for s in subs):
            raise SnapshotError(f'{source}: "subscriptions" must be a list of subscription IDs')
        raw_errors = data.get("errors")
        listed_errors = raw_errors if isinstance(raw_errors, list) else []
        unreadable = [e for e in listed_errors if isinstance(e, dict) and e.get("kind") == "subscriptions"]
        if not subs and not unreadable:
            # An audit of nothing would exit 0 ("nothing failed"): a scheduled job must not pass that way. (A
            # discovered scope whose every subscription failed to read has none, and exits 3 on those errors.)
            raise SnapshotError(f'{source}: "subscriptions" is empty: the snapshot audits nothing')
        if bad := next((s for s in subs if not ids.is_guid(s)), None):
            raise SnapshotError(f'{source}: "subscriptions" holds {bad!r}, which is not a subscription ID (a GUID)')
        resources = data.get("resources")
        if not isinstance(resources, dict):
            raise SnapshotError(f'{source}: "resources" must be an object')
        out: dict[str, list[dict[str, Any]]] = {}
        for kind in KINDS + tuple(k for k in GRAPH_KINDS if resources.get(k)):  # Graph kinds only when present
            docs = resources.get(kind, [])
            if not isinstance(docs, list) or not all(isinstance(d, dict) for d in docs):
                raise SnapshotError(f"{source}: resources.{kind} must be a list of objects")
            if (i := next((i for i, d in enumerate(docs) if not isinstance(d.get("id"), str) or not d["id"]), None)) is not None:
                raise SnapshotError(f'{source}: resources.{kind}[{i}] has no "id": not an ARM document')
            out[kind] = docs
        unknown = set(resources) - set(KINDS) - set(GRAPH_KINDS)
        if unknown:
            raise SnapshotError(f"{source}: unknown resource kinds {sorted(unknown)}")
        errors = [_parse_error(e, i, source) for i, e in enumerate(_as_list(data.get("errors"), "errors", source))]
        meta = data.get("meta") or {}
        if not isinstance(meta, dict):
            raise SnapshotError(f'{source}: "meta" must be an object')
        ancestors = _parse_ancestors(data.get(ANCESTORS_KEY), source)
        return cls(subscriptions=list(subs), resources=out, errors=errors, meta=dict(meta), subscription_ancestors=ancestors)

    @classmethod
    def load(cls, path: str | Path, limit_bytes: int | None = None) -> Snapshot:
        p = Path(path)
        limit = size_limit() if limit_bytes is None else limit_bytes
        try:
            text = _read_bounded(p, limit).decode("utf-8")
        except FileNotFoundError:
            raise SnapshotError(f"snapshot file not found: {p}") from None
        except IsADirectoryError:
            raise SnapshotError(f"snapshot path is a directory, not a file: {p}") from None
        except PermissionError:
            raise SnapshotError(f"snapshot file is not readable (permission denied): {p}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SnapshotError(f"cannot read snapshot file {p}: {exc}") from None
        too_deep = f"snapshot file {p} nests arrays or objects more than {MAX_DEPTH} deep: not an aib-audit snapshot"
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SnapshotError(f"snapshot file {p} is not valid JSON (line {exc.lineno}: {exc.msg})") from None
        except RecursionError:  # the C parser stops at Python's recursion limit: far deeper than MAX_DEPTH
            raise SnapshotError(too_deep) from None
        except ValueError as exc:  # an integer longer than Python's 4,300-digit limit
            raise SnapshotError(f"snapshot file {p} does not parse: {' '.join(str(exc).split())}") from None
        del text
        if nesting_depth(data, MAX_DEPTH) > MAX_DEPTH:
            raise SnapshotError(too_deep)
        return cls.from_dict(data, source=str(p))


def size_limit() -> int:
    """The most bytes a snapshot may have: AIB_AUDIT_SNAPSHOT_LIMIT_MB MiB (default 512)."""
    raw = os.environ.get(LIMIT_ENV, "").strip()
    if not raw:
        return DEFAULT_LIMIT_MB << 20
    try:
        mb = int(raw)
    except ValueError:
        mb = 0
    if mb < 1:
        raise SnapshotError(f"{LIMIT_ENV} must be a whole number of MiB (1 or more), not {raw!r}")
    return mb << 20


def _read_bounded(p: Path, limit: int) -> bytearray:
    """The file's bytes, reading at most `limit` + 1 of them, so a huge or endless file ends the read at once."""
    buf = bytearray()
    with p.open("rb") as fh:
        while chunk := fh.read(min(_CHUNK, limit + 1 - len(buf))):
            if b"\0" in chunk:  # /dev/zero, a disk image, UTF-16: never a UTF-8 JSON text
                raise SnapshotError(f"snapshot file {p} is not a JSON text (it holds NUL bytes)")
            buf += chunk
            if len(buf) > limit:
                raise SnapshotError(
                    f"snapshot file {p} is larger than {limit >> 20 or limit} {'MiB' if limit >> 20 else 'bytes'}, "
                    f"the snapshot size limit (set {LIMIT_ENV} to allow more)"
                )
    return buf


def nesting_depth(data: Any, stop_at: int) -> int:
    """How deep arrays and objects nest in `data` (a scalar is 0), walked without recursion; stops past `stop_at`."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(data, 1)] if isinstance(data, (dict, list)) else []
    while stack:
        node, depth = stack.pop()
        if depth > deepest:
            deepest = depth
            if deepest > stop_at:
                break
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return deepest


def _as_list(value: Any, key: str, source: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise SnapshotError(f'{source}: "{key}" must be a list')
    return value


def _parse_error(e: Any, i: int, source: str) -> ReadError:
    """One recorded failed read; wrong types are the snapshot's fault (exit 2), never a crash later on."""
    where = f"{source}: errors[{i}]"
    if not isinstance(e, dict):
        raise SnapshotError(f"{where} must be an object")
    if e.get("kind") not in ERROR_KINDS:
        raise SnapshotError(f"{where}: kind {e.get('kind')!r} is not one of {', '.join(ERROR_KINDS)}")
    status = e.get("status")
    if status is not None and (not isinstance(status, int) or isinstance(status, bool)):
        raise SnapshotError(f"{where}: status must be an HTTP status code or null")
    for key in ("scope", "code", "message", "permission"):
        if not isinstance(e.get(key, ""), str) or (key == "scope" and not e.get(key)):
            raise SnapshotError(f"{where}: {key} must be a string" + (" (the ARM ID the read was for)" if key == "scope" else ""))
    return ReadError(e["kind"], e["scope"], status, e.get("code", ""), e.get("message", ""), e.get("permission", ""))


def write_json_lines(data: dict[str, Any], out: TextIO) -> None:
    """`data` as JSON with each ARM document (each item of a top-level list, or of a list under a top-level
    object such as `resources`) on a line of its own: diffable and greppable, and each line comes from the C
    encoder. `json.dumps(indent=...)` runs the pure-Python one: 5 s for the 116 MiB of 300 x 30 templates, against
    under 2 s this way. `json.loads` reads either form."""
    encode = json.JSONEncoder().encode

    def items(values: list[Any], pad: str) -> None:
        if not values:
            out.write("[]")
            return
        out.write("[\n")
        last = len(values) - 1
        for i, v in enumerate(values):
            out.write(pad + encode(v) + (",\n" if i < last else "\n"))
        out.write(pad[:-1] + "]")

    out.write("{\n")
    keys = list(data)
    for n, key in enumerate(keys):
        value = data[key]
        out.write(f" {encode(key)}: ")
        if isinstance(value, list):
            items(value, "  ")
        elif isinstance(value, dict) and value and all(isinstance(v, list) for v in value.values()):
            out.write("{\n")
            inner = list(value)
            for m, name in enumerate(inner):
                out.write(f"  {encode(name)}: ")
                items(value[name], "   ")
                out.write(",\n" if m < len(inner) - 1 else "\n")
            out.write(" }")
        else:
            out.write(encode(value))
        out.write(",\n" if n < len(keys) - 1 else "\n")
    out.write("}\n")
