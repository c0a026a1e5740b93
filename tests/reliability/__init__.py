"""Reliability and security tooling of issue 5, built on the integration harness (``tests/harness``),
which it wraps and never edits:

  envoy_ext  -- TunedEnvoy (HTTP connection manager overrides, quiet logs, no access log), an upstream
                Envoy answering from ``direct_response``, LDS pushes by atomic rename, memory readings
  soak       -- ``make soak``: loopback clients -> HAProxy (send-proxy-v2) -> Envoy + filter -> upstream
  reconfig   -- ``make reconfig``: the filter's configuration swapped through file-based LDS under load

The spoofing corpus is ``tests/test_spoofing_corpus.py``; the load generator is ``tools/loadgen``.
"""
