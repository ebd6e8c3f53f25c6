"""The per-request machinery: request context, gateway-made responses, stages."""
