{{/* The prefix of every namespaced object's name: the release name, with "tenantry"
     added unless it is already in it (a release called "tenantry" gives "tenantry-server"). */}}
{{- define "tenantry.fullname" -}}
{{- if contains "tenantry" .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-tenantry" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end }}

{{/* ClusterRoles are cluster-wide: the release namespace and name keep two installs
     (a staging and a production Tenantry on one management cluster) apart. */}}
{{- define "tenantry.clusterRoleName" -}}
{{- printf "tenantry:%s:%s:%s" .root.Release.Namespace .root.Release.Name .component -}}
{{- end }}

{{- define "tenantry.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion -}}
{{- end }}

{{/* Labels on every object. managed-by is Helm, never "tenantry": `tenantry tenants apply`
     prunes what carries app.kubernetes.io/managed-by=tenantry, and must never prune the
     platform itself. tenantry.dev/tenant and tenantry.dev/service are the labels
     `tenantry lint` requires of every object: the platform is the tenant of its own
     namespace, and each component is one of its services. */}}
{{- define "tenantry.labels" -}}
app.kubernetes.io/name: tenantry
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ include "tenantry.imageTag" .root | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: tenantry
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
tenantry.dev/tenant: tenantry
tenantry.dev/service: {{ .component }}
{{- end }}

{{- define "tenantry.selector" -}}
app.kubernetes.io/name: tenantry
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The pod-level hardening both Deployments share (Pod Security "restricted"). */}}
{{- define "tenantry.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "tenantry.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Environment both components share. Everything the processes write goes to emptyDirs
     (the root filesystem is read-only): HOME for helm's and git's caches, the state
     directory for local files. */}}
{{- define "tenantry.env" -}}
- name: TENANTRY_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.database.existingSecret }}
      key: {{ .Values.database.secretKey }}
- name: TENANTRY_REPO
  value: /platform-repo
- name: TENANTRY_TOOLS_DIR
  value: {{ .Values.image.toolsDir | quote }}
- name: TENANTRY_STATE_DIR
  value: /var/lib/tenantry
- name: HOME
  value: /tmp
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- end }}

{{- define "tenantry.envFrom" -}}
{{- with .Values.envFrom }}
envFrom:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{- define "tenantry.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: state
  mountPath: /var/lib/tenantry
- name: platform-repo
  mountPath: /platform-repo
  readOnly: true
{{- if .Values.kubeconfigs.existingSecret }}
- name: kubeconfigs
  mountPath: /etc/tenantry/kubeconfigs
  readOnly: true
{{- end }}
{{- end }}

{{- define "tenantry.volumes" -}}
- name: tmp
  emptyDir: {}
- name: state
  emptyDir: {}
{{- if .Values.platformRepo.configMap }}
- name: platform-repo
  configMap:
    name: {{ .Values.platformRepo.configMap }}
    {{- with .Values.platformRepo.items }}
    items:
      {{- toYaml . | nindent 6 }}
    {{- end }}
{{- else }}
- name: platform-repo
  emptyDir: {}
{{- end }}
{{- if .Values.kubeconfigs.existingSecret }}
- name: kubeconfigs
  secret:
    secretName: {{ .Values.kubeconfigs.existingSecret }}
    defaultMode: 0400
{{- end }}
{{- end }}

{{/* The git checkout of the platform repository, when that is its source. It runs the
     tenantry image (which has git, for `tenantry verify`) so no second image is pulled;
     URL and ref come in as environment variables, never spliced into the shell script.
     Fetching one ref with depth 1 works for branches, tags and commits alike. */}}
{{- define "tenantry.initContainers" -}}
{{- if .Values.platformRepo.git.url }}
initContainers:
  - name: platform-repo
    image: {{ printf "%s:%s" .Values.image.repository (include "tenantry.imageTag" .) | quote }}
    imagePullPolicy: {{ .Values.image.pullPolicy }}
    command: [sh, -ec]
    args:
      - |
        git init --quiet /platform-repo
        git -C /platform-repo fetch --quiet --depth 1 "$REPO_URL" "$REPO_REF"
        git -C /platform-repo checkout --quiet FETCH_HEAD
    env:
      - name: REPO_URL
        value: {{ .Values.platformRepo.git.url | quote }}
      - name: REPO_REF
        value: {{ .Values.platformRepo.git.ref | default "main" | quote }}
      - name: HOME
        value: /tmp
    resources:
      requests: {cpu: 50m, memory: 64Mi}
      limits: {cpu: 500m, memory: 256Mi}
    securityContext:
      {{- include "tenantry.containerSecurityContext" . | nindent 6 }}
    volumeMounts:
      - name: tmp
        mountPath: /tmp
      - name: platform-repo
        mountPath: /platform-repo
{{- end }}
{{- end }}

{{- define "tenantry.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{- define "tenantry.metricsProbe" -}}
import urllib.request; urllib.request.urlopen('http://127.0.0.1:{{ .Values.deployer.metricsPort }}/metrics', timeout=4).read()
{{- end }}

{{- /* The rules both components need; the server adds TokenReview. Nothing here can
       change tenancy (namespaces, quotas, RBAC, admission policy): `tenantry tenants
       apply` stays a platform-team command run with the team's own credentials, so a
       compromised server cannot onboard, widen or delete a tenant. */}}
{{- define "tenantry.sharedRules" }}
  # Every action for a tenant runs as that tenant's ServiceAccount `tenantry-deployer`
  # (impersonation), so the API server's RBAC, quota and admission decide what a tenant's
  # chart may do. resourceNames limits this to ServiceAccounts with that name: no other
  # ServiceAccount, and no users or groups (those are separate resources, not granted).
  - apiGroups: [""]
    resources: [serviceaccounts]
    verbs: [impersonate]
    resourceNames: [tenantry-deployer]
  # Status: which tenants exist, their quota use, and what each service runs. Read-only;
  # no Secrets (a tenant's secrets are none of the platform's business).
  - apiGroups: [""]
    resources: [namespaces, resourcequotas, pods]
    verbs: [get, list, watch]
  - apiGroups: [apps]
    resources: [deployments]
    verbs: [get, list, watch]
{{- end }}
