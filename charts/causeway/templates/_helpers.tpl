{{- define "causeway.name" -}}causeway{{- end -}}
{{- define "causeway.fullname" -}}{{ printf "%s-operator" .Release.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- define "causeway.image" -}}{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}{{- end -}}
{{- define "causeway.labels" -}}
app.kubernetes.io/name: {{ include "causeway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}
{{/* The operator's ServiceAccount: the chart's own, or one the user manages. */}}
{{- define "causeway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{ .Values.serviceAccount.name | default (include "causeway.fullname" .) }}
{{- else -}}
{{ required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end -}}
{{- end -}}
{{/* The helm test's objects: the release's labels, but never the operator's selector. */}}
{{- define "causeway.testLabels" -}}
app.kubernetes.io/name: {{ include "causeway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: helm-test
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}
{{- define "causeway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "causeway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}
{{/* The operator's rules: in a ClusterRole, or in a Role per watched namespace. */}}
{{- define "causeway.operatorRules" -}}
# Watch the API; create the `default` pool of a namespace on demand. It never edits or
# deletes users' objects: on a Bridge it patches only its own finalizer
# (`causeway.dev/drain`, docs/deletion.md).
- apiGroups: [causeway.dev]
  resources: [bridges]
  verbs: [get, list, watch, patch]
- apiGroups: [causeway.dev]
  resources: [plugins]
  verbs: [get, list, watch]
- apiGroups: [causeway.dev]
  resources: [workerpools]
  verbs: [get, list, watch, create]
# Status, by server-side apply.
- apiGroups: [causeway.dev]
  resources: [bridges/status, plugins/status, workerpools/status]
  verbs: [get, patch]
# A pool's children.
- apiGroups: [""]
  resources: [secrets, serviceaccounts, services, persistentvolumeclaims]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, delete]
# Worker pods are recognised by their owners (ReplicaSet → Deployment → WorkerPool), not
# by labels: the operator reads ReplicaSets' metadata.
- apiGroups: [apps]
  resources: [replicasets]
  verbs: [get, list, watch]
# The per-pool NetworkPolicy (workerNetworkPolicy.enabled).
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [rbac.authorization.k8s.io]
  resources: [roles, rolebindings]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, list, watch, create, patch, delete]
# Read: ConfigMaps that hold plugins (configMap sources); worker pods, whose admin API
# (by pod IP) reports the config version they run, and whose IPs route calls between pools.
- apiGroups: [""]
  resources: [configmaps, pods]
  verbs: [get, list, watch]
# Events on Bridges, Plugins and WorkerPools (events.k8s.io/v1; core for older clients).
- apiGroups: [events.k8s.io, ""]
  resources: [events]
  verbs: [create, patch]
{{- end -}}
{{/* A map of labels as k=v,k=v (sorted), for the operator's flags. */}}
{{- define "causeway.labelPairs" -}}
{{- $pairs := list -}}
{{- range $k, $v := . -}}{{- $pairs = append $pairs (printf "%s=%s" $k $v) -}}{{- end -}}
{{- join "," $pairs -}}
{{- end -}}

{{/* The Secret holding the cluster console's token. */}}
{{- define "causeway.consoleSecret" -}}
{{- .Values.console.existingSecret | default (printf "%s-console" (include "causeway.fullname" .)) -}}
{{- end }}
