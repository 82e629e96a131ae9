"""Keep images updated: the template provisioned and its last build did not fail.

A template in a failed state, or whose last run failed, is not producing patched images, whatever its other
settings say. Informational: it does not weigh in the resilience score.
"""

from __future__ import annotations

from auditor.documents import Template
from auditor.findings import Finding, failed, passed
from auditor.inventory import Inventory
from auditor.policy import Policy
from checks.registry import check


@check("AIB-OPS-001")
def healthy_template(t: Template, inv: Inventory, policy: Policy) -> list[Finding]:
    evidence = {
        "provisioning_state": t.provisioning_state,
        "provisioning_error": t.provisioning_error,
        "last_run_state": t.last_run_state,
        "last_run_sub_state": t.last_run_sub_state,
        "last_run_message": t.last_run_message,
        "last_run_end": t.last_run_end,
    }
    state = t.provisioning_state or ""
    if state.lower() != "succeeded":
        err = f": {t.provisioning_error}" if t.provisioning_error else ""
        return [failed(f"provisioningState is {state or 'not reported'}, not Succeeded{err}", evidence=evidence)]
    if not t.last_run_state:
        return [passed("provisioningState is Succeeded; the template has never run", evidence=evidence)]
    if t.last_run_state.lower() == "failed":
        message = f": {t.last_run_message}" if t.last_run_message else ""
        when = f" (ended {t.last_run_end})" if t.last_run_end else ""
        return [failed(f"the last run failed{when}{message}", evidence=evidence)]
    return [passed(f"provisioningState is Succeeded and the last run is {t.last_run_state}", evidence=evidence)]
