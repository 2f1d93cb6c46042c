"""`guahao bench`: load benchmarks of the release rush (not part of the served product).

Everything here runs outside the request path: it starts servers, seeds data in bulk,
generates load and measures. `bare_app` is a reference endpoint, never mounted by guahao.
"""
