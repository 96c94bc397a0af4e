"""What a 402 sells: an `Offer` (price, payee, the caveats of the token it unlocks) and the
check that a stored price can be sold at all."""

from __future__ import annotations

from dataclasses import dataclass, field

from checkout.models import Merchant
from config.money import MAX_SATS
from config.problems import Problem

from ..macaroons import RequestScope
from ..models import Proxy

# lightning.Invoice.purpose of the invoices challenges and one-time keys sell.
PURPOSE = "l402"


@dataclass
class Offer:
    """What a 402 sells: the price, who is paid, and the caveats of the token it unlocks."""

    kind: str
    resource: str
    price_sats: int
    caveats: list[tuple[str, str]]
    merchant: Merchant | None = None
    description: str = ""
    proxy: Proxy | None = None
    scope: RequestScope = field(default_factory=RequestScope)

    def __post_init__(self):
        check_sellable(self.price_sats, self.resource)


def check_sellable(price_sats: int, what: str) -> None:
    """A stored price the gateway cannot sell (saved before prices were bounded, or
    written around the API) refuses the sale with a 503 instead of failing on the node or
    the database."""
    if not 1 <= price_sats <= MAX_SATS:
        raise Problem(
            503,
            "price_out_of_range",
            f"{what} is priced at {price_sats} sats, outside 1..{MAX_SATS}: "
            "its merchant must correct the price",
        )
