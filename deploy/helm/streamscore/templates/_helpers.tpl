{{/* Names: <release>-streamscore unless the release name already says streamscore. */}}
{{- define "streamscore.fullname" -}}
{{- if contains "streamscore" .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-streamscore" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "streamscore.labels" -}}
app.kubernetes.io/name: streamscore
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "streamscore.selector" -}}
app.kubernetes.io/name: streamscore
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "streamscore.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "streamscore.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "streamscore.fullname" .)) -}}
{{- end -}}

{{/* A flow's StatefulSet (and headless Service) name: <fullname>-<flow>. ctx: dict root, name, flow */}}
{{- define "streamscore.flowName" -}}
{{- printf "%s-%s" (include "streamscore.fullname" .root) .name -}}
{{- end -}}

{{/* Recovery partitions of a flow: fixed value, else processes x workers (of this install). */}}
{{- define "streamscore.partitions" -}}
{{- $f := .flow -}}
{{- if gt (int $f.recovery.partitions) 0 -}}{{ int $f.recovery.partitions }}{{- else -}}{{ mul (int $f.processes) (int $f.workersPerProcess) }}{{- end -}}
{{- end -}}

{{- define "streamscore.initialProcesses" -}}
{{- $f := .flow -}}
{{- if gt (int $f.recovery.initialProcesses) 0 -}}{{ int $f.recovery.initialProcesses }}{{- else -}}{{ int $f.processes }}{{- end -}}
{{- end -}}

{{/* Memory per process in MiB: baseMiB + keys / processes x bytesPerKey x headroom% (docs/benchmarks.md). */}}
{{- define "streamscore.flowMemoryMiB" -}}
{{- $f := .flow -}}
{{- $s := .root.Values.sizing -}}
{{- $keys := div (add (int64 $f.keys) (sub (int64 $f.processes) 1)) (int64 $f.processes) -}}
{{- $bytes := div (mul $keys (int64 $f.bytesPerKey) (int64 $s.headroomPercent)) 100 -}}
{{- add (int64 $s.baseMiB) (div (add $bytes 1048575) 1048576) -}}
{{- end -}}

{{/* The hostfile: one address per process, each pod's stable name under the headless Service. */}}
{{- define "streamscore.hostfile" -}}
{{- $name := include "streamscore.flowName" . -}}
{{- $lines := list -}}
{{- range $i, $_ := until (int .flow.processes) -}}
{{- $lines = append $lines (printf "%s-%d.%s.%s.svc.cluster.local:%d" $name $i $name $.root.Release.Namespace (int $.flow.port)) -}}
{{- end -}}
{{- join "\n" $lines -}}
{{- end -}}

{{/* Settings and secrets, the same for every pod. */}}
{{- define "streamscore.settingsEnv" -}}
- name: STREAMSCORE_CONFIG
  value: /etc/streamscore/streamscore.toml
{{- range $k, $v := .Values.settings.env }}
- name: {{ $k }}
  value: {{ $v | toString | quote }}
{{- end }}
{{- end -}}

{{- define "streamscore.envFrom" -}}
- secretRef:
    name: {{ include "streamscore.secretName" . }}
{{- end -}}

{{- define "streamscore.sharedMounts" -}}
- name: settings
  mountPath: /etc/streamscore
  readOnly: true
{{- if .Values.storage.modelRegistry.existingClaim }}
- name: model-registry
  mountPath: /app/model_registry
{{- end }}
{{- if .Values.storage.featureRepoData.existingClaim }}
- name: feature-repo-data
  mountPath: /app/feature_repo/data
{{- end }}
{{- end -}}

{{- define "streamscore.sharedVolumes" -}}
- name: settings
  configMap:
    name: {{ include "streamscore.fullname" . }}-settings
{{- if .Values.storage.modelRegistry.existingClaim }}
- name: model-registry
  persistentVolumeClaim:
    claimName: {{ .Values.storage.modelRegistry.existingClaim }}
{{- end }}
{{- if .Values.storage.featureRepoData.existingClaim }}
- name: feature-repo-data
  persistentVolumeClaim:
    claimName: {{ .Values.storage.featureRepoData.existingClaim }}
{{- end }}
{{- end -}}

{{- define "streamscore.podCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
