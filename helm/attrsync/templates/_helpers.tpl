{{/*
Facts about the binaries that are not settings, from services.json (the one list of services,
also read by deploy/run.sh and the e2e tests): each service's binary, environment prefix, schema,
gRPC port, HTTP ops port (/healthz, /readyz, /metrics; ingest's webhooks too), whether it reads
DATABASE_URL / KAFKA_BOOTSTRAP, and its start order. Rendered as YAML: name -> facts.
*/}}
{{- define "attrsync.facts" -}}
{{- $doc := .Files.Get "services.json" | fromJson -}}
{{- if not (kindIs "slice" (get $doc "services")) -}}
{{- fail (printf "services.json: missing or not a JSON object with a \"services\" list (%s)" (get $doc "Error" | default "no services")) -}}
{{- end -}}
{{- $facts := dict -}}
{{- range $doc.services -}}
{{- $_ := set $facts (required "services.json: every service needs a name" .name) . -}}
{{- end -}}
{{- toYaml $facts -}}
{{- end }}

{{/*
The services of services.json in start order (start_order ascending), as a YAML list of names:
the order of the rendered resources and of the migration Job. Fails when values.yaml's
`services` and services.json do not name the same services: values.yaml holds only what is
deployment-specific (image, replicas, resources...) of the services the list declares.
*/}}
{{- define "attrsync.serviceOrder" -}}
{{- $all := include "attrsync.facts" . | fromYaml -}}
{{- $keyed := list -}}
{{- range $name, $f := $all -}}
{{- $keyed = append $keyed (printf "%06d %s" (int (required (printf "services.json: %s needs a start_order" $name) $f.start_order)) $name) -}}
{{- if not (hasKey $.Values.services $name) -}}
{{- fail (printf "services.%s is missing from the values (services.json declares it; set services.%s.enabled=false to leave it out)" $name $name) -}}
{{- end -}}
{{- end -}}
{{- range $name, $_ := .Values.services -}}
{{- if not (hasKey $all $name) -}}
{{- fail (printf "services.%s: unknown service (services.json declares: %s)" $name (keys $all | sortAlpha | join ", ")) -}}
{{- end -}}
{{- end -}}
{{- $names := list -}}
{{- range sortAlpha $keyed -}}
{{- $names = append $names (regexReplaceAll "^[0-9]+ " . "") -}}
{{- end -}}
{{- toYaml $names -}}
{{- end }}

{{/* Facts of one service; fails on a name the chart does not know. Call with (dict "root" $ "name" $name). */}}
{{- define "attrsync.serviceFacts" -}}
{{- $all := include "attrsync.facts" .root | fromYaml -}}
{{- if not (hasKey $all .name) -}}
{{- fail (printf "services.%s: unknown service (services.json declares: %s)" .name (keys $all | sortAlpha | join ", ")) -}}
{{- end -}}
{{- get $all .name | toYaml -}}
{{- end }}

{{- define "attrsync.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Release-wide name prefix. Service names add "-<service>" (at most 15 characters), so this is cut
to 48 to keep every name within the 63 characters DNS labels allow.
*/}}
{{- define "attrsync.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 48 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 48 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 48 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* "<fullname>-<service>": the name of a service's Deployment, Service, HPA, PDB, ConfigMap. */}}
{{- define "attrsync.componentName" -}}
{{- printf "%s-%s" (include "attrsync.fullname" .root) .name }}
{{- end }}

{{- define "attrsync.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every resource. */}}
{{- define "attrsync.labels" -}}
helm.sh/chart: {{ include "attrsync.chart" . }}
app.kubernetes.io/name: {{ include "attrsync.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: attrsync
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one service. Call with (dict "root" $ "name" $name). */}}
{{- define "attrsync.selectorLabels" -}}
app.kubernetes.io/name: {{ include "attrsync.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end }}

{{/* Labels of one service's resources. Call with (dict "root" $ "name" $name). */}}
{{- define "attrsync.componentLabels" -}}
{{ include "attrsync.labels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end }}

{{- define "attrsync.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "attrsync.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding the database URL. */}}
{{- define "attrsync.databaseSecretName" -}}
{{- default (printf "%s-database" (include "attrsync.fullname" .)) .Values.database.existingSecret }}
{{- end }}

{{/* "true" when the chart itself renders the database Secret. */}}
{{- define "attrsync.createDatabaseSecret" -}}
{{- if and .Values.database.url (not .Values.database.existingSecret) }}true{{ end }}
{{- end }}

{{/* Image reference of one service. Call with (dict "root" $ "svc" $svc). */}}
{{- define "attrsync.image" -}}
{{- $global := .root.Values.global.image -}}
{{- $image := .svc.image | default dict -}}
{{- $registry := $image.registry | default $global.registry -}}
{{- $repository := required "services.<name>.image.repository is required" $image.repository -}}
{{- $ref := ternary (printf "%s/%s" (trimSuffix "/" $registry) $repository) $repository (ne $registry "") -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $ref $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $ref (toString ($image.tag | default $global.tag | default .root.Chart.AppVersion)) -}}
{{- end -}}
{{- end }}

{{/* mapping's gRPC URL, as ingest dials it. */}}
{{- define "attrsync.mappingEndpoint" -}}
{{- $ingest := .Values.services.ingest -}}
{{- $mapping := .Values.services.mapping | default dict -}}
{{- if $ingest.mappingEndpoint -}}
{{- $ingest.mappingEndpoint -}}
{{- else if $mapping.enabled -}}
{{- $facts := include "attrsync.serviceFacts" (dict "root" . "name" "mapping") | fromYaml -}}
{{- printf "http://%s:%d" (include "attrsync.componentName" (dict "root" . "name" "mapping")) (int $facts.grpc_port) -}}
{{- else -}}
{{- fail "services.ingest.mappingEndpoint is required when services.mapping.enabled is false" -}}
{{- end -}}
{{- end }}

{{/*
The configuration environment of one service, shared by its Deployment and the migration Job so
both see the same configuration: the chart's variables, less any that services.<name>.extraEnv
sets again (so no name appears twice), then extraEnv. Call with
(dict "root" $ "name" $name "svc" $svc "facts" $facts "databaseSecret" <Secret name>).
*/}}
{{- define "attrsync.env" -}}
{{- $extra := .svc.extraEnv | default list -}}
{{- $overridden := dict -}}
{{- range $extra -}}
{{- $_ := set $overridden (required "services.<name>.extraEnv: every entry needs a name" .name) true -}}
{{- end -}}
{{- $env := list -}}
{{- range (include "attrsync.chartEnv" . | fromYamlArray) -}}
{{- if not (hasKey $overridden .name) -}}
{{- $env = append $env . -}}
{{- end -}}
{{- end -}}
{{- concat $env $extra | toYaml -}}
{{- end }}

{{/* The variables the chart itself sets for one service (see "attrsync.env"). */}}
{{- define "attrsync.chartEnv" -}}
{{- $root := .root -}}
{{- $svc := .svc -}}
{{- $facts := .facts -}}
{{- $p := $facts.env_prefix -}}
- name: {{ $p }}__GRPC__LISTEN
  value: {{ printf "0.0.0.0:%d" (int $facts.grpc_port) | quote }}
- name: {{ $p }}__HTTP__LISTEN
  value: {{ printf "0.0.0.0:%d" (int $facts.http_port) | quote }}
{{- if $facts.database }}
- name: {{ $p }}__DATABASE__SCHEMA
  value: {{ $facts.schema | quote }}
{{- end }}
{{- if eq .name "ingest" }}
- name: INGEST__MAPPING__ENDPOINT
  value: {{ include "attrsync.mappingEndpoint" $root | quote }}
{{- end }}
{{- if $facts.database }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .databaseSecret }}
      key: {{ required "database.secretKey is required" $root.Values.database.secretKey }}
{{- end }}
{{- if $facts.kafka }}
- name: KAFKA_BOOTSTRAP
  value: {{ required "kafka.bootstrap is required (the platform's Kafka bootstrap servers)" $root.Values.kafka.bootstrap | quote }}
{{- if not (kindIs "invalid" $root.Values.kafka.replicationFactor) }}
- name: {{ $p }}__KAFKA__REPLICATION_FACTOR
  value: {{ $root.Values.kafka.replicationFactor | int | quote }}
{{- end }}
{{- if not (kindIs "invalid" $root.Values.kafka.partitions) }}
- name: {{ $p }}__KAFKA__PARTITIONS
  value: {{ $root.Values.kafka.partitions | int | quote }}
{{- end }}
{{- end }}
{{- with $root.Values.telemetry.logFormat }}
- name: {{ $p }}__TELEMETRY__LOG_FORMAT
  value: {{ . | quote }}
{{- end }}
{{- with $svc.logFilter }}
- name: {{ $p }}__TELEMETRY__LOG_FILTER
  value: {{ . | quote }}
{{- end }}
{{- with (($svc.telemetry | default dict).otlpEndpoint | default $root.Values.telemetry.otlpEndpoint) }}
- name: {{ $p }}__TELEMETRY__OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- end }}

{{/* Pod scheduling fields of one service (its own value, else the global one). Call with (dict "root" $ "svc" $svc). */}}
{{- define "attrsync.scheduling" -}}
{{- $v := .root.Values -}}
{{- with (.svc.priorityClassName | default $v.priorityClassName) }}
priorityClassName: {{ . }}
{{- end }}
{{- with (.svc.nodeSelector | default $v.nodeSelector) }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with (.svc.affinity | default $v.affinity) }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with (.svc.tolerations | default $v.tolerations) }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with (.svc.topologySpreadConstraints | default $v.topologySpreadConstraints) }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The number of replicas a service runs at least (HPA minimum when autoscaling). */}}
{{- define "attrsync.minReplicas" -}}
{{- $as := .autoscaling | default dict -}}
{{- if $as.enabled -}}
{{- $as.minReplicas | default 1 | int -}}
{{- else -}}
{{- .replicaCount | default 1 | int -}}
{{- end -}}
{{- end }}
