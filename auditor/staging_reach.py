"""Which action patterns can change a template's staging resource group (AIB-LP-002).

"Can perform some non-read action" is too wide a question: Monitoring Reader's `Microsoft.Support/*` and
workspace `search/action`, or `imageTemplates/run/action`, change nothing in the staging RG, and nearly every
reader-type built-in carries such actions. The staging RG holds what Image Builder deploys there (a storage
account whose blob containers hold the customizer artifact copies and logs, the build container instance, and
during a build the build VM, its disks and NIC, a public IP, a VNet, NSG, load balancer and private link service
for the proxy VM, and a key vault where the build uses one: azure-facts.md section 7), so a pattern counts when:

1. it is not a read, and no entry of NON_REACHING covers it (a known action that changes nothing there); and
2. it can match an entry of REACHING (a write path into the RG: those resource types and their extension
   resources, the RG itself, tags, and the rights and rules over it: role assignments and definitions, policy,
   locks); or its provider namespace is not one of QUIET_PROVIDERS (providers whose resources Image Builder does
   not put in the staging RG, or that act on the tenant, subscription or billing account). An unknown provider's
   `write`, `delete`, `action` or `*` counts: fail closed.

Deployments (`Microsoft.Resources/deployments/*`) do not count by themselves: ARM authorizes every resource a
deployment writes against the deployer's own rights, so a deployment into the RG is caught through those rights.
Nor does the power to make some other identity act (a runbook, a logic app, a remediation's own identity is the
exception below): that identity's own rights in the RG give it a row of its own.

The same rule holds for data actions, with the data plane's own lists.

`tests/data/builtin_role_verdicts.csv` pins the verdict of this rule for every built-in role: a change here is
reviewed there.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from auditor.actions import covers, intersects, is_read_only


@dataclass(frozen=True)
class Rule:
    pattern: str
    why: str


# Image Builder keeps its artifact copies and logs in blob containers (azure-facts.md section 7).
BLOBS_ONLY = "Image Builder keeps its artifacts and logs in blob containers, not in queues, tables or file shares"


# --------------------------------------------------------------------------------------------- control plane

REACHING: tuple[Rule, ...] = (
    Rule("Microsoft.Compute/virtualMachines/*", "the build VM (and its extensions and run commands)"),
    Rule("Microsoft.Compute/disks/*", "the build VM's disks"),
    Rule("Microsoft.Compute/snapshots/*", "snapshots of the build VM's disks"),
    Rule("Microsoft.Compute/images/*", "the managed image captured from the build VM"),
    Rule("Microsoft.Network/*", "the build VM's NIC and public IP, the VNet, NSG, load balancer and private link service"),
    Rule("Microsoft.Storage/*", "the storage account holding the customizer artifact copies and logs"),
    Rule("Microsoft.ContainerInstance/*", "the build container instance"),
    Rule("Microsoft.KeyVault/*", "the key vault the build uses (Windows builds keep the WinRM certificate in one)"),
    Rule(
        "Microsoft.Resources/subscriptions/resourceGroups/*",
        "the staging resource group itself: write, delete, move resources out",
    ),
    Rule("Microsoft.Resources/tags/*", "tags on the staging resources (policy conditions key on them)"),
    Rule("Microsoft.Resources/deploymentScripts/*", "a deployment script creates a container instance and storage in the RG"),
    Rule("Microsoft.Resources/deploymentStacks/*", "a deployment stack's deny settings and deletes reach the RG"),
    Rule("Microsoft.Authorization/*", "role assignments, role definitions, policy and locks: who may do what in the RG"),
    Rule("Microsoft.PolicyInsights/remediations/*", "a remediation runs deployIfNotExists/modify with the policy's identity"),
    Rule("Microsoft.ManagedServices/*", "Azure Lighthouse: delegates the RG to another tenant"),
    Rule("Microsoft.Blueprint/*", "a blueprint assignment deploys resources and locks with the Blueprints service's rights"),
    Rule("Microsoft.Security/locations/jitNetworkAccessPolicies/*", "just-in-time VM access opens the build VM's NSG"),
    Rule("Microsoft.Security/pricings/*", "a Defender plan auto-provisions agents onto VMs, the build VM too"),
    Rule("Microsoft.Security/autoProvisioningSettings/*", "auto-provisions agents onto VMs, the build VM too"),
    Rule("Microsoft.Security/serverVulnerabilityAssessments/*", "installs a scanner extension on a VM"),
    Rule("Microsoft.GuestConfiguration/*", "a guest configuration assignment changes settings inside the build VM"),
    Rule("Microsoft.Maintenance/*", "maintenance configurations patch and reboot the build VM"),
    Rule("Microsoft.ComputeSchedule/*", "scheduled actions start, stop and delete VMs"),
    Rule("Microsoft.DevTestLab/*", "auto-shutdown schedules on the build VM"),
    Rule("Microsoft.SerialConsole/*", "a serial console session on the build VM"),
    Rule("Microsoft.SqlVirtualMachine/*", "registering a VM with the SQL IaaS agent installs an extension on it"),
)

# Known actions that change nothing in a staging RG, even where their provider is in REACHING.
NON_REACHING: tuple[Rule, ...] = (
    Rule(
        "Microsoft.Resources/deployments/*", "a deployment writes only what its deployer may write: counted through those rights"
    ),
    Rule(
        "Microsoft.Resources/subscriptions/resourceGroups/deployments/*",
        "deployments (older spelling): see Microsoft.Resources/deployments",
    ),
    Rule("Microsoft.Resources/checkResourceName/action", "a name check"),
    Rule("Microsoft.Resources/links/*", "resource links are metadata between resources"),
    Rule(
        "Microsoft.Resources/templateSpecs/*",
        "a template spec is a stored template; deploying it needs the deployer's own rights",
    ),
    Rule("Microsoft.Compute/galleries/*", "galleries live outside the staging RG (AIB-LP-001 and the gallery checks cover them)"),
    Rule("Microsoft.Compute/locations/*", "subscription-level operations"),
    Rule("Microsoft.Compute/availabilitySets/*", "Image Builder deploys no availability set"),
    Rule("Microsoft.Compute/virtualMachineScaleSets/*", "Image Builder deploys no scale set"),
    Rule("Microsoft.Compute/cloudServices/*", "Image Builder deploys no cloud service"),
    Rule("Microsoft.Compute/proximityPlacementGroups/*", "Image Builder deploys no proximity placement group"),
    Rule("Microsoft.Compute/hostGroups/*", "Image Builder deploys no dedicated host"),
    Rule("Microsoft.Compute/capacityReservationGroups/*", "Image Builder uses no capacity reservation"),
    Rule("Microsoft.Compute/sshPublicKeys/*", "Image Builder stores no SSH public key resource"),
    Rule(
        "Microsoft.Compute/disks/beginGetAccess/action",
        "a read SAS for a disk's contents (writable only for a disk created for upload)",
    ),
    Rule("Microsoft.Compute/snapshots/beginGetAccess/action", "a read SAS for a snapshot's contents"),
    Rule(
        "Microsoft.Network/virtualNetworks/subnets/joinViaServiceEndpoint/action",
        "lets a service's firewall admit a subnet's traffic; the subnet is not changed",
    ),
    Rule("Microsoft.Network/dnszones/*", "public DNS zones: Image Builder uses none"),
    Rule(
        "Microsoft.Network/privateDnsZones/*",
        "private DNS zones: Image Builder uses none (linking one to a VNet needs the VNet's join right)",
    ),
    Rule("Microsoft.Network/privateDnsOperationResults/*", "private DNS operation status"),
    Rule("Microsoft.Network/privateDnsOperationStatuses/*", "private DNS operation status"),
    Rule("Microsoft.Network/trafficManagerProfiles/*", "Traffic Manager: Image Builder uses none"),
    Rule("Microsoft.Storage/locations/*", "subscription-level operation status"),
    Rule(
        "Microsoft.Storage/storageAccounts/*/generateUserDelegationKey/action",
        "a SAS signed with it carries no more than the caller's own data rights",
    ),
    Rule("Microsoft.Storage/storageAccounts/queueServices/*", BLOBS_ONLY),
    Rule("Microsoft.Storage/storageAccounts/tableServices/*", BLOBS_ONLY),
    Rule("Microsoft.Storage/storageAccounts/fileServices/*", BLOBS_ONLY),
    Rule("Microsoft.KeyVault/vaults/deploy/action", "lets ARM read a secret for a deployment: a read"),
    Rule("Microsoft.KeyVault/locations/deletedManagedHsms/*", "managed HSMs: Image Builder uses none"),
    Rule("Microsoft.KeyVault/managedHSMs/*", "managed HSMs: Image Builder uses none"),
    Rule("Microsoft.Security/iotDefenderSettings/*", "Defender for IoT downloads"),
    Rule("Microsoft.Security/iotSensors/*", "Defender for IoT sensors"),
    # Registering a resource provider on the subscription (`<namespace>/register/action`) changes no resource.
    Rule("*/register/action", "registers a resource provider on the subscription"),
    Rule("*/unregister/action", "unregisters a resource provider on the subscription"),
)

# Providers whose resources Image Builder does not put in the staging RG (so their actions act on resources
# elsewhere, or on resources that cannot touch the build), or that act on the tenant, the subscription or
# billing. Lower case. A namespace not listed here or in REACHING counts: fail closed.
# fmt: off
QUIET_PROVIDERS: frozenset[str] = frozenset(
    p.lower()
    for p in (
        # tenant, subscription, billing, support
        "Microsoft.AAD", "Microsoft.Advisor", "Microsoft.Billing", "Microsoft.BillingBenefits", "Microsoft.Capacity",
        "Microsoft.Carbon", "Microsoft.Commerce", "Microsoft.Consumption", "Microsoft.CostManagement",
        "Microsoft.CustomerLockbox", "Microsoft.Features", "Microsoft.Management", "Microsoft.Quota",
        "Microsoft.ResourceHealth", "Microsoft.ResourceNotifications", "Microsoft.ServicesHub",
        "Microsoft.Subscription", "Microsoft.Support",
        # monitoring and security posture: observe the staging resources, do not change the build
        "Microsoft.AlertsManagement", "Microsoft.Insights", "Microsoft.Monitor", "Microsoft.OperationalInsights",
        "Microsoft.OperationsManagement", "Microsoft.PolicyInsights", "Microsoft.Security",
        "Microsoft.SecurityInsights", "Microsoft.IoTSecurity", "Microsoft.AppComplianceAutomation",
        "Microsoft.DependencyMap", "Microsoft.ChangeAnalysis",
        # the template itself lives outside the staging RG (AIB-LP-001 judges who can run or change it)
        "Microsoft.VirtualMachineImages",
        # identities live outside the staging RG; assigning one to a resource needs write on that resource
        "Microsoft.ManagedIdentity",
        # backup, replication and chaos: protecting, restoring or disturbing a VM, disk or storage account needs
        # rights on it (counted above), or runs with the vault's or experiment's own identity (a row of its own)
        "Microsoft.RecoveryServices", "Microsoft.DataProtection", "Microsoft.DataReplication", "Microsoft.Chaos",
        # services that act through their own identity, or on resources of their own kind only
        "Microsoft.ApiCenter", "Microsoft.ApiManagement", "Microsoft.App", "Microsoft.AppConfiguration",
        "Microsoft.ApplicationMigration", "Microsoft.AppPlatform", "Microsoft.Attestation", "Microsoft.Automation",
        "Microsoft.AzureArcData", "Microsoft.AzureStack", "Microsoft.AzureStackHCI", "Microsoft.Batch",
        "Microsoft.BigAnalytics", "Microsoft.BizTalkServices", "Microsoft.Cache", "Microsoft.Cdn",
        "Microsoft.ClassicCompute", "Microsoft.ClassicNetwork", "Microsoft.ClassicStorage",
        "Microsoft.CognitiveServices", "Microsoft.ConnectedVMwarevSphere", "Microsoft.ContainerRegistry",
        "Microsoft.ContainerService", "Microsoft.Dashboard", "Microsoft.DataBox", "Microsoft.DataFactory",
        "Microsoft.DataLakeAnalytics", "Microsoft.DBforMySQL", "Microsoft.DBforPostgreSQL",
        "Microsoft.DesktopVirtualization", "Microsoft.DevCenter", "Microsoft.DeviceRegistry", "Microsoft.Devices",
        "Microsoft.DeviceUpdate", "Microsoft.DevOpsInfrastructure", "Microsoft.DigitalTwins", "Microsoft.DocumentDB",
        "Microsoft.EdgeMarketplace", "Microsoft.ElasticSan", "Microsoft.EventGrid", "Microsoft.EventHub",
        "Microsoft.ExtendedLocation", "Microsoft.HDInsight", "Microsoft.HealthBot", "Microsoft.HealthcareApis",
        "Microsoft.HealthDataAIServices", "Microsoft.HybridCompute", "Microsoft.HybridConnectivity",
        "Microsoft.HybridContainerService", "Microsoft.InferenceService", "Microsoft.IntelligentSystems",
        "Microsoft.IoTFirmwareDefense", "Microsoft.IoTOperations", "Microsoft.Kubernetes",
        "Microsoft.KubernetesConfiguration", "Microsoft.LabServices", "Microsoft.LoadTestService", "Microsoft.Logic",
        "Microsoft.MachineLearningServices", "Microsoft.Maps", "Microsoft.Media", "Microsoft.Migrate",
        "Microsoft.MixedReality", "Microsoft.ModSimWorkbench", "Microsoft.MySQLDiscovery", "Microsoft.OffAzure",
        "Microsoft.Quantum", "Microsoft.Relay", "Microsoft.ResourceConnector", "Microsoft.Scheduler",
        "Microsoft.SCVMM", "Microsoft.Search", "Microsoft.ServiceBus", "Microsoft.ServiceFabric",
        "Microsoft.SignalRService", "Microsoft.Solutions", "Microsoft.Sql", "Microsoft.StorageActions",
        "Microsoft.StorageSync", "Microsoft.StreamAnalytics", "Microsoft.Web", "Microsoft.Workloads", "NewRelic.APM",
    )
)
# fmt: on

# --------------------------------------------------------------------------------------------- data plane

DATA_REACHING: tuple[Rule, ...] = (
    Rule("Microsoft.Storage/storageAccounts/blobServices/*", "the blobs holding the customizer artifact copies and logs"),
    Rule("Microsoft.KeyVault/vaults/*", "secrets, keys and certificates in the key vault the build uses"),
)

DATA_NON_REACHING: tuple[Rule, ...] = (
    Rule("Microsoft.Storage/storageAccounts/queueServices/*", BLOBS_ONLY),
    Rule("Microsoft.Storage/storageAccounts/tableServices/*", BLOBS_ONLY),
    Rule("Microsoft.Storage/storageAccounts/fileServices/*", BLOBS_ONLY),
    Rule("Microsoft.KeyVault/vaults/*/readMetadata/action", "reads a secret's, key's or certificate's metadata"),
    Rule("Microsoft.KeyVault/vaults/secrets/getSecret/action", "reads a secret: AIB-LP-002 is about change"),
    Rule("Microsoft.KeyVault/vaults/keys/encrypt/action", "uses a key, changes nothing"),
    Rule("Microsoft.KeyVault/vaults/keys/decrypt/action", "uses a key, changes nothing"),
    Rule("Microsoft.KeyVault/vaults/keys/wrap/action", "uses a key, changes nothing"),
    Rule("Microsoft.KeyVault/vaults/keys/unwrap/action", "uses a key, changes nothing"),
    Rule("Microsoft.KeyVault/vaults/keys/sign/action", "uses a key, changes nothing"),
    Rule("Microsoft.KeyVault/vaults/keys/verify/action", "uses a key, changes nothing"),
    Rule("Microsoft.KeyVault/vaults/keys/release/action", "releases a key to an attested environment: a read"),
    Rule("Microsoft.KeyVault/vaults/keys/backup/action", "exports a protected key backup: a read"),
)

# Data actions act on resources of their own provider: none of these has a resource in the staging RG.
# `Microsoft.Compute`: signing in to a VM with Entra ID needs the AAD login extension, which the build VM does
# not carry (installing it is a VM write, counted above); disk upload works only on a disk created for upload.
DATA_QUIET_PROVIDERS: frozenset[str] = QUIET_PROVIDERS | frozenset({"microsoft.compute"})


# --------------------------------------------------------------------------------------------- the classifier


@dataclass(frozen=True)
class Verdict:
    reaches: bool
    why: str


def _namespace(pattern: str) -> str:
    return pattern.strip().split("/", 1)[0].lower()


@lru_cache(maxsize=8192)
def classify(pattern: str, data: bool = False) -> Verdict:
    """Can an action granted by `pattern` (control plane, or data plane with `data`) change the staging RG?"""
    if is_read_only(pattern):
        return Verdict(False, "a read")
    reaching, non_reaching, quiet = (
        (DATA_REACHING, DATA_NON_REACHING, DATA_QUIET_PROVIDERS) if data else (REACHING, NON_REACHING, QUIET_PROVIDERS)
    )
    for rule in non_reaching:
        if covers(rule.pattern, pattern):
            return Verdict(False, rule.why)
    for rule in reaching:
        if intersects(rule.pattern, pattern):
            return Verdict(True, f"{rule.pattern}: {rule.why}")
    if _namespace(pattern) in quiet:
        return Verdict(False, "its provider has no resource in the staging resource group")
    return Verdict(True, "an action this auditor cannot classify: counted (fail closed)")


def reaches(pattern: str, data: bool = False) -> bool:
    """`classify(...).reaches`: the predicate the RBAC engine's staging question asks of each granted pattern."""
    return classify(pattern, data).reaches
