"""AIB-LP-002 counts only rights that can change the staging resource group (auditor/staging_reach.py).

The issue's two false positives (real Monitoring Reader at the subscription; a custom role whose one non-read
action is `imageTemplates/run/action`) and the rule's edges: write paths into the RG count, wildcards count,
actions that cannot touch the RG do not, an unclassifiable action counts (fail closed).
"""

from __future__ import annotations

import pytest

from auditor.findings import Status
from auditor.staging_reach import classify
from fixtures import builders as b
from fixtures import roles
from tests.test_checks_lp import ALICE, BOB, SUB, Estate, _with_template_identity, only, run, staging_id

# The published Monitoring Reader (builtin-roles-all.json), as a tenant's role list would hold it.
MONITORING_READER = ["*/read", "Microsoft.OperationalInsights/workspaces/search/action", "Microsoft.Support/*"]


def _custom(e: Estate, name: str, actions: list[str], data_actions: list[str] | None = None) -> str:
    guid = b.guid(name)
    e.res["roleDefinitions"].append(roles.custom_role(SUB, guid, name, actions, data_actions=data_actions))
    return guid


def test_monitoring_reader_at_the_subscription_passes_lp002() -> None:
    e = Estate()
    _ident, _tpl = _with_template_identity(e)
    e.assign(b.sub_id(SUB), _custom(e, "Monitoring Reader (copy)", MONITORING_READER), ALICE)
    findings = run(e, "AIB-LP-002")
    assert all(f.status == Status.PASS for f in findings)
    assert not [f for f in findings if f.principal_id == ALICE]


def test_run_action_on_templates_does_not_count_for_lp002_but_does_for_lp001() -> None:
    e = Estate()
    _ident, _tpl = _with_template_identity(e)
    runner = _custom(e, "Template runner", ["*/read", "Microsoft.VirtualMachineImages/imageTemplates/run/action"])
    e.assign(b.sub_id(SUB), runner, ALICE)
    assert not [f for f in run(e, "AIB-LP-002") if f.principal_id == ALICE]
    assert only(run(e, "AIB-LP-001"), ALICE).status == Status.FAIL  # running the template is LP-001's concern


@pytest.mark.parametrize(
    ("actions", "reason"),
    [
        (["*/write"], "Microsoft.Compute/virtualMachines/*"),
        (["Microsoft.Compute/*"], "Microsoft.Compute/virtualMachines/*"),
        (["Microsoft.Authorization/locks/delete"], "Microsoft.Authorization/*"),
        (["Microsoft.Resources/subscriptions/resourceGroups/delete"], "the staging resource group itself"),
        (["Contoso.Widgets/gadgets/write"], "fail closed"),
    ],
)
def test_write_paths_into_the_staging_rg_fail_with_the_reason(actions: list[str], reason: str) -> None:
    e = Estate()
    _ident, _tpl = _with_template_identity(e)
    e.assign(b.sub_id(SUB), _custom(e, "writer", ["*/read", *actions]), ALICE)
    alice = only(run(e, "AIB-LP-002"), ALICE)
    assert alice.status == Status.FAIL
    assert alice.evidence["granted_by"] == actions[0]
    assert reason in alice.evidence["reaches"][actions[0]]


def test_blob_data_writes_count_and_queue_data_writes_do_not() -> None:
    e = Estate()
    _ident, tpl = _with_template_identity(e)
    stg = f"{staging_id(tpl)}/providers/Microsoft.Storage/storageAccounts/stgartifacts"
    e.assign(stg, roles.STORAGE_BLOB_DATA_CONTRIBUTOR, ALICE)
    queue = _custom(e, "queue writer", [], ["Microsoft.Storage/storageAccounts/queueServices/queues/messages/write"])
    e.assign(stg, queue, BOB)
    findings = run(e, "AIB-LP-002")
    alice = only(findings, ALICE)
    assert alice.status == Status.FAIL
    assert any("blobs holding the customizer artifact copies" in why for why in alice.evidence["reaches"].values())
    assert not [f for f in findings if f.principal_id == BOB]


@pytest.mark.parametrize(
    ("pattern", "data", "reaches"),
    [
        ("*", False, True),
        ("*/action", False, True),
        ("Microsoft.*", False, True),
        ("Microsoft.Network/virtualNetworks/subnets/join/action", False, True),
        ("Microsoft.Storage/storageAccounts/listKeys/action", False, True),
        ("Microsoft.Authorization/roleAssignments/write", False, True),
        ("Microsoft.Authorization/policyExemptions/write", False, True),
        ("Microsoft.Resources/deploymentScripts/write", False, True),
        ("Microsoft.PolicyInsights/remediations/write", False, True),
        ("Contoso.Widgets/*", False, True),
        ("*/read", False, False),
        ("Microsoft.Support/*", False, False),
        ("Microsoft.OperationalInsights/workspaces/search/action", False, False),
        ("Microsoft.VirtualMachineImages/imageTemplates/run/action", False, False),
        ("Microsoft.Resources/deployments/*", False, False),
        ("Microsoft.Billing/*", False, False),
        ("Microsoft.CostManagement/*", False, False),
        ("Microsoft.Insights/alertRules/*", False, False),
        ("Microsoft.Compute/register/action", False, False),
        ("Microsoft.Compute/galleries/share/action", False, False),
        ("Microsoft.PolicyInsights/policyStates/triggerEvaluation/action", False, False),
        ("*", True, True),
        ("Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write", True, True),
        ("Microsoft.KeyVault/vaults/secrets/setSecret/action", True, True),
        ("Contoso.Widgets/*", True, True),
        ("Microsoft.Storage/storageAccounts/queueServices/queues/messages/write", True, False),
        ("Microsoft.KeyVault/vaults/secrets/readMetadata/action", True, False),
        ("Microsoft.CognitiveServices/*", True, False),
        ("Microsoft.Compute/virtualMachines/login/action", True, False),
    ],
)
def test_classify(pattern: str, data: bool, reaches: bool) -> None:
    verdict = classify(pattern, data)
    assert verdict.reaches is reaches, verdict.why
    assert verdict.why
