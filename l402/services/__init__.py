"""The rules of L402, one module per job (views and receivers import the module they need):

- `offers`: what a 402 sells (`Offer`) and whether a price can be sold.
- `challenges`: issuing challenges (invoice + macaroon), merchants' own challenges, lists.
- `credentials`: checking an L402 credential against a request, or for a merchant's server.
- `content`: paywalled content and bundles of it.
- `proxies`: paid reverse proxies, their priced endpoints, and routing a request through one.
- `one_time_keys`: selling and spending keys that pay for exactly one proxied request.
- `events`: `l402.paid` for the merchant's webhooks and their agents' stats.
- `stats`: a merchant's L402 revenue and counts.
- `mcp`: the MCP client's version check.
"""
