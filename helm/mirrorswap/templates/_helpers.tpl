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
Where the rules come from, as JSON: source (the value that decided), reason (for NOTES), secret
(NAMESPACE/NAME:KEY read through the API, or ""), configMap and key (the mounted ConfigMap),
generated (the chart writes that ConfigMap), format. An explicit source (rules.fromSecret.name,
rules.existingConfigMap.name, rules.inline, imageSwap.imageChange) always wins over Palette's
values; two explicit sources fail the render. Without one, Palette's jet-system/registry-info
Secret is used when it exists (lookup, or palette.detectedSecret for tests and dry runs), else
the config.ociImageRegistry.mirrorRegistries list.
*/}}
{{- define "mirrorswap.rulesChoice" -}}
{{- $rules := .Values.rules -}}
{{- $from := $rules.fromSecret -}}
{{- $imageChange := dig "imageChange" "" (.Values.imageSwap | default dict) -}}
{{- $explicit := list -}}
{{- if $from.name }}{{ $explicit = append $explicit "rules.fromSecret" }}{{ end -}}
{{- if $rules.existingConfigMap.name }}{{ $explicit = append $explicit "rules.existingConfigMap" }}{{ end -}}
{{- if $rules.inline }}{{ $explicit = append $explicit "rules.inline" }}{{ end -}}
{{- if $imageChange }}{{ $explicit = append $explicit "imageSwap.imageChange" }}{{ end -}}
{{- if gt (len $explicit) 1 -}}
{{- fail (printf "rules: %s are set, but the rules come from one source only: keep one of them" (join " and " $explicit)) -}}
{{- end -}}
{{- $palette := include "mirrorswap.paletteRegistry" . -}}
{{- $generated := printf "%s-rules" (include "mirrorswap.fullname" .) -}}
{{- $choice := dict "secret" "" "configMap" $generated "key" "rules.conf" "generated" true "format" "maps" -}}
{{- $ignored := "" -}}
{{- if $palette }}{{ $ignored = " Palette's values (config.ociImageRegistry) are ignored: an explicit source wins over them." }}{{ end -}}
{{- if $explicit -}}
{{- $_ := set $choice "source" (first $explicit) -}}
{{- if $from.name -}}
{{- $_ := set $choice "secret" (printf "%s/%s:%s" $from.namespace $from.name $from.key) -}}
{{- $_ := set $choice "format" $rules.format -}}
{{- $_ := set $choice "reason" (printf "rules.fromSecret.name is set.%s" $ignored) -}}
{{- else if $rules.existingConfigMap.name -}}
{{- $_ := set $choice "configMap" $rules.existingConfigMap.name -}}
{{- $_ := set $choice "key" $rules.existingConfigMap.key -}}
{{- $_ := set $choice "generated" false -}}
{{- $_ := set $choice "format" $rules.format -}}
{{- $_ := set $choice "reason" (printf "rules.existingConfigMap.name is set.%s" $ignored) -}}
{{- else -}}
{{- $_ := set $choice "reason" (printf "%s is set; the chart writes it into the ConfigMap %s.%s" (first $explicit) $generated $ignored) -}}
{{- end -}}
{{- else if $palette -}}
{{- $detected := false -}}
{{- if $from.paletteRegistryInfo -}}
{{- $override := (.Values.palette | default dict).detectedSecret | default "" -}}
{{- if eq $override "present" }}{{ $detected = true }}
{{- else if eq $override "" }}{{ $detected = not (empty (lookup "v1" "Secret" "jet-system" "registry-info")) }}
{{- end -}}
{{- end -}}
{{- if $detected -}}
{{- $_ := set $choice "source" "Palette's jet-system/registry-info Secret" -}}
{{- $_ := set $choice "secret" (printf "jet-system/registry-info:%s" $from.key) -}}
{{- $_ := set $choice "reason" "config.ociImageRegistry is set, no explicit rules source is, and the Secret jet-system/registry-info exists (rules.fromSecret.paletteRegistryInfo: false turns this off)." -}}
{{- else if dig "ociImageRegistry" "mirrorRegistries" "" (.Values.config | default dict) -}}
{{- $_ := set $choice "source" "config.ociImageRegistry.mirrorRegistries" -}}
{{- $_ := set $choice "reason" (printf "Palette's values are set, no explicit rules source is, and jet-system/registry-info was not found (or not looked for); the chart writes the list into the ConfigMap %s." $generated) -}}
{{- else -}}
{{- $_ := set $choice "source" "" -}}
{{- $_ := set $choice "reason" "config.ociImageRegistry is set without mirrorRegistries, and jet-system/registry-info was not found." -}}
{{- end -}}
{{- else -}}
{{- $_ := set $choice "source" "" -}}
{{- $_ := set $choice "reason" "no rules value is set." -}}
{{- end -}}
{{- toJson $choice -}}
{{- end -}}

{{/* The Secret the rules are read from through the API (NAMESPACE/NAME:KEY), or "". */}}
{{- define "mirrorswap.rulesSecret" -}}
{{- (include "mirrorswap.rulesChoice" . | fromJson).secret -}}
{{- end -}}

{{/* Non-empty when Palette's config.ociImageRegistry is given (an endpoint or a mirror list). */}}
{{- define "mirrorswap.paletteRegistry" -}}
{{- $registry := dig "ociImageRegistry" dict (.Values.config | default dict) -}}
{{- or (dig "endpoint" "" $registry) (dig "mirrorRegistries" "" $registry) -}}
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

{{/*
What the API server sends: Pods at creation and the pods/ephemeralcontainers subresource on
update (`kubectl debug`), never other Pod updates (labels, finalizers, deletion must not wait for
mirrorswap). webhook.workloads adds the pod templates of workloads, on CREATE and UPDATE.
*/}}
{{- define "mirrorswap.webhookRules" -}}
- {apiGroups: [""], apiVersions: ["v1"], operations: ["CREATE"], resources: ["pods"], scope: Namespaced}
- {apiGroups: [""], apiVersions: ["v1"], operations: ["UPDATE"], resources: ["pods/ephemeralcontainers"], scope: Namespaced}
{{- if .Values.webhook.workloads }}
- {apiGroups: ["apps"], apiVersions: ["v1"], operations: ["CREATE", "UPDATE"], resources: ["deployments", "statefulsets", "daemonsets", "replicasets"], scope: Namespaced}
- {apiGroups: [""], apiVersions: ["v1"], operations: ["CREATE", "UPDATE"], resources: ["replicationcontrollers", "podtemplates"], scope: Namespaced}
- {apiGroups: ["batch"], apiVersions: ["v1"], operations: ["CREATE", "UPDATE"], resources: ["jobs", "cronjobs"], scope: Namespaced}
{{- end }}
{{- end -}}

{{/*
Fails on host-network ports that cannot start: the webhook and admin ports equal (the second
bind fails), below 1024 (the container has no capabilities), or one a node component listens on.
*/}}
{{- define "mirrorswap.checkPorts" -}}
{{- if .Values.hostNetwork.enabled -}}
{{- $reserved := dict "2379" "etcd" "2380" "etcd peers" "6443" "kube-apiserver" "10248" "kubelet healthz" "10249" "kube-proxy metrics" "10250" "kubelet API" "10255" "kubelet read-only API" "10256" "kube-proxy healthz" "10257" "kube-controller-manager" "10259" "kube-scheduler" -}}
{{- $webhook := int .Values.hostNetwork.webhookPort -}}
{{- $admin := int .Values.hostNetwork.adminPort -}}
{{- if eq $webhook $admin -}}
{{- fail (printf "hostNetwork.webhookPort and hostNetwork.adminPort are both %d: on the host network they need two different ports" $webhook) -}}
{{- end -}}
{{- range $name, $port := dict "hostNetwork.webhookPort" $webhook "hostNetwork.adminPort" $admin -}}
{{- if lt $port 1024 -}}
{{- fail (printf "%s=%d: ports below 1024 need a capability the container does not have; use 1024 or above (default 10443/10444)" $name $port) -}}
{{- end -}}
{{- with get $reserved (toString $port) -}}
{{- fail (printf "%s=%d is the %s port on every node: pick another (default 10443/10444)" $name $port .) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
