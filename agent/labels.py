"""Label and annotation keys the agent sets on every cluster secret.

Users' ``secret_labels`` and ``secret_annotations`` may not use these keys: Argo CD depends on
the first, tbot compatibility on the ``teleport.dev/`` annotations, and ownership and pruning
on the agent's own keys.
"""

from __future__ import annotations

__all__ = [
    "AGENT_PREFIX",
    "ANNOTATION_BOT_NAME",
    "ANNOTATION_CREDENTIAL_EXPIRES",
    "ANNOTATION_KUBE_CLUSTER",
    "ANNOTATION_OWNER",
    "ANNOTATION_TELEPORT_CLUSTER",
    "ANNOTATION_UPDATED",
    "ANNOTATION_VERSION",
    "ARGOCD_SECRET_TYPE",
    "FIELD_MANAGER",
    "LABEL_CLUSTER",
    "LABEL_MANAGED_BY",
    "LABEL_OWNER",
    "MANAGED_BY",
    "is_reserved_annotation",
    "is_reserved_label",
]

# Field managers are "teleport-argocd-agent/<owner>": one per service instance, so two services
# or two installations writing the same secret name conflict instead of overwriting each other.
FIELD_MANAGER = "teleport-argocd-agent"
MANAGED_BY = "teleport-argocd-agent"
AGENT_PREFIX = "teleport-argocd-agent/"

ARGOCD_SECRET_TYPE = "argocd.argoproj.io/secret-type"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
# Hash of (instance, service name): which agent service wrote the secret. Pruning selects on it.
LABEL_OWNER = AGENT_PREFIX + "owner"
# Hash of (Teleport cluster, Kubernetes cluster), the same as the secret name's suffix.
LABEL_CLUSTER = AGENT_PREFIX + "cluster"

ANNOTATION_BOT_NAME = "teleport.dev/bot-name"
ANNOTATION_KUBE_CLUSTER = "teleport.dev/kubernetes-cluster-name"
ANNOTATION_TELEPORT_CLUSTER = "teleport.dev/teleport-cluster-name"
ANNOTATION_UPDATED = "teleport.dev/updated"
ANNOTATION_VERSION = AGENT_PREFIX + "version"
ANNOTATION_CREDENTIAL_EXPIRES = AGENT_PREFIX + "credential-expires"
ANNOTATION_OWNER = AGENT_PREFIX + "owner"

_RESERVED_LABELS = frozenset({ARGOCD_SECRET_TYPE, LABEL_MANAGED_BY})
_RESERVED_ANNOTATIONS = frozenset(
    {ANNOTATION_BOT_NAME, ANNOTATION_KUBE_CLUSTER, ANNOTATION_TELEPORT_CLUSTER, ANNOTATION_UPDATED}
)


def is_reserved_label(key: str) -> bool:
    return key in _RESERVED_LABELS or key.startswith(AGENT_PREFIX)


def is_reserved_annotation(key: str) -> bool:
    return key in _RESERVED_ANNOTATIONS or key.startswith(AGENT_PREFIX)
