{{/* Names ------------------------------------------------------------------------------- */}}

{{/* Chart name, overridable. */}}
{{- define "vx-bridge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release name, plus the chart name unless the release name contains it.
     Kept to 56 characters so that "-status" still fits in 63. */}}
{{- define "vx-bridge.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 56 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 56 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 56 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "vx-bridge.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "vx-bridge.labels" -}}
helm.sh/chart: {{ include "vx-bridge.chart" . }}
{{ include "vx-bridge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels that select the release's pods (all components). */}}
{{- define "vx-bridge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vx-bridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "vx-bridge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "vx-bridge.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "vx-bridge.image" -}}
{{- if not .Values.image.repository }}
{{- fail "vx-bridge: set image.repository (and image.tag): no public vx-bridge image is published. Build one from the repository's Dockerfile, push it to your registry, then --set image.repository=<registry>/vx-bridge --set image.tag=<tag> (see the chart README)" }}
{{- end }}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* Components -------------------------------------------------------------------------
     The Deployments to run, as a YAML list. Each has:
       name       object name (the main one keeps the full name, so splitting status or the
                  projector out later leaves the webhook Deployment and Service in place)
       component  app.kubernetes.io/component label, part of the pod selector
       key        ConfigMap key of its config
       ingress    serves the webhook; status: serves the status service; sessions: runs the
                  session projector (config.sessions.enabled for this component)
       scale      where its replicas / resources / autoscaling / pdb live in values: root,
                  status or projector
     Roles: the webhook (webhook.enabled) and the status service (status.enabled) run in the
     main Deployment, or status in its own (status.separateDeployment). The session projector
     (config.sessions.enabled) runs in every pod; with projector.separateDeployment, in a
     Deployment of its own and no longer in the webhook pods (status pods keep it: their
     reconciler needs the view in the same process). With webhook and status both off the
     release is projector-only: its main Deployment runs the projector alone. */}}
{{- define "vx-bridge.components" -}}
{{- $full := include "vx-bridge.fullname" . }}
{{- $st := .Values.status }}
{{- $sessions := dig "sessions" "enabled" true .Values.config }}
{{- $projOnly := not (or .Values.webhook.enabled $st.enabled) }}
{{- if and $projOnly (not $sessions) }}
{{- fail "vx-bridge: webhook.enabled, status.enabled and config.sessions.enabled are all false: nothing to run" }}
{{- end }}
{{- $sepProj := and .Values.projector.separateDeployment (not $projOnly) }}
{{- if and $sepProj (not $sessions) }}
{{- fail "vx-bridge: projector.separateDeployment needs config.sessions.enabled (the projector is the session view's writer)" }}
{{- end }}
{{- $mainStatus := and $st.enabled (not $st.separateDeployment) }}
{{- if and $sepProj .Values.webhook.enabled $mainStatus }}
{{- fail "vx-bridge: projector.separateDeployment takes the projector off the webhook pods, but status.enabled runs the status service (and its reconciler, which needs the projector) in those same pods: set status.separateDeployment too" }}
{{- end }}
{{- if or .Values.webhook.enabled $mainStatus }}
- name: {{ $full }}
  component: bridge
  key: vx-bridge.toml
  ingress: {{ .Values.webhook.enabled }}
  status: {{ $mainStatus }}
  sessions: {{ and $sessions (not $sepProj) }}
  main: true
  scale: root
{{- else if $projOnly }}
- name: {{ $full }}
  component: projector
  key: vx-bridge.toml
  ingress: false
  status: false
  sessions: true
  main: true
  scale: root
{{- end }}
{{- if and $st.enabled $st.separateDeployment }}
- name: {{ printf "%s-status" $full }}
  component: status
  key: vx-bridge-status.toml
  ingress: false
  status: true
  sessions: {{ $sessions }}
  main: false
  scale: status
{{- end }}
{{- if $sepProj }}
- name: {{ printf "%s-projector" ($full | trunc 53 | trimSuffix "-") }}
  component: projector
  key: vx-bridge-projector.toml
  ingress: false
  status: false
  sessions: true
  main: false
  scale: projector
{{- end }}
{{- end }}

{{/* Scaling settings of a component: dict with replicaCount, resources, autoscaling, podDisruptionBudget. */}}
{{- define "vx-bridge.scaling" -}}
{{- $root := index . 0 }}{{ $c := index . 1 }}
{{- if eq $c.scale "status" }}
{{- toYaml (pick $root.Values.status "replicaCount" "resources" "autoscaling" "podDisruptionBudget") }}
{{- else if eq $c.scale "projector" }}
{{- toYaml (pick $root.Values.projector "replicaCount" "resources" "autoscaling" "podDisruptionBudget") }}
{{- else }}
{{- toYaml (pick $root.Values "replicaCount" "resources" "autoscaling" "podDisruptionBudget") }}
{{- end }}
{{- end }}

{{/* Secrets --------------------------------------------------------------------------
     Where each secret file comes from. Every entry: group, source Secret name, key in it,
     file name under /etc/vx-bridge/secrets, the config key that points at the file, and
     which role needs it. Only groups that are in use are listed. */}}
{{- define "vx-bridge.secretDir" -}}/etc/vx-bridge/secrets{{- end }}

{{- define "vx-bridge.secretFiles" -}}
{{- $full := include "vx-bridge.fullname" . }}
{{- $s := .Values.secrets }}
{{- $cfg := .Values.config }}
{{- /* webhook: HMAC secrets or Basic passwords, one per line */}}
{{- $mode := $cfg.webhook.auth.mode }}
{{- if and .Values.webhook.enabled (has $mode (list "hmac" "basic")) }}
{{- $default := ternary "hmac-secrets" "basic-passwords" (eq $mode "hmac") }}
{{- if and (not $s.webhook.existingSecret) (empty $s.webhook.values) }}
{{- fail (printf "vx-bridge: webhook.auth.mode is %s: set secrets.webhook.values or secrets.webhook.existingSecret" $mode) }}
{{- end }}
- group: webhook
  secret: {{ default $full $s.webhook.existingSecret }}
  key: {{ ternary (default $default $s.webhook.key) $default (not (empty $s.webhook.existingSecret)) }}
  file: webhook-secrets
  configKey: {{ ternary "webhook.auth.hmac.secrets_file" "webhook.auth.basic.passwords_file" (eq $mode "hmac") }}
  role: ingress
{{- end }}
{{- /* upstream: OAuth client secret, or a static token */}}
{{- if .Values.status.enabled }}
{{- $oauth := not (empty $cfg.upstream.oauth.client_id) }}
{{- $default := ternary "oauth-client-secret" "upstream-token" $oauth }}
{{- if and (not $s.upstream.existingSecret) (empty $s.upstream.value) }}
{{- fail "vx-bridge: status.enabled needs a VX API credential: set secrets.upstream.value or secrets.upstream.existingSecret" }}
{{- end }}
- group: upstream
  secret: {{ default $full $s.upstream.existingSecret }}
  key: {{ ternary (default $default $s.upstream.key) $default (not (empty $s.upstream.existingSecret)) }}
  file: upstream-credential
  configKey: {{ ternary "upstream.oauth.client_secret_file" "upstream.token_file" $oauth }}
  role: status
{{- end }}
{{- /* nats: one credential by type */}}
{{- $types := dict "creds" (list "nats.creds" "nats.creds_file") "nkey" (list "nkey.seed" "nats.nkey_seed_file") "token" (list "nats-token" "nats.token_file") "password" (list "nats-password" "nats.password_file") }}
{{- if ne $s.nats.type "none" }}
{{- $t := get $types $s.nats.type }}
{{- if and (not $s.nats.existingSecret) (empty $s.nats.value) }}
{{- fail (printf "vx-bridge: secrets.nats.type is %s: set secrets.nats.value or secrets.nats.existingSecret" $s.nats.type) }}
{{- end }}
{{- if and (eq $s.nats.type "password") (empty $cfg.nats.user) }}
{{- fail "vx-bridge: secrets.nats.type password needs config.nats.user" }}
{{- end }}
- group: nats
  secret: {{ default $full $s.nats.existingSecret }}
  key: {{ ternary (default (index $t 0) $s.nats.key) (index $t 0) (not (empty $s.nats.existingSecret)) }}
  file: nats-credential
  configKey: {{ index $t 1 }}
  role: any
{{- end }}
{{- /* kek: the key-encryption keys, one `id:base64` per line. Required with events.pii
       encrypted (the default) when the webhook or the status role runs: the binary refuses
       to start in that mode without keys.kek_file. Fail closed here too. A projector reads no
       PII and gets no KEK (role kek: mounted only where the webhook or status runs). */}}
{{- $pii := dig "events" "pii" "encrypted" $cfg }}
{{- $kek := $s.kek }}
{{- if and (eq $pii "encrypted") (or .Values.webhook.enabled .Values.status.enabled) (not $kek.existingSecret) (empty $kek.values) }}
{{- fail "vx-bridge: config.events.pii is encrypted (the default) and needs the key-encryption keys: set secrets.kek.existingSecret (a Secret whose key `kek` holds one `id:base64-of-32-bytes` per line, e.g. k1:$(openssl rand -base64 32)) or secrets.kek.values; or set config.events.pii to clear or omitted" }}
{{- end }}
{{- if or $kek.existingSecret $kek.values }}
- group: kek
  secret: {{ default $full $kek.existingSecret }}
  key: {{ ternary (default "kek" $kek.key) "kek" (not (empty $kek.existingSecret)) }}
  file: kek
  configKey: keys.kek_file
  role: kek
{{- end }}
{{- /* natsTls: CA, client certificate and key */}}
{{- if $s.natsTls.enabled }}
{{- $t := $s.natsTls }}
{{- $ext := not (empty $t.existingSecret) }}
{{- range $f := list (list "ca" $t.caKey "nats-ca.crt" "nats.tls.ca_file") (list "cert" $t.certKey "nats-tls.crt" "nats.tls.cert_file") (list "key" $t.keyKey "nats-tls.key" "nats.tls.key_file") }}
{{- $inline := get $t (index $f 0) }}
{{- if or (and $ext (index $f 1)) (and (not $ext) $inline) }}
- group: natsTls
  secret: {{ default $full $t.existingSecret }}
  key: {{ ternary (index $f 1) (index $f 2) $ext }}
  file: {{ index $f 2 }}
  configKey: {{ index $f 3 }}
  role: any
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* The secret files a component mounts (those of its roles). */}}
{{- define "vx-bridge.componentSecretFiles" -}}
{{- $root := index . 0 }}{{ $c := index . 1 }}
{{- range $f := include "vx-bridge.secretFiles" $root | fromYamlArray }}
{{- if or (eq $f.role "any") (and (eq $f.role "ingress") $c.ingress) (and (eq $f.role "status") $c.status) (and (eq $f.role "kek") (or $c.ingress $c.status)) }}
- {{ toJson $f }}
{{- end }}
{{- end }}
{{- end }}

{{/* The user's result schema (resultSchema): the ConfigMap that holds it, or "" for none. */}}
{{- define "vx-bridge.schemaDir" -}}/etc/vx-bridge/schema{{- end }}

{{- define "vx-bridge.resultSchemaConfigMap" -}}
{{- $r := .Values.resultSchema }}
{{- if and $r.inline $r.existingConfigMap }}
{{- fail "vx-bridge: set resultSchema.inline or resultSchema.existingConfigMap, not both" }}
{{- end }}
{{- if $r.inline }}
{{- if hasKey ($r.inline | fromJson) "Error" }}
{{- fail "vx-bridge: resultSchema.inline is not JSON" }}
{{- end }}
{{- printf "%s-schema" (include "vx-bridge.fullname" .) }}
{{- else }}
{{- $r.existingConfigMap }}
{{- end }}
{{- end }}

{{/* Config ----------------------------------------------------------------------------- */}}

{{/* The effective config of a component, as a dict: values' config plus what the chart owns. */}}
{{- define "vx-bridge.configDict" -}}
{{- $root := index . 0 }}{{ $c := index . 1 }}
{{- $cfg := deepCopy $root.Values.config }}
{{- $_ := set $cfg.http "listen" (printf "0.0.0.0:%d" (int $root.Values.containerPort)) }}
{{- if not (hasKey $cfg "webhook") }}{{ $_ := set $cfg "webhook" dict }}{{ end }}
{{- $_ := set $cfg.webhook "enabled" $c.ingress }}
{{- $_ := set $cfg.status "enabled" $c.status }}
{{- if not (hasKey $cfg "sessions") }}{{ $_ := set $cfg "sessions" dict }}{{ end }}
{{- $_ := set $cfg.sessions "enabled" $c.sessions }}
{{- if include "vx-bridge.resultSchemaConfigMap" $root }}
{{- $_ := set $cfg.webhook "schema_file" (printf "%s/%s" (include "vx-bridge.schemaDir" $root) $root.Values.resultSchema.key) }}
{{- end }}
{{- range $f := include "vx-bridge.componentSecretFiles" (list $root $c) | fromYamlArray }}
{{- $path := splitList "." $f.configKey }}
{{- $table := $cfg }}
{{- range $p := initial $path }}
{{- if not (hasKey $table $p) }}{{ $_ := set $table $p dict }}{{ end }}
{{- $table = get $table $p }}
{{- end }}
{{- $_ := set $table (last $path) (printf "%s/%s" (include "vx-bridge.secretDir" $root) $f.file) }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/* Renders a dict as TOML: scalars first, then sub-tables as [a.b] sections; nulls omitted.
     Argument: list PREFIX DICT. Integers stay integers (YAML numbers arrive as float64). */}}
{{- define "vx-bridge.toml" -}}
{{- $prefix := index . 0 }}{{ $table := index . 1 }}
{{- range $k := keys $table | sortAlpha }}
{{- $v := get $table $k }}
{{- if and (not (kindIs "map" $v)) (not (kindIs "invalid" $v)) }}
{{ $k }} = {{ include "vx-bridge.tomlValue" $v }}
{{- end }}
{{- end }}
{{- range $k := keys $table | sortAlpha }}
{{- $v := get $table $k }}
{{- if kindIs "map" $v }}
{{- $name := ternary $k (printf "%s.%s" $prefix $k) (eq $prefix "") }}

[{{ $name }}]
{{- include "vx-bridge.toml" (list $name $v) }}
{{- end }}
{{- end }}
{{- end }}

{{- define "vx-bridge.tomlValue" -}}
{{- if kindIs "string" . }}{{ toJson . }}
{{- else if kindIs "bool" . }}{{ . }}
{{- else if or (kindIs "float64" .) (kindIs "float32" .) }}
{{- if eq (float64 .) (float64 (int64 .)) }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- else if or (kindIs "int" .) (kindIs "int64" .) }}{{ . }}
{{- else if kindIs "slice" . }}[{{ range $i, $e := . }}{{ if $i }}, {{ end }}{{ include "vx-bridge.tomlValue" $e }}{{ end }}]
{{- else }}{{ fail (printf "vx-bridge: cannot render %v as TOML" .) }}
{{- end }}
{{- end }}

{{/* The TOML config file of a component. */}}
{{- define "vx-bridge.configToml" -}}
# Rendered by the vx-bridge Helm chart from .Values.config; check with `vx-bridge check-config`.
{{- include "vx-bridge.toml" (list "" (include "vx-bridge.configDict" . | fromYaml)) }}
{{ end }}
