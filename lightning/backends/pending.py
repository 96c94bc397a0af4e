"""A stand-in for `track_payment`, which the interface requires since ed24556 and which the
pay-node branch implements in each backend. Listed first among a backend's bases, so the
backend's own `track_payment`, once it has one, is what runs. Delete this module when both
backends have theirs."""

from .base import PaymentNotFound, PaymentStatus


class TrackPaymentPending:
    def track_payment(self, payment_hash: str) -> PaymentStatus:
        raise PaymentNotFound(f"{type(self).__name__} cannot track payments yet ({payment_hash})")
