"""Integration-test harness for client-ip-filter: real Envoy, real HAProxy, raw PROXY protocol clients.

Modules:
  manifests  -- the Envoy fragments taken from envoyfilter/*.yaml (the single source of truth)
  envoy      -- bootstrap builder, Envoy process (start/ready/stats/access log/stop), refused-config runner
  upstream   -- a threaded HTTP/1.1 echo server that reports every header line it received, in order
  proxyproto -- PROXY v1/v2 encoders and raw-socket HTTP/1.x clients; curl helper for HTTP/2
  haproxy    -- HAProxy in front of Envoy, sending PROXY v1 or v2
  procs      -- free loopback ports, waiting, process-group lifetime

Only loopback addresses are ever used as targets. Stdlib + PyYAML only.
"""
