{{/* Name of the chart's objects. */}}
{{- define "mirrorswap.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Selector labels. */}}
{{- define "mirrorswap.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Standard labels. */}}
{{- define "mirrorswap.labels" -}}
{{ include "mirrorswap.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: admission-webhook
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "mirrorswap.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "mirrorswap.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "mirrorswap.tlsSecretName" -}}
{{- if eq .Values.certificates.mode "existing" -}}
{{- required "certificates.existing.secretName is required with certificates.mode=existing" .Values.certificates.existing.secretName -}}
{{- else -}}
{{- printf "%s-tls" (include "mirrorswap.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "mirrorswap.rulesConfigMap" -}}
{{- default (printf "%s-rules" (include "mirrorswap.fullname" .)) .Values.rules.existingConfigMap.name -}}
{{- end -}}

{{- define "mirrorswap.rulesKey" -}}
{{- if .Values.rules.existingConfigMap.name -}}{{ .Values.rules.existingConfigMap.key }}{{- else -}}rules.conf{{- end -}}
{{- end -}}

{{- define "mirrorswap.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "mirrorswap.webhookPort" -}}
{{- if .Values.hostNetwork.enabled -}}{{ .Values.hostNetwork.webhookPort }}{{- else -}}8443{{- end -}}
{{- end -}}

{{- define "mirrorswap.adminPort" -}}
{{- if .Values.hostNetwork.enabled -}}{{ .Values.hostNetwork.adminPort }}{{- else -}}8080{{- end -}}
{{- end -}}
