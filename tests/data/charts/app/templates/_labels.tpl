{{- define "fixture.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
tenantry.dev/tenant: {{ .Values.tenant }}
tenantry.dev/service: {{ .Chart.Name }}
{{- end }}
