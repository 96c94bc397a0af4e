"""L402 endpoints, thin views over l402.services, one module per job:

- `gate`: the 402 (challenge) and 401 (refused credential) answers every paid view gives.
- `base`: the merchant API's view classes (API key authentication, admin-key writes).
- `challenges`: merchants' own challenges, verifying their credentials, stats.
- `resources`: the gateway's own paid resources (demo, premium data) and paywalled content.
- `proxies`: the merchant API of proxies and endpoints, and a proxy's public manifest.
- `proxy_request`: the paid reverse proxy itself (raw: every method, the body as it came).
- `keys`: buying a one-time key for one proxied request.
- `manifests`: the manifest registry, validator and schema, and the MCP version check.
"""
