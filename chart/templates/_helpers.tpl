{{/* The chart name, or nameOverride. */}}
{{- define "teleport-argocd-agent.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Object name prefix: fullnameOverride, else "<release>-<chart>" (just the release name when it already contains the chart name). */}}
{{- define "teleport-argocd-agent.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* "<chart>-<version>" for the helm.sh/chart label. */}}
{{- define "teleport-argocd-agent.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that identify the release's pod; never change them after install (Deployment selectors are immutable). */}}
{{- define "teleport-argocd-agent.selectorLabels" -}}
app.kubernetes.io/name: {{ include "teleport-argocd-agent.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Standard labels plus extraLabels for every object; the standard ones win on a clash. */}}
{{- define "teleport-argocd-agent.labels" -}}
{{- $standard := dict
  "helm.sh/chart" (include "teleport-argocd-agent.chart" .)
  "app.kubernetes.io/version" .Chart.AppVersion
  "app.kubernetes.io/managed-by" .Release.Service
  "app.kubernetes.io/component" "agent"
}}
{{- $labels := merge $standard (include "teleport-argocd-agent.selectorLabels" . | fromYaml) (deepCopy .Values.extraLabels) }}
{{- toYaml $labels }}
{{- end }}

{{/* Object metadata: name, namespace, standard labels and the annotations value. Call with (dict "root" $ "name" <name> "namespace" <namespace>). */}}
{{- define "teleport-argocd-agent.metadata" -}}
name: {{ .name }}
namespace: {{ .namespace }}
labels:
  {{- include "teleport-argocd-agent.labels" .root | nindent 2 }}
{{- with .root.Values.annotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Name of the ServiceAccount the agent runs as. */}}
{{- define "teleport-argocd-agent.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "teleport-argocd-agent.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Namespace the Argo CD cluster secrets (and their Role) live in. */}}
{{- define "teleport-argocd-agent.secretNamespace" -}}
{{- default .Release.Namespace .Values.argocd.secretNamespace }}
{{- end }}

{{/* Secret that persists the bot identity for the token join method (single-use token). */}}
{{- define "teleport-argocd-agent.identitySecretName" -}}
{{- printf "%s-identity" (include "teleport-argocd-agent.fullname" .) }}
{{- end }}

{{/* Container image reference; the tag defaults to the chart's appVersion. */}}
{{- define "teleport-argocd-agent.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Effective log level: debug: true wins over logLevel. */}}
{{- define "teleport-argocd-agent.logLevel" -}}
{{- if .Values.debug }}debug{{ else }}{{ .Values.logLevel }}{{ end }}
{{- end }}

{{/* Directory of the agent's configuration inside the container. */}}
{{- define "teleport-argocd-agent.configDir" -}}
/etc/teleport-argocd-agent
{{- end }}

{{/* Where the join token Secret is mounted for the token join method. */}}
{{- define "teleport-argocd-agent.joinTokenDir" -}}
{{- include "teleport-argocd-agent.configDir" . }}/join
{{- end }}

{{/* Directory of the projected service-account token for the kubernetes join method. */}}
{{- define "teleport-argocd-agent.saTokenDir" -}}
/var/run/secrets/tokens
{{- end }}

{{/* Value checks the JSON schema cannot express; each message names the value and the fix. */}}
{{- define "teleport-argocd-agent.validate" -}}
{{- if not .Values.argocd.enabled }}
{{- fail "argocd.enabled is false, which leaves the agent nothing to do: this chart provides only the Argo CD output. Set argocd.enabled: true and argocd.clusterSelectors." }}
{{- end }}
{{- if not .Values.teleportProxyAddress }}
{{- fail "teleportProxyAddress is not set: set it to your Teleport proxy's public address, e.g. teleport.example.com:443." }}
{{- end }}
{{- if and (eq .Values.joinMethod "token") .Values.token }}
{{- fail "token is set but joinMethod is token: with the token join method the one-time token is read from the Secret named by tokenSecret.name, so it never sits in values or the ConfigMap. Remove token from your values." }}
{{- end }}
{{- if and .Values.argocd.clusterResources (not .Values.argocd.namespaces) }}
{{- fail "argocd.clusterResources is only applicable if argocd.namespaces is also set (without namespaces Argo CD already manages cluster-scoped resources). Set argocd.namespaces or remove argocd.clusterResources." }}
{{- end }}
{{- /* The same keys as agent/labels.py (tests/chart/test_values_rejected.py holds them to it). */}}
{{- range $key, $_ := .Values.argocd.secretLabels }}
{{- if or (has $key (list "argocd.argoproj.io/secret-type" "app.kubernetes.io/managed-by")) (hasPrefix "teleport-argocd-agent/" $key) }}
{{- fail (printf "argocd.secretLabels: label %q is set by the agent and cannot be overridden. Remove it from argocd.secretLabels." $key) }}
{{- end }}
{{- end }}
{{- range $key, $_ := .Values.argocd.secretAnnotations }}
{{- if or (has $key (list "teleport.dev/bot-name" "teleport.dev/kubernetes-cluster-name" "teleport.dev/teleport-cluster-name" "teleport.dev/updated")) (hasPrefix "teleport-argocd-agent/" $key) }}
{{- fail (printf "argocd.secretAnnotations: annotation %q is set by the agent and cannot be overridden. Remove it from argocd.secretAnnotations." $key) }}
{{- end }}
{{- end }}
{{- end }}

{{/* The agent configuration (DESIGN section 4). Scalars go through toJson so every value is quoted exactly; unset optional argocd.* keys are left out so the agent's defaults apply. */}}
{{- define "teleport-argocd-agent.config" -}}
{{- $argocd := .Values.argocd -}}
version: v2
proxy_server: {{ .Values.teleportProxyAddress | toJson }}
onboarding:
  join_method: {{ .Values.joinMethod | toJson }}
{{- if eq .Values.joinMethod "token" }}
  # A token starting with "/" is a file the agent reads: the secret value stays in its Secret.
  token: {{ printf "%s/token" (include "teleport-argocd-agent.joinTokenDir" .) | toJson }}
{{- else }}
  token: {{ .Values.token | toJson }}
{{- end }}
{{- if .Values.teleportProxyCA.configMapName }}
# The proxy's web certificate comes from a private CA (mounted from its ConfigMap).
proxy_ca_path: {{ printf "%s/proxy-ca/ca.crt" (include "teleport-argocd-agent.configDir" .) | toJson }}
{{- end }}
credential_ttl: {{ .Values.credentialTTL | toJson }}
renewal_interval: {{ .Values.renewalInterval | toJson }}
{{- with .Values.argocd.rotationWindow }}
rotation_window: {{ . | toJson }}
{{- end }}
{{- if eq .Values.joinMethod "token" }}
# The join token works once, so the renewable identity must survive restarts.
storage:
  type: kubernetes_secret
  name: {{ include "teleport-argocd-agent.identitySecretName" . | toJson }}
{{- else }}
# The kubernetes join method re-joins with a fresh service-account token: nothing to persist.
storage:
  type: memory
{{- end }}
instance: {{ include "teleport-argocd-agent.instance" . | toJson }}
diag_addr: {{ printf "0.0.0.0:%d" (int .Values.diagnostics.port) | toJson }}
{{- if .Values.admissionPolicy.enabled }}
# The chart's admission policy refuses writes to secrets that are not this agent's.
admission_policy: true
{{- end }}
services:
  - type: kubernetes/argo-cd
    name: argo-cd
    selectors:
      {{- toYaml $argocd.clusterSelectors | nindent 6 }}
    secret_namespace: {{ include "teleport-argocd-agent.secretNamespace" . | toJson }}
    {{- with $argocd.secretNamePrefix }}
    secret_name_prefix: {{ . | toJson }}
    {{- end }}
    {{- with $argocd.secretLabels }}
    secret_labels:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with $argocd.secretAnnotations }}
    secret_annotations:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with $argocd.project }}
    project: {{ . | toJson }}
    {{- end }}
    {{- with $argocd.namespaces }}
    namespaces:
      {{- toYaml . | nindent 6 }}
    cluster_resources: {{ $argocd.clusterResources | toJson }}
    {{- end }}
    {{- with $argocd.clusterNameTemplate }}
    cluster_name_template: {{ . | toJson }}
    {{- end }}
    discovery_interval: {{ $argocd.discoveryInterval | toJson }}
    prune: {{ $argocd.prune | toJson }}
{{- end }}

{{/* Which installation wrote a secret (the agent config's instance): the instance value, else "<release namespace>/<release name>". */}}
{{- define "teleport-argocd-agent.instance" -}}
{{- default (printf "%s/%s" .Release.Namespace .Release.Name) .Values.instance }}
{{- end }}

{{/* Ownership id the agent puts in its secrets' teleport-argocd-agent/owner label: agent.argocd.owner_id of (instance, service name), i.e. the first 16 hex of SHA-256 over "<instance>\0argo-cd". */}}
{{- define "teleport-argocd-agent.owner" -}}
{{- printf "%s\x00%s" (include "teleport-argocd-agent.instance" .) "argo-cd" | sha256sum | trunc 16 }}
{{- end }}

{{/* Secret name prefix in force: argocd.secretNamePrefix, else the agent's default. */}}
{{- define "teleport-argocd-agent.secretNamePrefix" -}}
{{- default "teleport.argocd-cluster" .Values.argocd.secretNamePrefix }}
{{- end }}

{{/* Cluster-scoped name of the admission policy and its binding: one per release. */}}
{{- define "teleport-argocd-agent.admissionPolicyName" -}}
{{- printf "%s.%s" (include "teleport-argocd-agent.fullname" .) .Release.Namespace | trunc 253 }}
{{- end }}
