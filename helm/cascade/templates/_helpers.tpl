{{/* Names, labels and images shared by the templates. */}}

{{- define "cascade.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-cascade, or the release name alone when it already says cascade. */}}
{{- define "cascade.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "cascade.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/part-of: cascade
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: (dict "ctx" $ "component" "edge") */}}
{{- define "cascade.selector" -}}
app.kubernetes.io/name: {{ include "cascade.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "cascade.componentLabels" -}}
{{ include "cascade.labels" .ctx }}
{{ include "cascade.selector" . }}
{{- end -}}

{{/* <registry>/<repository>:<tag>: (dict "ctx" $ "image" .Values.edge.image) */}}
{{- define "cascade.image" -}}
{{- $tag := .image.tag | default .ctx.Values.image.tag | default .ctx.Chart.AppVersion -}}
{{- if contains "/" .image.repository -}}
{{- printf "%s:%s" .image.repository $tag -}}
{{- else -}}
{{- printf "%s/%s:%s" .ctx.Values.image.registry .image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "cascade.redisHost" -}}
{{- printf "%s-redis" (include "cascade.fullname" .) -}}
{{- end -}}

{{/* The Redis URL every component uses. With redis.passwordSecret, the password goes in
through $(REDIS_PASSWORD), which Kubernetes expands from the variable defined before it. */}}
{{- define "cascade.redisUrl" -}}
{{- $url := "" -}}
{{- $s := .Values.redis.sentinel -}}
{{- if .Values.redis.enabled -}}
{{- $url = printf "redis://%s.%s.svc:6379/0" (include "cascade.redisHost" .) .Release.Namespace -}}
{{- else if and (not .Values.redis.externalUrl) $s.hosts -}}
{{- $url = printf "redis+sentinel://%s/%s/%v" (join "," $s.hosts) $s.masterName $s.db -}}
{{- if and $s.usePassword .Values.redis.passwordSecret -}}
{{- $url = printf "%s?sentinel_password=$(REDIS_PASSWORD)" $url -}}
{{- end -}}
{{- else -}}
{{- $url = required "redis.externalUrl (or redis.sentinel.hosts) is required when redis.enabled is false" .Values.redis.externalUrl -}}
{{- end -}}
{{- if .Values.redis.passwordSecret -}}
{{- regexReplaceAll "^(rediss?://|redis\\+sentinel://)" $url "${1}:$(REDIS_PASSWORD)@" -}}
{{- else -}}
{{- $url -}}
{{- end -}}
{{- end -}}

{{/* REDIS_PASSWORD (when a Secret is named), then REDIS_URL. */}}
{{- define "cascade.redisEnv" -}}
{{- if .Values.redis.passwordSecret }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.passwordSecret }}
      key: password
{{- end }}
- name: REDIS_URL
  value: {{ include "cascade.redisUrl" . | quote }}
{{- end -}}

{{- define "cascade.objectStoreEnv" -}}
{{- with .Values.recording }}
{{- if .endpoint }}
- {name: CASCADE_S3_ENDPOINT, value: {{ .endpoint | quote }}}
- {name: CASCADE_S3_BUCKET, value: {{ .bucket | quote }}}
- {name: CASCADE_S3_PREFIX, value: {{ .prefix | quote }}}
- {name: CASCADE_S3_REGION, value: {{ .region | quote }}}
{{- if .secretName }}
- name: AWS_ACCESS_KEY_ID
  valueFrom: {secretKeyRef: {name: {{ .secretName | quote }}, key: AWS_ACCESS_KEY_ID}}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom: {secretKeyRef: {name: {{ .secretName | quote }}, key: AWS_SECRET_ACCESS_KEY}}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "cascade.edgeUrl" -}}
{{- if .Values.playbackBaseUrl -}}
{{- .Values.playbackBaseUrl -}}
{{- else -}}
{{- printf "http://%s-edge.%s.svc:%v" (include "cascade.fullname" .) .Release.Namespace .Values.edge.service.port -}}
{{- end -}}
{{- end -}}

{{/* The hardened container securityContext every Cascade container runs with. */}}
{{- define "cascade.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "cascade.podSecurity" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}
