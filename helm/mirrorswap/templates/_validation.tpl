{{- /*
The leak guard (validation.enabled): a ValidatingWebhookConfiguration calling POST /validate.
webhook.yaml includes "mirrorswap.validatingWebhook" with the mutating webhook's settings, so
the validating one uses the same certificate (caBundle, or cert-manager's injection) and the same
namespaceSelectors and resources: it checks exactly the pods the mutating webhook rewrites, after
every mutating webhook (sidecar injectors included) has run.

Failure policy, the trade-off (validation.failurePolicy):
  Ignore (default): while mirrorswap is unreachable, pods are admitted unchecked. Nothing is ever
    blocked by an outage of mirrorswap, but an image from outside the mirrors may slip through
    during one (the mutating webhook, with failurePolicy Ignore, may have been skipped too —
    which is exactly what the guard reports when it is up).
  Fail: while mirrorswap is unreachable, no pod in the selected namespaces can be created (the
    release namespace and webhook.excludeNamespaces stay exempt, so mirrorswap itself can start).
    For clusters that must prove nothing is ever pulled from outside the mirrors; run >= 2
    replicas with the PodDisruptionBudget.

Exemptions (validation.honorObjectOptOut): the guard checks what the namespaceSelector sends it,
so namespaces are exempted there (labels, webhook.excludeNamespaces). A pod's own opt-out label or
annotation is set by whoever writes the pod, so it exempts nothing unless honorObjectOptOut is
true (--guard-honors-object-opt-out).
*/ -}}
{{- define "mirrorswap.validatingWebhook" -}}
{{- $ctx := .ctx }}
{{- if $ctx.Values.validation.enabled }}
{{- $fullname := include "mirrorswap.fullname" $ctx }}
{{- $webhooks := list }}
{{- range .webhooks }}
{{- $webhook := deepCopy . }}
{{- $_ := unset $webhook "reinvocationPolicy" }}
{{- $_ := set $webhook "name" (printf "validate-%s" $webhook.name) }}
{{- $_ := set $webhook "failurePolicy" $ctx.Values.validation.failurePolicy }}
{{- $_ := set $webhook.clientConfig.service "path" "/validate" }}
{{- $webhooks = append $webhooks $webhook }}
{{- end }}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: {{ $fullname }}
  labels:
    {{- include "mirrorswap.labels" $ctx | nindent 4 }}
  {{- if eq $ctx.Values.certificates.mode "cert-manager" }}
  annotations:
    cert-manager.io/inject-ca-from: {{ printf "%s/%s" $ctx.Release.Namespace $fullname }}
  {{- end }}
webhooks:
  {{- toYaml $webhooks | nindent 2 }}
{{- end }}
{{- end }}

{{- /* The server flags of the leak guard, one per line, for the container's args. */ -}}
{{- define "mirrorswap.validationArgs" -}}
{{- if .Values.validation.enabled }}
- --unmirrored={{ .Values.validation.unmirrored }}
{{- range .Values.validation.allowRegistries }}
- --allow-registry={{ . }}
{{- end }}
{{- if .Values.validation.honorObjectOptOut }}
- --guard-honors-object-opt-out
{{- end }}
{{- if .Values.validation.requireDigest }}
- --require-digest
{{- end }}
{{- end }}
{{- end }}
