"""Process-wide observability shared by the core and the edge: the log context of a request,
log formats, Prometheus metrics and OpenTelemetry traces."""
