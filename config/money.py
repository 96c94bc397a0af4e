"""Bounds on money, shared by every app: no amount is larger than all the bitcoin there
will ever be. In msat that is 2.1e18, below 2^63, so it fits every integer column (and
LND's uint64 fields)."""

MAX_SATS = 21_000_000 * 100_000_000
MAX_MSAT = MAX_SATS * 1000
