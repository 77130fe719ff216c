{{- /*
Registry-aware swapping (registryCheck, registryAuth, registryCa): the serve flags, the read-only
mounts of the credentials and CA, and the check that the API server waits longer than a lookup.
*/ -}}

{{- /* A duration of registryCheck (`1s`, `500ms`, `1m30s`) in milliseconds. */ -}}
{{- define "mirrorswap.durationMs" -}}
{{- $total := 0 }}
{{- range regexFindAll "[0-9]+(ms|s|m|h)" . -1 }}
{{- if hasSuffix "ms" . }}{{- $total = add $total (int (trimSuffix "ms" .)) }}
{{- else if hasSuffix "s" . }}{{- $total = add $total (mul (int (trimSuffix "s" .)) 1000) }}
{{- else if hasSuffix "m" . }}{{- $total = add $total (mul (int (trimSuffix "m" .)) 60000) }}
{{- else }}{{- $total = add $total (mul (int (trimSuffix "h" .)) 3600000) }}
{{- end }}
{{- end }}
{{- $total }}
{{- end }}

{{- /*
With swapPolicy exists, every admission request may wait up to registryCheck.timeout for the
registry; the API server must wait at least a second longer (TLS, parsing, the answer), or it
gives up first and applies failurePolicy to a request mirrorswap would have answered.
*/ -}}
{{- define "mirrorswap.checkRegistryTimeout" -}}
{{- $check := .Values.registryCheck }}
{{- if eq $check.swapPolicy "exists" }}
{{- $checkMs := int (include "mirrorswap.durationMs" $check.timeout) }}
{{- $webhookMs := mul (int .Values.webhook.timeoutSeconds) 1000 }}
{{- if lt $webhookMs (add $checkMs 1000) }}
{{- fail (printf "webhook.timeoutSeconds (%vs) must be at least registryCheck.timeout (%s) plus 1s: the API server would give up on mirrorswap while it still waits for the registry. Raise webhook.timeoutSeconds (at most 30) or lower registryCheck.timeout" .Values.webhook.timeoutSeconds $check.timeout) }}
{{- end }}
{{- end }}
{{- end }}

{{- define "mirrorswap.registryCheckArgs" -}}
{{- $check := .Values.registryCheck }}
{{- /* always is the server's default: no flag, so the rendered args stay what they were. */ -}}
{{- if eq $check.swapPolicy "exists" }}
- --swap-policy=exists
- --on-check-error={{ $check.onCheckError }}
- --check-timeout={{ $check.timeout }}
- --check-cache-ttl={{ $check.cacheTTL }}
- --check-negative-ttl={{ $check.negativeTTL }}
- --check-cache-entries={{ int64 $check.cacheEntries }}
- --check-backoff={{ $check.backoff }}
{{- end }}
{{- if .Values.registryAuth.existingSecret }}
- --registry-auth=/etc/mirrorswap/registry-auth/.dockerconfigjson
{{- end }}
{{- with include "mirrorswap.registryCaSource" . }}
- --registry-ca=/etc/mirrorswap/registry-ca/{{ $.Values.registryCa.key }}
{{- end }}
{{- range $check.insecureRegistries }}
- --insecure-registry={{ . }}
{{- end }}
{{- end }}

{{- /* "secret" or "configMap" when registryCa names one (both fail the render), else "". */ -}}
{{- define "mirrorswap.registryCaSource" -}}
{{- $ca := .Values.registryCa }}
{{- if and $ca.existingSecret $ca.existingConfigMap }}
{{- fail (printf "registryCa.existingSecret (%s) and registryCa.existingConfigMap (%s) are both set: the CA bundle comes from one of them" $ca.existingSecret $ca.existingConfigMap) }}
{{- else if $ca.existingSecret }}secret
{{- else if $ca.existingConfigMap }}configMap
{{- end }}
{{- end }}

{{- define "mirrorswap.registryCheckMounts" -}}
{{- if .Values.registryAuth.existingSecret }}
- name: registry-auth
  mountPath: /etc/mirrorswap/registry-auth
  readOnly: true
{{- end }}
{{- if include "mirrorswap.registryCaSource" . }}
- name: registry-ca
  mountPath: /etc/mirrorswap/registry-ca
  readOnly: true
{{- end }}
{{- end }}

{{- /* Whole-directory mounts (no subPath), so an edited Secret or ConfigMap reaches the pod and is reloaded. */ -}}
{{- define "mirrorswap.registryCheckVolumes" -}}
{{- with .Values.registryAuth.existingSecret }}
- name: registry-auth
  secret:
    secretName: {{ . }}
    items:
      - key: .dockerconfigjson
        path: .dockerconfigjson
{{- end }}
{{- $source := include "mirrorswap.registryCaSource" . }}
{{- $ca := .Values.registryCa }}
{{- if eq $source "secret" }}
- name: registry-ca
  secret:
    secretName: {{ $ca.existingSecret }}
    items:
      - key: {{ $ca.key }}
        path: {{ $ca.key }}
{{- else if eq $source "configMap" }}
- name: registry-ca
  configMap:
    name: {{ $ca.existingConfigMap }}
    items:
      - key: {{ $ca.key }}
        path: {{ $ca.key }}
{{- end }}
{{- end }}
