"""What operators see: metrics, health and readiness, the workers' heartbeat, status,
CloudWatch."""
