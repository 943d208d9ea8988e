{{- define "web.labels" -}}
app.kubernetes.io/name: web
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
tenantry.dev/tenant: checkout
tenantry.dev/service: web
{{- end }}
