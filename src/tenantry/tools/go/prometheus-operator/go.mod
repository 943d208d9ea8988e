// Pins prometheus-operator's CustomResourceDefinitions (no binary is built): tests and
// `tenantry monitoring operator-objects --check` validate the rendered ServiceMonitor,
// PrometheusRule and AlertmanagerConfig objects against these schemas on a real cluster.
module tenantry.dev/tools/prometheus-operator

go 1.26.0

require github.com/prometheus-operator/prometheus-operator v0.92.0 // indirect
