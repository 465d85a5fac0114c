"""Switchboard's gRPC core: services, domain, store, model backends and auth."""
