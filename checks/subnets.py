"""Your own subnets (best practice: "Specify subnets").

Without `vnetConfig` Image Builder creates its own VNet, public IP and NSG for the build VM. With only
`subnetId` the build VM sits in your subnet but Image Builder still runs its build container in a public
Azure Container Instance and reaches the VM through a proxy VM and Private Link. The recommended topology
sets both `subnetId` and `containerInstanceSubnetId`: separate subnets of one VNet, the second delegated to ACI.
"""

from __future__ import annotations

from auditor import ids
from auditor.documents import Template
from auditor.findings import Finding, failed, passed
from auditor.inventory import Inventory
from auditor.policy import Policy
from checks.registry import check


def _vnet_of(subnet_id: str) -> str:
    return ids.norm(ids.parent_at(subnet_id, "subnets") or subnet_id)


@check("AIB-NET-001")
def build_subnet(t: Template, inv: Inventory, policy: Policy) -> list[Finding]:
    if t.subnet_id:
        return [passed(f"the build VM uses your subnet {t.subnet_id}", evidence={"subnet_id": t.subnet_id})]
    return [
        failed(
            "vmProfile.vnetConfig.subnetId is not set: Image Builder deploys the build VM in a VNet it creates, with a public IP,"
            " instead of your own subnet"
        )
    ]


@check("AIB-NET-002")
def aci_subnet(t: Template, inv: Inventory, policy: Policy) -> list[Finding]:
    evidence = {"subnet_id": t.subnet_id, "container_instance_subnet_id": t.aci_subnet_id}
    aci = t.aci_subnet_id
    if not aci:
        if t.subnet_id:
            return [
                failed(
                    "vnetConfig.subnetId is set but containerInstanceSubnetId is not: builds still use a public Azure Container"
                    " Instance, reached through a proxy VM and Private Link",
                    evidence=evidence,
                )
            ]
        return [
            failed(
                "vmProfile.vnetConfig.containerInstanceSubnetId is not set: builds use a public Azure Container Instance",
                evidence=evidence,
            )
        ]
    if t.subnet_id and ids.norm(aci) == ids.norm(t.subnet_id):
        return [
            failed(
                "containerInstanceSubnetId is the same subnet as subnetId: it must be a separate subnet, delegated to"
                " Microsoft.ContainerInstance/containerGroups",
                evidence=evidence,
            )
        ]
    if t.subnet_id and _vnet_of(aci) != _vnet_of(t.subnet_id):
        return [
            failed(
                f"containerInstanceSubnetId {aci} is not in the build VM subnet's VNet, as Image Builder requires",
                evidence=evidence,
            )
        ]
    return [passed(f"the build container runs in your ACI subnet {aci}", evidence=evidence)]
