"""ARM action patterns: does a role's pattern grant an action, could two patterns match one action, does one
contain the other, and which resource type an action is authorized on.

Patterns match case-insensitively with `*` anywhere (`*`, `*/read`, `Microsoft.Authorization/*/Write`). An
interior `/*/` also matches a single `/`: Managed Identity Operator's `userAssignedIdentities/*/assign/action` is
what grants `userAssignedIdentities/assign/action`. Pure string logic, cached: the RBAC engine asks the same
questions thousands of times.
"""

from __future__ import annotations

import re
from functools import lru_cache


@lru_cache(maxsize=8192)
def _variants(pattern: str) -> tuple[str, ...]:
    """The lower-cased pattern, plus each form where an interior `/*/` stands for a single `/`."""
    p = pattern.strip().lower()
    seen = {p}
    todo = [p]
    while todo:
        cur = todo.pop()
        i = cur.find("/*/")
        while i >= 0:
            nxt = cur[:i] + cur[i + 2 :]
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
            i = cur.find("/*/", i + 1)
    return tuple(sorted(seen))


@lru_cache(maxsize=8192)
def _regex(pattern: str) -> re.Pattern[str]:
    """A compiled, case-insensitive matcher for an action pattern (every variant)."""
    alts = "|".join(re.escape(v).replace(r"\*", ".*") for v in _variants(pattern))
    return re.compile(f"(?:{alts})", re.IGNORECASE | re.DOTALL)


def matches(pattern: str, action: str) -> bool:
    """Does role pattern `pattern` grant the concrete action `action`?"""
    return _regex(pattern).fullmatch(action.strip()) is not None


def _glob_intersect(a: str, b: str) -> bool:
    """Is there a string that matches both `*`-globs (already lower case)?"""
    n, m = len(a), len(b)
    # reach[i][j]: a[i:] and b[j:] can still match a common suffix; computed backwards.
    nxt = [False] * (m + 1)
    nxt[m] = True
    for j in range(m - 1, -1, -1):
        nxt[j] = b[j] == "*" and nxt[j + 1]
    for i in range(n - 1, -1, -1):
        cur = [False] * (m + 1)
        cur[m] = a[i] == "*" and nxt[m]
        for j in range(m - 1, -1, -1):
            if a[i] == "*":
                cur[j] = nxt[j] or cur[j + 1]  # the star matches nothing more, or eats b[j]
            elif b[j] == "*":
                cur[j] = cur[j + 1] or nxt[j]  # b's star matches nothing more, or eats a[i]
            else:
                cur[j] = a[i] == b[j] and nxt[j + 1]
        nxt = cur
    return nxt[0]


@lru_cache(maxsize=65536)
def intersects(a: str, b: str) -> bool:
    """Could one action match both patterns?"""
    return any(_glob_intersect(x, y) for x in _variants(a) for y in _variants(b))


@lru_cache(maxsize=65536)
def covers(big: str, small: str) -> bool:
    """Is every action matched by `small` also matched by `big`?

    `small`'s stars are treated as letters that only `big`'s stars can match: exact for `*`-globs over an
    open alphabet, which action names are.
    """
    rx = _regex(big)
    return all(rx.fullmatch(v) is not None for v in _variants(small))


def is_concrete(pattern: str) -> bool:
    return "*" not in pattern


def is_read_only(pattern: str) -> bool:
    return pattern.strip().lower().endswith("/read")


def resource_type(resource_key: str) -> str | None:
    """`microsoft.virtualmachineimages/imagetemplates` for a (normalized) resource ID; None for RGs and above."""
    low = resource_key.lower().rstrip("/")
    i = low.rfind("/providers/")
    if i < 0:
        return None
    parts = low[i + len("/providers/") :].split("/")
    if len(parts) < 3:
        return None
    return "/".join([parts[0], *parts[1::2]])


def action_resource_type(action: str) -> str | None:
    """The resource type a concrete action is authorized on: `ns/type/child` for `ns/type/child/write`.

    A custom operation ends in `<name>/action` (`imageTemplates/run/action` is on imageTemplates), so both
    segments go. None for a pattern: which type it names is not one answer.
    """
    if not is_concrete(action):
        return None
    parts = action.strip().lower().split("/")
    cut = 2 if parts[-1] == "action" else 1
    return "/".join(parts[:-cut]) if len(parts) > cut + 1 else None


def on_child_resource(action: str, target_key: str) -> bool:
    """Is `action` authorized on a child resource of `target_key` (`imageTemplates/triggers/write` on a template)?

    ARM checks such an action at the child's own scope, where a deny with doNotApplyToChildScopes at the target
    (or above) does not reach.
    """
    target = resource_type(target_key)
    acted = action_resource_type(action)
    return bool(target and acted and acted.startswith(target + "/"))
