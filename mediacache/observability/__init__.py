"""What operators see: Prometheus metrics, the per-minute series behind /ops/ and the
stats command, the flusher that feeds both, health endpoints and JSON logs."""
