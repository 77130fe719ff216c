{{- /*
Registry-aware swapping (registryCheck, registryAuth, registryCa): the serve flags, the read-only
mounts of the credentials and CA, --request-timeout from webhook.timeoutSeconds, and the check that
the API server and the server's request deadline wait longer than a lookup.
*/ -}}

{{- /*
A duration value in milliseconds, given as (list NAME VALUE): `1s`, `500ms`, `1m30s` (whole numbers;
units ms, s, m, h). Anything else fails the render naming the value, so that a unit this helper
does not know (`1d`, `500us`) or a malformed value (`1 s`) is never read as 0.
*/ -}}
{{- define "mirrorswap.durationMs" -}}
{{- $name := index . 0 }}
{{- $value := toString (index . 1) }}
{{- if not (regexMatch "^([0-9]+(ms|s|m|h))+$" $value) }}
{{- fail (printf "%s (%q) is not a duration the chart reads: write whole numbers with the units ms, s, m or h, such as 1s, 500ms or 1m30s" $name $value) }}
{{- end }}
{{- $total := 0 }}
{{- range regexFindAll "[0-9]+(ms|s|m|h)" $value -1 }}
{{- if hasSuffix "ms" . }}{{- $total = add $total (int64 (trimSuffix "ms" .)) }}
{{- else if hasSuffix "s" . }}{{- $total = add $total (mul (int64 (trimSuffix "s" .)) 1000) }}
{{- else if hasSuffix "m" . }}{{- $total = add $total (mul (int64 (trimSuffix "m" .)) 60000) }}
{{- else }}{{- $total = add $total (mul (int64 (trimSuffix "h" .)) 3600000) }}
{{- end }}
{{- end }}
{{- $total }}
{{- end }}

{{- /*
The server's --request-timeout is webhook.timeoutSeconds: the API server gives up then, so
mirrorswap should not give up earlier (its default, 5s, answered 408 to requests the API server
still waited for) nor hold the work longer. A --request-timeout in server.extraArgs would
contradict it: the render fails naming the value to set instead.
*/ -}}
{{- define "mirrorswap.requestTimeoutArg" -}}
{{- range .Values.server.extraArgs }}
{{- if hasPrefix "--request-timeout" (toString .) }}
{{- fail (printf "server.extraArgs sets %s: the chart sets --request-timeout from webhook.timeoutSeconds; set webhook.timeoutSeconds instead" (toString .)) }}
{{- end }}
{{- end }}
{{- printf "--request-timeout=%ds" (int .Values.webhook.timeoutSeconds) }}
{{- end }}

{{- /*
With swapPolicy exists, every admission request may wait up to registryCheck.timeout for the
registry; the API server, and mirrorswap's --request-timeout (both webhook.timeoutSeconds), must
wait at least a second longer (TLS, parsing, the answer), or they give up first and apply
failurePolicy to a request mirrorswap would have answered.
*/ -}}
{{- define "mirrorswap.checkRegistryTimeout" -}}
{{- $check := .Values.registryCheck }}
{{- if eq $check.swapPolicy "exists" }}
{{- $checkMs := int64 (include "mirrorswap.durationMs" (list "registryCheck.timeout" $check.timeout)) }}
{{- $webhookMs := mul (int64 .Values.webhook.timeoutSeconds) 1000 }}
{{- if lt $webhookMs (add $checkMs 1000) }}
{{- fail (printf "webhook.timeoutSeconds (%vs) must be at least registryCheck.timeout (%s) plus 1s: the API server, and mirrorswap's --request-timeout (set from webhook.timeoutSeconds), would give up while mirrorswap still waits for the registry. Raise webhook.timeoutSeconds (at most 30) or lower registryCheck.timeout" .Values.webhook.timeoutSeconds $check.timeout) }}
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
- --check-max-lookups={{ int64 $check.maxLookups }}
- --check-host-concurrency={{ int64 $check.hostConcurrency }}
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
