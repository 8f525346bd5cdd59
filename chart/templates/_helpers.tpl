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
{{- $labels := merge $standard (include "teleport-argocd-agent.selectorLabels" . | fromYaml) (include "teleport-argocd-agent.flat" .Values.extraLabels | fromYaml) }}
{{- toYaml $labels }}
{{- end }}

{{/* The string entries of a labels or annotations map, as YAML: the tbot chart's empty per-object maps (extraLabels.pod: {}) carry nothing and are left out. */}}
{{- define "teleport-argocd-agent.flat" -}}
{{- $flat := dict }}
{{- range $key, $value := . }}
{{- if not (kindIs "map" $value) }}{{ $_ := set $flat $key $value }}{{ end }}
{{- end }}
{{- toYaml $flat }}
{{- end }}

{{/* Object metadata: name, namespace, standard labels and the annotations value. Call with (dict "root" $ "name" <name> "namespace" <namespace>). */}}
{{- define "teleport-argocd-agent.metadata" -}}
name: {{ .name }}
namespace: {{ .namespace }}
labels:
  {{- include "teleport-argocd-agent.labels" .root | nindent 2 }}
{{- with include "teleport-argocd-agent.flat" .root.Values.annotations | fromYaml }}
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

{{/* Container image reference: by digest when image.digest is set, else by tag (default the chart's appVersion). */}}
{{- define "teleport-argocd-agent.image" -}}
{{- /* The Deployment renders before the ConfigMap's checks: a tbot-style image string gets its message here. */}}
{{- include "teleport-argocd-agent.validateTbotValues" . }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
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
{{- include "teleport-argocd-agent.validateTbotValues" . }}
{{- if not .Values.enabled }}
{{- fail "enabled is false, but this chart was rendered anyway: enabled is read by a parent chart's dependency condition. Add `condition: teleport-argocd-agent.enabled` to the dependency in the parent's Chart.yaml, or do not install the chart." }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled .Values.metrics.podMonitor.enabled }}
{{- fail "metrics.serviceMonitor.enabled and metrics.podMonitor.enabled are both true: Prometheus would scrape the agent twice and every alert would fire twice. Enable one of them." }}
{{- end }}
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
{{- if .Values.admissionPolicy.enabled }}
{{- $addr := include "teleport-argocd-agent.proxyPublicAddress" . }}
{{- if not (regexMatch "^([A-Za-z0-9.-]+|\\[[0-9A-Fa-f:.]+\\]):[0-9]{1,5}$" $addr) }}
{{- fail (printf "admissionPolicy.proxyPublicAddress %q is not host:port: the admission policy allows a secret's server only under https://<that address>/v1/teleport/, so it must be exactly the proxy's public address (no scheme, path or wildcard), e.g. teleport.example.com:443." $addr) }}
{{- end }}
{{- end }}
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
# The chart's admission policy refuses writes to secrets that are not this agent's, and
# every secret whose server does not start with this (admissionPolicy.proxyPublicAddress).
admission_policy: true
allowed_server_prefix: {{ include "teleport-argocd-agent.allowedServerPrefix" . | toJson }}
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

{{/* The Teleport proxy's public address the admission policy allows in a secret's server: admissionPolicy.proxyPublicAddress, else teleportProxyAddress; Teleport always advertises a port, so a bare host gets :443. */}}
{{- define "teleport-argocd-agent.proxyPublicAddress" -}}
{{- $addr := .Values.admissionPolicy.proxyPublicAddress | default .Values.teleportProxyAddress }}
{{- if and $addr (not (regexMatch ":[0-9]+$" $addr)) }}
{{- $addr = printf "%s:443" $addr }}
{{- end }}
{{- $addr }}
{{- end }}

{{/* The start of every secret's server under the admission policy (agent config allowed_server_prefix). */}}
{{- define "teleport-argocd-agent.allowedServerPrefix" -}}
{{- printf "https://%s/v1/teleport/" (include "teleport-argocd-agent.proxyPublicAddress" .) }}
{{- end }}

{{/* The TLS server name the agent writes into config with TLS routing (agent/argocd.py connection_target): kube-teleport-proxy-alpn.<host>, or .teleport.cluster.local for an IP or localhost. */}}
{{- define "teleport-argocd-agent.kubeServerName" -}}
{{- $host := regexReplaceAll ":[0-9]+$" (include "teleport-argocd-agent.proxyPublicAddress" .) "" }}
{{- $bare := trimAll "[]" $host }}
{{- if or (not $host) (eq $host "localhost") (contains ":" $bare) (regexMatch "^[0-9]{1,3}([.][0-9]{1,3}){3}$" $bare) }}
{{- "kube-teleport-proxy-alpn.teleport.cluster.local" }}
{{- else }}
{{- printf "kube-teleport-proxy-alpn.%s" $host }}
{{- end }}
{{- end }}

{{/* RE2 for the base64 text of 3 bytes that are each a base64 character (A-Z a-z 0-9 + /): generated once from the base64 alphabet (each byte's bits spread over the 4 characters), so the policy can tell that a base64-encoded value holds base64 text and nothing else (no quote, no backslash). */}}
{{- define "teleport-argocd-agent.base64OfBase64Triple" -}}
(?:[KL](?:y(?:[8s][0-5rv-z]|[9t][0-6B-Zah-z])|z(?:[AEIMQUYcgk][0-5rv-z]|[BFJNRVZdhl][0-6B-Zah-z])|[02](?:[048EIMQUYcgkosw][0-5rv-z]|[159FJNRVZdhlptx][0-6B-Zah-z])|[13](?:[AEIMQUYcgko][0-5rv-z]|[BFJNRVZdhlp][0-6B-Zah-z]))|[MNR-VZa-d](?:[CSiy](?:[8s][0-5rv-z]|[9t][0-6B-Zah-z])|[DTjz](?:[AEIMQUYcgk][0-5rv-z]|[BFJNRVZdhl][0-6B-Zah-z])|[02EGUWkm](?:[048EIMQUYcgkosw][0-5rv-z]|[159FJNRVZdhlptx][0-6B-Zah-z])|[13FHVXln](?:[AEIMQUYcgko][0-5rv-z]|[BFJNRVZdhlp][0-6B-Zah-z]))|O(?:[CS](?:[8s][0-5rv-z]|[9t][0-6B-Zah-z])|[DT](?:[AEIMQUYcgk][0-5rv-z]|[BFJNRVZdhl][0-6B-Zah-z])|[EGUW](?:[048EIMQUYcgkosw][0-5rv-z]|[159FJNRVZdhlptx][0-6B-Zah-z])|[FHVX](?:[AEIMQUYcgko][0-5rv-z]|[BFJNRVZdhlp][0-6B-Zah-z]))|[QY](?:[Siy](?:[8s][0-5rv-z]|[9t][0-6B-Zah-z])|[Tjz](?:[AEIMQUYcgk][0-5rv-z]|[BFJNRVZdhl][0-6B-Zah-z])|[02UWkm](?:[048EIMQUYcgkosw][0-5rv-z]|[159FJNRVZdhlptx][0-6B-Zah-z])|[13VXln](?:[AEIMQUYcgko][0-5rv-z]|[BFJNRVZdhlp][0-6B-Zah-z]))|[We](?:[CSi](?:[8s][0-5rv-z]|[9t][0-6B-Zah-z])|[DTj](?:[AEIMQUYcgk][0-5rv-z]|[BFJNRVZdhl][0-6B-Zah-z])|[EGUWkm](?:[048EIMQUYcgkosw][0-5rv-z]|[159FJNRVZdhlptx][0-6B-Zah-z])|[FHVXln](?:[AEIMQUYcgko][0-5rv-z]|[BFJNRVZdhlp][0-6B-Zah-z])))
{{- end }}

{{/* Seconds in a Prometheus duration such as 15m or 1h30m (the schema admits only that form); PromQL compares gauges with plain numbers. */}}
{{- define "teleport-argocd-agent.seconds" -}}
{{- $units := dict "ms" 0 "s" 1 "m" 60 "h" 3600 "d" 86400 "w" 604800 "y" 31536000 }}
{{- $total := 0 }}
{{- range regexFindAll "[0-9]+(ms|[smhdwy])" . -1 }}
{{- $total = add $total (mul (regexFind "^[0-9]+" . | atoi) (get $units (regexReplaceAll "^[0-9]+" . ""))) }}
{{- end }}
{{- $total }}
{{- end }}

{{/* PromQL label matchers for this release's agent pods: their namespace, and the pod names its Deployment gives them (<fullname>-<ReplicaSet hash>-<suffix>). */}}
{{- define "teleport-argocd-agent.promSelector" -}}
namespace="{{ .Release.Namespace }}",pod=~"{{ include "teleport-argocd-agent.fullname" . | replace "." "\\\\." }}-[a-z0-9]+-[a-z0-9]+"
{{- end }}

{{/* Name of the metrics Service and of the monitors. */}}
{{- define "teleport-argocd-agent.metricsName" -}}
{{- printf "%s-metrics" (include "teleport-argocd-agent.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Values of Teleport's tbot chart that mean something else here or nothing at all: each refused with what to write instead (the ones that mean the same are plain values). */}}
{{- define "teleport-argocd-agent.validateTbotValues" -}}
{{- $v := .Values }}
{{- if kindIs "string" $v.image }}
{{- fail (printf "image is a string (%q), as in the tbot chart. This chart runs its own agent image, set as a map: remove image to use the default, or write image.repository, image.tag (or image.digest) and image.pullPolicy." $v.image) }}
{{- end }}
{{- range $key, $value := $v.extraLabels }}
{{- if and (kindIs "map" $value) $value }}
{{- fail (printf "extraLabels.%s is a map of labels for one object, as in the tbot chart. Here extraLabels is one map of label: value for every object the chart creates; write these labels under %s." $key (ternary "podLabels" "extraLabels (one map, on every object)" (eq $key "pod"))) }}
{{- end }}
{{- end }}
{{- $perObjectAnnotations := dict "pod" "podAnnotations" "serviceAccount" "serviceAccount.annotations" }}
{{- range $key, $value := $v.annotations }}
{{- if and (kindIs "map" $value) $value }}
{{- fail (printf "annotations.%s is a map of annotations for one object, as in the tbot chart. Here annotations is one map of annotation: value for every object except the pod; write these annotations under %s." $key (get $perObjectAnnotations $key | default "annotations (one map, on every object but the pod)")) }}
{{- end }}
{{- end }}
{{- with $v.defaultOutput.secretName }}
{{- fail "defaultOutput.secretName is set, as in the tbot chart: this chart provides only the Argo CD output, no identity Secret. Remove defaultOutput.secretName." }}
{{- end }}
{{- if and $v.persistence (not (eq (toString $v.persistence) "disabled")) (not (and (kindIs "map" $v.persistence) (not $v.persistence.enabled))) }}
{{- fail "persistence is set, as in the tbot chart: the agent keeps no state on disk. With joinMethod kubernetes it re-joins from the pod's token; with joinMethod token it keeps its identity in the Secret <fullname>-identity. Remove persistence." }}
{{- end }}
{{- if $v.customConfig }}
{{- fail "customConfig is set, as in the tbot chart: this chart renders the agent's configuration from its values. Move a kubernetes/argo-cd service's selectors, secret_namespace, project, namespaces, ... to argocd.clusterSelectors, argocd.secretNamespace, argocd.project, argocd.namespaces, ... and remove customConfig." }}
{{- end }}
{{- if or $v.outputs $v.services }}
{{- fail "outputs or services is set, as in the tbot chart: this chart has one Argo CD output, configured by argocd.* (argocd.clusterSelectors, argocd.secretNamespace, ...). Move the kubernetes/argo-cd service's settings there and remove outputs and services." }}
{{- end }}
{{- with $v.teleportVersionOverride }}
{{- fail "teleportVersionOverride is set, as in the tbot chart: this chart runs its own agent, not tbot. Remove it; image.tag selects the agent's version." }}
{{- end }}
{{- if $v.anonymousTelemetry }}
{{- fail "anonymousTelemetry is true, as in the tbot chart: the agent sends no telemetry. Remove anonymousTelemetry." }}
{{- end }}
{{- end }}

{{/* Image pull policy: imagePullPolicy (the tbot chart's key) when set, else image.pullPolicy. */}}
{{- define "teleport-argocd-agent.imagePullPolicy" -}}
{{- default .Values.image.pullPolicy .Values.imagePullPolicy }}
{{- end }}
