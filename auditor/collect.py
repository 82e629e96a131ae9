"""The collector: bulk, read-only ARM reads of one or more subscriptions into a Snapshot.

Reads are subscription-wide and joined in memory later, so the number of ARM calls is
`templates (their triggers) + a small constant`, never a multiple of the templates:

  phase 0  the scope (auditor/discover.py): GET each named subscription in parallel (fails the run early:
           unknown subscription, no credential, no endpoint); discover management-group descendants or every
           subscription, narrowed by Resource Graph; a discovered subscription that cannot be read is an error
  phase 1  per subscription: image templates, locks (at and below), resource groups, role assignments
           (unfiltered, and atScope() for management-group and root ones), deny assignments, PIM
           eligibilities, custom role definitions, user-assigned identities, galleries; once per run, the
           built-in role definitions (tenant scope `/`: they are the same in every subscription); the
           management-group and root scopes the RBAC lists returned are kept as the subscription's ancestors
  phase 2  what phase 1 points at: triggers per template (each started as soon as the template-list page that
           holds the template arrives, applied only once the whole list was read), staging RGs not in the RG list, role
           definitions that were not listed (custom roles defined at a management group), identities and
           target galleries not listed (often in another subscription), image definitions and, outside the
           audited subscriptions, the locks of every target gallery; a listed target gallery shared to Groups
           is read again with `$expand=sharingProfile/Groups` (lists never carry whom it is shared with), and
           that body replaces the listed one

Documents are kept as ARM returned them: lists are paged raw through the SDK clients' pipelines (auditor.reads:
the SDK builds each request, nothing is deserialized into models) and their `value` items stored; a single GET's
body is captured with the per-operation `raw_response_hook`. A read that fails is recorded in the snapshot and the
run goes on. Reads queue per subscription and are paced to each subscription's ARM bucket (auditor.pacing,
auditor.workers), so a throttled subscription never idles the others.
"""

from __future__ import annotations

import functools
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from azure.core.credentials import TokenCredential

from auditor import DEFAULT_ARM_ENDPOINT, __version__, discover, ids
from auditor.azure import ArmClients
from auditor.documents import Template, parse_template
from auditor.errors import SubscriptionError
from auditor.graph import GraphSettings, collect_directory
from auditor.limits import DEFAULT_WORKERS, Limits
from auditor.pacing import Pacer
from auditor.rbac_documents import assignment_scope, role_definition_of
from auditor.reads import Outcome as _Outcome
from auditor.reads import Read as _Read
from auditor.reads import ReadRunner
from auditor.scope import ScopeSpec
from auditor.snapshot import Snapshot
from auditor.workers import DaemonPool, Task

Progress = Callable[[str], None]
Doc = dict[str, Any]


def _sharing(doc: Doc) -> Doc:
    props = doc.get("properties")
    profile = props.get("sharingProfile") if isinstance(props, dict) else None
    return profile if isinstance(profile, dict) else {}


# --------------------------------------------------------------------------------------------- the collector


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def collect(
    subscriptions: list[str] | ScopeSpec,
    credential: TokenCredential,
    *,
    arm_endpoint: str = DEFAULT_ARM_ENDPOINT,
    connection_verify: bool | str = True,
    max_workers: int = DEFAULT_WORKERS,
    progress: Progress | None = None,
    retry_options: dict[str, Any] | None = None,
    limits: Limits | None = None,
    graph: GraphSettings | None = None,
    early: Callable[[Snapshot, Callable[[], bool]], None] | None = None,
) -> Snapshot:
    """Read every subscription in scope into a Snapshot (raw ARM documents plus the reads that failed).

    `subscriptions` is a list of named subscriptions (`-s`) or a ScopeSpec (management groups, all subscriptions,
    exclusions, Resource Graph; see auditor.scope). Raises SubscriptionError, EndpointError or CredentialError
    (exit 2) only for what makes the whole run pointless; everything else is recorded in `snapshot.errors`,
    including reads that ran out of time (`limits`: the run, each read, each request, each wait) and discovered
    subscriptions that could not be read. With `graph` (graph.settings), the principals' names (and, with
    expand_groups, group members) are then read from Microsoft Graph; its failures are notes in `snapshot.meta`,
    never read errors (Graph is enrichment). `retry_options` are passed to the SDK's RetryPolicy (e.g.
    `retry_backoff_factor`); by default its own defaults apply, within the limits. `early(snapshot, over)` is
    called (in this thread) once everything but the templates' trigger lists is in `snapshot`, while those are
    read: the audit runs the checks that need no trigger then (auditor.audit.StagedAudit), until `over()` (the
    trigger reads are done, or the run is out of time). It must not keep the snapshot's lists (the trigger reads'
    outcomes are added to it afterwards); it may empty those of other kinds once it has parsed them.
    """
    spec = subscriptions if isinstance(subscriptions, ScopeSpec) else ScopeSpec(tuple(ids.subscription_ids(subscriptions)))
    if not spec.subscriptions and not spec.discovers:
        raise SubscriptionError("no subscription to audit")
    limits = limits or Limits()
    run_deadline = time.monotonic() + limits.run_timeout_s
    say = progress or (lambda _msg: None)
    started = _now()
    # Daemon workers: a read stuck on a socket never keeps a finished, timed-out or interrupted run alive. Reads
    # queue per subscription and are paced to each subscription's ARM bucket (auditor.pacing).
    pacer = Pacer(max_pause_s=limits.max_retry_after_s)
    pool = DaemonPool(max_workers, ready=pacer.ready_at)
    pacer.wake = pool.wake
    try:
        with ArmClients(credential, arm_endpoint, connection_verify, retry_options, limits, pacer) as arm:
            runner = ReadRunner(pool, arm.endpoint, limits, run_deadline)
            scope, unreadable = discover.resolve(arm, spec, pool, runner, say)
            snap = Snapshot(subscriptions=scope.audited)
            for sub, f in unreadable:
                snap.add_error(discover.SUBSCRIPTIONS_KIND, f"/subscriptions/{sub}", f.status, f.code, f.message)
            if scope.audited:
                collector = _Collector(arm, snap, runner, say)
                collector.subscription_wide(scope.audited)

                def directory() -> None:  # names (and group members) from Microsoft Graph
                    if graph is not None:
                        collect_directory(
                            snap, graph, credential, connection_verify, retry_options, limits, run_deadline, say, max_workers
                        )

                def meanwhile(over: Callable[[], bool]) -> None:  # while ARM paces the trigger reads
                    if early is not None:
                        directory()  # the early audit names principals (Graph has its own quota)
                        early(snap, over)

                collector.follow_references(meanwhile)
                if early is None:  # after the ARM reads, one at a time: a recording keeps its order
                    directory()
            snap.meta = {
                **snap.meta,  # notes the collector left (lists answered "none can exist")
                "tool_version": __version__,
                "collected_at": started,
                "finished_at": _now(),
                "arm_endpoint": arm.endpoint,
                "arm_calls": arm.counter.calls,
                "throttled": arm.counter.throttled,
            }
            if spec.discovers:
                snap.meta["scope"] = scope.to_meta()
    finally:
        pool.shutdown()  # never waits for a worker still on a socket
    say(f"collected in {snap.meta['arm_calls']} ARM calls")
    return snap


def _parsed(doc: Doc, parsed: dict[int, tuple[Doc, Template]]) -> Template:
    hit = parsed.get(id(doc))
    return hit[1] if hit is not None and hit[0] is doc else parse_template(doc)


def _rg_and_name(resource_id: str) -> tuple[str, str]:
    return ids.resource_group_of(resource_id) or "", ids.name_of(resource_id)


BUILTIN_ROLES = "type eq 'BuiltInRole'"
CUSTOM_ROLES = "type eq 'CustomRole'"

# RBAC lists whose management-group and root entries say what is above a subscription.
_ANCESTOR_KINDS = ("roleAssignments", "denyAssignments", "roleEligibilityScheduleInstances")


class _Collector:
    def __init__(self, arm: ArmClients, snap: Snapshot, runner: ReadRunner, say: Progress) -> None:
        self.arm = arm
        self.snap = snap
        self.runner = runner
        self.say = say
        self.audited = {s.lower() for s in snap.subscriptions}
        self.failed_lists: set[tuple[str, str]] = set()  # (kind, subscription) whose subscription-wide list failed
        self.recorded: set[tuple[str, str, int | None, str]] = set()
        # Trigger reads started as their template's list page arrived, by template ID (see _early_triggers).
        self.early: dict[str, deque[tuple[_Read, Task[_Outcome]]]] = {}
        # Templates the page hook parsed, by id() of their document (kept with it, so the id cannot be reused):
        # follow_references needs the same parse, and at 9,000 templates a second one cost the main thread 2 s.
        self.parsed: dict[int, tuple[Doc, Template]] = {}
        self._early_lock = threading.Lock()

    # ----------------------------------------------------------------------------------------- running reads

    def _run_all(
        self, reads: list[_Read], counted: int = 0, label: str = "", tasks: list[Task[_Outcome]] | None = None
    ) -> list[_Outcome]:
        """Run reads concurrently (bounded by the pool and the deadlines); apply outcomes in submission order
        (deterministic). The first `counted` reads are reported as they finish: "<label> 12/40"."""
        step = max(1, counted // 20)
        done = 0

        def on_done(index: int) -> None:
            nonlocal done
            if index < counted:
                done += 1
                if done == counted or done % step == 0:
                    self.say(f"{label} {done}/{counted}")

        outcomes = self.runner.run(reads, on_done) if tasks is None else self.runner.wait(reads, tasks, on_done)
        for out in outcomes:
            self._apply(out)
        return outcomes

    def _apply(self, out: _Outcome) -> None:
        r = out.read
        if out.failure is None:
            (self.snap.put if r.replace else self.snap.add)(r.kind, out.docs)
            if out.note:
                self.snap.meta.setdefault("notes", []).append(out.note)
            return
        f = out.failure
        key = (r.kind, ids.norm(r.scope), f.status, f.code)
        if key in self.recorded:  # e.g. both role-assignment lists refused with the same 403
            return
        self.recorded.add(key)
        self.snap.add_error(r.kind, r.scope, f.status, f.code, f.message)
        if ids.scope_level(r.scope) in ("subscription", "root") and not r.single:
            self.failed_lists.add((r.kind, ids.subscription_of(r.scope) or ""))  # "" is the tenant-wide list

    def _list_failed(self, kind: str, resource_id: str) -> bool:
        return (kind, ids.subscription_of(resource_id) or "") in self.failed_lists

    def _docs(self, kind: str) -> list[Doc]:
        return self.snap.resources.get(kind, [])

    def _known(self, kind: str) -> set[str]:
        return {ids.norm(str(d.get("id", ""))) for d in self._docs(kind)}

    # ----------------------------------------------------------------------------------------- phase 1

    def subscription_wide(self, subs: list[str]) -> None:
        # Built-in roles are the same everywhere, and ARM would repeat all of them (~500) in every subscription's
        # list: read them once at `/`, and only custom roles per subscription.
        auth = self.arm.authorization(subs[0])
        builtin = _Read(
            "roleDefinitions", "/", auth.role_definitions.list, ("/",), {"filter": BUILTIN_ROLES}, label="built-in roles"
        )
        # Each subscription's reads are queued as soon as they are built: building every subscription's first (six
        # SDK clients each) kept 300 subscriptions' workers idle for seconds. A subscription's lists are queued
        # together, before any can run: the template list's pages then queue trigger reads behind them, not among
        # them (phase 2 and the early audit wait for these lists, and a recording keeps one order).
        reads: list[_Read] = []
        tasks: list[Task[_Outcome]] = []
        for batch in itertools.chain([[builtin]], (self._subscription_reads(sub) for sub in subs)):
            for r in batch:
                self.say(f"listing {r.label} in {ids.subscription_of(r.scope)}")
                reads.append(r)
                tasks.append(self.runner.submit(r))
        self._record_ancestors(subs, self._run_all(reads, tasks=tasks))

    def _record_ancestors(self, subs: list[str], outcomes: list[_Outcome]) -> None:
        """Keep, per subscription, the management-group and root scopes its own RBAC lists returned.

        ARM lists those only when they sit above the subscription, so they tell which management groups it is
        under (an assignment at mg-a must not count in a subscription under mg-b). A subscription with a failed
        RBAC list gets no entry: what it would have shown is unknown, and without an entry every management
        group applies to it (fail closed).
        """
        found: dict[str, dict[str, str]] = {sub: {} for sub in subs}
        failed: set[str] = set()
        for out in outcomes:
            r = out.read
            sub = ids.subscription_of(r.scope) or ""
            if r.kind not in _ANCESTOR_KINDS or r.single or sub not in found:
                continue
            if out.failure is not None:
                failed.add(sub)
                continue
            for doc in out.docs:  # only the scope is needed here: the inventory parses the documents
                scope = assignment_scope(doc)
                if ids.is_above_subscription(scope):
                    found[sub].setdefault(ids.norm(scope), scope)
        for sub, scopes in found.items():
            if sub not in failed:
                self.snap.subscription_ancestors[sub] = list(scopes.values())

    def _subscription_reads(self, sub: str) -> list[_Read]:
        scope = f"/subscriptions/{sub}"
        ib = self.arm.imagebuilder(sub)
        auth = self.arm.authorization(sub)
        res = self.arm.resources(sub)
        locks = self.arm.locks(sub)
        msi = self.arm.msi(sub)
        return [
            _Read(
                "imageTemplates",
                scope,
                ib.virtual_machine_image_templates.list,
                label="image templates",
                on_page=self._early_triggers,
            ),
            _Read("locks", scope, locks.management_locks.list_at_subscription_level, label="locks"),
            _Read("resourceGroups", scope, res.resource_groups.list, label="resource groups"),
            _Read("roleAssignments", scope, auth.role_assignments.list_for_subscription, label="role assignments"),
            # atScope() at the subscription: assignments at or above it (management groups, root).
            _Read(
                "roleAssignments",
                scope,
                auth.role_assignments.list_for_scope,
                (scope,),
                {"filter": "atScope()"},
                label="inherited role assignments",
            ),
            _Read("denyAssignments", scope, auth.deny_assignments.list, label="deny assignments"),
            _Read(
                "roleEligibilityScheduleInstances",
                scope,
                auth.role_eligibility_schedule_instances.list_for_scope,
                (scope,),
                label="PIM eligibilities",
            ),
            _Read(
                "roleDefinitions", scope, auth.role_definitions.list, (scope,), {"filter": CUSTOM_ROLES}, label="custom roles"
            ),
            _Read("userAssignedIdentities", scope, msi.user_assigned_identities.list_by_subscription, label="identities"),
            _Read("galleries", scope, functools.partial(self._galleries, sub), label="galleries"),
        ]

    def _galleries(self, sub: str, **kwargs: Any) -> Any:
        # The compute client is made in the read's worker: its SDK takes 0.25 s to import, which made here held
        # every list of the first subscription back while its bucket sat full.
        return self.arm.compute(sub).galleries.list(**kwargs)

    # ----------------------------------------------------------------------------------------- phase 2

    def _early_triggers(self, docs: list[Doc]) -> None:
        """The template list's page hook (in its worker): start each listed template's trigger read now, rather
        than after every subscription-wide list. Its outcome is only applied if the whole template list is read:
        a list that fails later leaves no trigger of its templates behind (follow_references drops them)."""
        for doc in docs:
            if not doc.get("id"):
                continue
            template = parse_template(doc)
            read = self._trigger_read(template)
            task = self.runner.submit(read)
            with self._early_lock:
                self.early.setdefault(ids.norm(read.scope), deque()).append((read, task))
                self.parsed[id(doc)] = (doc, template)

    def follow_references(self, meanwhile: Callable[[Callable[[], bool]], None] | None = None) -> None:
        """Phase 2: each template's triggers, and what the templates name that the lists did not hold.
        `meanwhile(over)` runs (in this thread) once all but the trigger reads are in; `over()` says when they are
        done too, or the run is out of time: then it should return, and leave what is left for later."""
        # The inventory's own parser reads the references (pure JSON -> dataclasses): one reading of a template.
        with self._early_lock:
            early, self.early = self.early, {}
            parsed, self.parsed = self.parsed, {}
        templates = [_parsed(d, parsed) for d in self._docs("imageTemplates") if d.get("id")]
        trigger_reads: list[_Read] = []
        tasks: list[Task[_Outcome]] = []
        for t in templates:
            started = early.get(ids.norm(t.id))
            read, task = started.popleft() if started else (None, None)
            if read is None or task is None:  # a list paged the SDK's way: no page hook ran
                read = self._trigger_read(t)
                task = self.runner.submit(read)
            trigger_reads.append(read)
            tasks.append(task)
        for leftover in early.values():  # templates of a list that failed: not in the snapshot, not read
            for _read, task in leftover:
                self.runner.pool.abandon(task)
        others = self._staging_rg_reads(templates) + self._role_definition_reads() + self._identity_reads(templates)
        others += self._gallery_reads(templates)
        # Ahead of the trigger reads still queued: once they are in, everything but the triggers is known, and
        # `meanwhile` can work while ARM's bucket paces the trigger tail (one read per template).
        self._run_all(others, tasks=self.runner.submit_first(others))
        if meanwhile is not None:
            meanwhile(self._all_done(tasks))
        if trigger_reads:
            self.say(f"listing triggers of {len(trigger_reads)} image templates")
        self._run_all(trigger_reads, counted=len(trigger_reads), label="triggers", tasks=tasks)

    def _all_done(self, tasks: list[Task[_Outcome]]) -> Callable[[], bool]:
        """A cheap test (asked once per template audited early) of whether every task finished or time ran out."""
        left = [len(tasks)]
        lock = threading.Lock()

        def one_done(_future: object) -> None:
            with lock:
                left[0] -= 1

        for task in tasks:
            task.future.add_done_callback(one_done)  # runs at once for a task already done
        return lambda: left[0] <= 0 or self.runner.expired()

    def _trigger_read(self, template: Template) -> _Read:
        tid = template.id
        rg, name = _rg_and_name(tid)
        ib = self.arm.imagebuilder(ids.subscription_of(tid) or "")
        return _Read("triggers", tid, ib.triggers.list_by_image_template, (rg, name))

    def _staging_rg_reads(self, templates: list[Template]) -> list[_Read]:
        known = self._known("resourceGroups")
        wanted: dict[str, str] = {}
        for t in templates:
            if not t.staging_rg_id:
                continue
            rg_id = "/" + t.staging_rg_id.strip().strip("/")
            key = ids.norm(rg_id)
            if ids.scope_level(rg_id) != "resourceGroup" or key in known or self._list_failed("resourceGroups", rg_id):
                continue
            wanted.setdefault(key, rg_id)
        reads = []
        for rg_id in wanted.values():
            res = self.arm.resources(ids.subscription_of(rg_id) or "")
            name = ids.resource_group_of(rg_id) or ""
            reads.append(_Read("resourceGroups", rg_id, res.resource_groups.get, (name,), single=True))
        return reads

    def _role_definition_reads(self) -> list[_Read]:
        listed = {ids.name_of(str(d.get("id", ""))).lower() for d in self._docs("roleDefinitions")}
        wanted: dict[str, str] = {}
        for kind in ("roleAssignments", "roleEligibilityScheduleInstances"):
            for doc in self._docs(kind):  # the two fields needed, not a parse of each of (at 300 subscriptions) 100,000
                named = role_definition_of(doc)
                rd_id, guid = named.strip(), ids.name_of(named).lower()
                if not guid or guid in listed or guid in wanted:
                    continue
                # A failed list is already an error that covers its subscription (the built-in list at `/`: every
                # subscription); don't GET around it.
                if any(self._list_failed("roleDefinitions", where) for where in (rd_id, assignment_scope(doc), "/")):
                    continue
                wanted[guid] = rd_id
        reads = []
        for rd_id in wanted.values():
            sub = ids.subscription_of(rd_id) or next(iter(self.snap.subscriptions))
            auth = self.arm.authorization(sub)
            reads.append(_Read("roleDefinitions", rd_id, auth.role_definitions.get_by_id, (rd_id,), single=True))
        return reads

    def _identity_reads(self, templates: list[Template]) -> list[_Read]:
        known = self._known("userAssignedIdentities")
        wanted: dict[str, str] = {}
        for t in templates:
            for ident in [*t.identity_ids, *t.build_vm_identity_ids]:
                ident_id = "/" + str(ident).strip().strip("/")
                key = ids.norm(ident_id)
                if key in known or key in wanted or not ids.subscription_of(ident_id):
                    continue
                if self._list_failed("userAssignedIdentities", ident_id):
                    continue
                wanted[key] = ident_id
        reads = []
        for ident_id in wanted.values():
            msi = self.arm.msi(ids.subscription_of(ident_id) or "")
            rg, name = _rg_and_name(ident_id)
            reads.append(_Read("userAssignedIdentities", ident_id, msi.user_assigned_identities.get, (rg, name), single=True))
        return reads

    def _target_galleries(self, templates: list[Template]) -> dict[str, str]:
        out: dict[str, str] = {}
        for d in (d for t in templates for d in t.gallery_distributions):
            gid = "/" + d.gallery_id.strip("/") if d.gallery_id else None
            if gid and ids.subscription_of(gid):
                out.setdefault(ids.norm(gid), gid)
        return out

    def _gallery_reads(self, templates: list[Template]) -> list[_Read]:
        known = self._known("galleries")
        # Whom a gallery is shared with directly (sharingProfile.groups) comes only with this expand (AIB-GAL-005).
        groups = {"expand": "SharingProfile/Groups"}
        shared = {
            ids.norm(str(d.get("id", "")))
            for d in self._docs("galleries")
            if str(_sharing(d).get("permissions") or "").lower() == "groups"
        }
        reads = []
        for key, gid in self._target_galleries(templates).items():
            sub = ids.subscription_of(gid) or ""
            compute = self.arm.compute(sub)
            rg, name = _rg_and_name(gid)
            if key not in known and not self._list_failed("galleries", gid):
                reads.append(_Read("galleries", gid, compute.galleries.get, (rg, name), groups, single=True))
            elif key in shared:
                reads.append(_Read("galleries", gid, compute.galleries.get, (rg, name), groups, single=True, replace=True))
            reads.append(_Read("galleryImages", gid, compute.gallery_images.list_by_gallery, (rg, name)))
            if sub.lower() not in self.audited:
                # Locks of audited subscriptions are listed subscription-wide; elsewhere ask at the gallery.
                lk = self.arm.locks(sub)
                reads.append(_Read("locks", gid, lk.management_locks.list_by_scope, (gid,), {"filter": "atScope()"}))
        return reads
