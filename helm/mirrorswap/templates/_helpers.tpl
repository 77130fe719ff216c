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

{{/*
The Secret the rules come from through the API, as NAMESPACE/NAME:KEY, or "" when rules come
from the ConfigMap: rules.fromSecret.name if set, else Palette's jet-system/registry-info when
Palette values are given and that Secret exists (lookup is empty under `helm template`).
*/}}
{{- define "mirrorswap.rulesSecret" -}}
{{- $from := .Values.rules.fromSecret -}}
{{- if $from.name -}}
{{- printf "%s/%s:%s" $from.namespace $from.name $from.key -}}
{{- else if and $from.paletteRegistryInfo (include "mirrorswap.paletteRegistry" .) (lookup "v1" "Secret" "jet-system" "registry-info") -}}
{{- printf "jet-system/registry-info:%s" $from.key -}}
{{- end -}}
{{- end -}}

{{/* Non-empty when Palette's config.ociImageRegistry is given (an endpoint or a mirror list). */}}
{{- define "mirrorswap.paletteRegistry" -}}
{{- $registry := dig "ociImageRegistry" dict (.Values.config | default dict) -}}
{{- or (dig "endpoint" "" $registry) (dig "mirrorRegistries" "" $registry) -}}
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
