{{- /*
Copy on a miss (copyOnMiss): the serve flags, and the read-only mount of the sources' logins
(copyOnMiss.sourceAuth.existingSecret, a kubernetes.io/dockerconfigjson Secret). Off by default;
rendered only when enabled, and only with registryCheck.swapPolicy exists (else the render fails).
*/ -}}
{{- define "mirrorswap.copyOnMissArgs" -}}
{{- $copy := .Values.copyOnMiss }}
{{- if $copy.enabled }}
{{- if ne .Values.registryCheck.swapPolicy "exists" }}
{{- fail "copyOnMiss.enabled needs registryCheck.swapPolicy exists: only the mirror's answers say which images it lacks" }}
{{- end }}
- --copy-on-miss
{{- with $copy.allowSources }}
- --copy-allow-source={{ join "," . }}
{{- end }}
- --copy-queue={{ int64 $copy.queue }}
- --copy-concurrency={{ int64 $copy.concurrency }}
- --copy-max-bytes={{ $copy.maxBytes }}
- --copy-timeout={{ $copy.timeout }}
{{- if $copy.sourceAuth.existingSecret }}
- --source-auth=/etc/mirrorswap/source-auth/.dockerconfigjson
{{- end }}
{{- end }}
{{- end }}

{{- define "mirrorswap.copyOnMissMounts" -}}
{{- if and .Values.copyOnMiss.enabled .Values.copyOnMiss.sourceAuth.existingSecret }}
- name: source-auth
  mountPath: /etc/mirrorswap/source-auth
  readOnly: true
{{- end }}
{{- end }}

{{- define "mirrorswap.copyOnMissVolumes" -}}
{{- if .Values.copyOnMiss.enabled }}
{{- with .Values.copyOnMiss.sourceAuth.existingSecret }}
- name: source-auth
  secret:
    secretName: {{ . }}
    items:
      - key: .dockerconfigjson
        path: .dockerconfigjson
{{- end }}
{{- end }}
{{- end }}
