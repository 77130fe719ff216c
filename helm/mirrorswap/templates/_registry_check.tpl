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

{{- /*
Palette's image-swap values (config.ociImageRegistry: endpoint, username, password, caCert,
insecureSkipVerify) for the registry checks, as JSON: {"host", "auth", "ca", "insecure"}, each
set only when the checks run (swapPolicy exists) and the value is given. The credentials and the
CA go into a Secret the chart renders (templates/registry-secret.yaml), mounted like
registryAuth.existingSecret and registryCa, never into args, env or NOTES. A value given twice
(Palette's and the chart's own) or half given fails the render, naming what to set.
*/ -}}
{{- define "mirrorswap.paletteRegistryCheck" -}}
{{- $registry := dig "ociImageRegistry" dict (.Values.config | default dict) }}
{{- $out := dict }}
{{- if eq .Values.registryCheck.swapPolicy "exists" }}
{{- $endpoint := toString (dig "endpoint" "" $registry) }}
{{- $host := regexReplaceAll "^[a-zA-Z][a-zA-Z0-9+.-]*://" $endpoint "" | splitList "/" | first }}
{{- $username := toString (dig "username" "" $registry) }}
{{- $password := toString (dig "password" "" $registry) }}
{{- $ca := toString (dig "caCert" "" $registry) }}
{{- $insecure := dig "insecureSkipVerify" false $registry }}
{{- $given := or $username $password $ca $insecure }}
{{- if and $given (not $host) }}
{{- fail "config.ociImageRegistry has credentials, caCert or insecureSkipVerify but no endpoint: set config.ociImageRegistry.endpoint to the mirror's host (such as harbor.example.org) so that the registry checks (registryCheck.swapPolicy exists) use them for it" }}
{{- end }}
{{- if and $username (not $password) }}
{{- fail "config.ociImageRegistry.username is set without config.ociImageRegistry.password: set the password too (or remove the username) so that the registry checks can log in to the mirror" }}
{{- end }}
{{- if and $password (not $username) }}
{{- fail "config.ociImageRegistry.password is set without config.ociImageRegistry.username: set the username too so that the registry checks can log in to the mirror" }}
{{- end }}
{{- if and $username .Values.registryAuth.existingSecret }}
{{- fail (printf "config.ociImageRegistry.username/password and registryAuth.existingSecret (%s) both give the mirror's credentials for the registry checks: keep one" .Values.registryAuth.existingSecret) }}
{{- end }}
{{- if and $ca (or .Values.registryCa.existingSecret .Values.registryCa.existingConfigMap) }}
{{- fail "config.ociImageRegistry.caCert and registryCa both give the mirror's CA for the registry checks: keep one" }}
{{- end }}
{{- if and $ca (not (contains "-----BEGIN CERTIFICATE-----" $ca)) }}
{{- fail "config.ociImageRegistry.caCert holds no PEM certificate (-----BEGIN CERTIFICATE-----): give the mirror's CA in PEM" }}
{{- end }}
{{- $_ := set $out "host" $host }}
{{- if $username }}{{- $_ := set $out "auth" true }}{{- end }}
{{- if $ca }}{{- $_ := set $out "ca" true }}{{- end }}
{{- if $insecure }}{{- $_ := set $out "insecure" true }}{{- end }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{- /* The name of the Secret holding Palette's credentials and CA for the checks. */ -}}
{{- define "mirrorswap.paletteRegistrySecret" -}}
{{- printf "%s-registry-check" (include "mirrorswap.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mirrorswap.registryCheckArgs" -}}
{{- $check := .Values.registryCheck }}
{{- $palette := include "mirrorswap.paletteRegistryCheck" . | fromJson }}
{{- if and (ne $check.swapPolicy "exists") (or $check.pinDigest $check.requirePlatforms) }}
{{- fail "registryCheck.pinDigest and registryCheck.requirePlatforms need registryCheck.swapPolicy exists: the digest and the platforms come from the mirror's answer, and with always no registry is asked" }}
{{- end }}
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
{{- if $check.pinDigest }}
- --pin-digest
{{- end }}
{{- with $check.requirePlatforms }}
- --require-platforms={{ join "," . }}
{{- end }}
{{- end }}
{{- if or .Values.registryAuth.existingSecret $palette.auth }}
- --registry-auth=/etc/mirrorswap/registry-auth/.dockerconfigjson
{{- end }}
{{- with include "mirrorswap.registryCaSource" . }}
- --registry-ca=/etc/mirrorswap/registry-ca/{{ $.Values.registryCa.key }}
{{- end }}
{{- if $palette.ca }}
- --registry-ca=/etc/mirrorswap/registry-ca/ca.crt
{{- end }}
{{- range $check.insecureRegistries }}
- --insecure-registry={{ . }}
{{- end }}
{{- if and $palette.insecure (not (has $palette.host $check.insecureRegistries)) }}
- --insecure-registry={{ $palette.host }}
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
{{- $palette := include "mirrorswap.paletteRegistryCheck" . | fromJson }}
{{- if or .Values.registryAuth.existingSecret $palette.auth }}
- name: registry-auth
  mountPath: /etc/mirrorswap/registry-auth
  readOnly: true
{{- end }}
{{- if or (include "mirrorswap.registryCaSource" .) $palette.ca }}
- name: registry-ca
  mountPath: /etc/mirrorswap/registry-ca
  readOnly: true
{{- end }}
{{- end }}

{{- /* Whole-directory mounts (no subPath), so an edited Secret or ConfigMap reaches the pod and is reloaded. */ -}}
{{- define "mirrorswap.registryCheckVolumes" -}}
{{- $palette := include "mirrorswap.paletteRegistryCheck" . | fromJson }}
{{- with .Values.registryAuth.existingSecret }}
- name: registry-auth
  secret:
    secretName: {{ . }}
    items:
      - key: .dockerconfigjson
        path: .dockerconfigjson
{{- end }}
{{- if $palette.auth }}
- name: registry-auth
  secret:
    secretName: {{ include "mirrorswap.paletteRegistrySecret" . }}
    items:
      - key: .dockerconfigjson
        path: .dockerconfigjson
{{- end }}
{{- if $palette.ca }}
- name: registry-ca
  secret:
    secretName: {{ include "mirrorswap.paletteRegistrySecret" . }}
    items:
      - key: ca.crt
        path: ca.crt
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
