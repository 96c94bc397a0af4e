"""`manage.py simnode_control --dir D ACTION ...`: drive the simulated LND running in D (maybe
another process) through its control endpoint, as the rest of the network would:

  invoice --amount-sat N [--memo M] [--expiry S]   a remote payee's invoice for the node to pay
  fail [--reason NO_ROUTE] SCOPE                   the next payment(s) fail
  hold SCOPE                                       ... stay in flight until released
  delay SECONDS SCOPE                              ... succeed (are routed) after SECONDS
  release HASH --succeed | --fail [--reason R]     end a hold or a delay now
  payment HASH                                     an outgoing payment as the node sees it
  rules [--clear]                                  the rules waiting for payments

SCOPE: --hash HASH (that payment), --count N (the next N; 1 by default) or --all.
Prints the JSON answer; a refusal is an error with the node's words.
"""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from lightning import simnode

from . import _control


class Command(BaseCommand):
    help = (
        "Control the simulated LND running in --dir: remote payee invoices, and rules that "
        "make its outgoing payments fail, hold or delay."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dir", required=True, type=Path, help="the sim node's directory")
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

        invoice = actions.add_parser("invoice", help="a remote payee's invoice to pay")
        amount = invoice.add_mutually_exclusive_group(required=True)
        amount.add_argument("--amount-sat", type=int)
        amount.add_argument("--amount-msat", type=int)
        invoice.add_argument("--memo", default="")
        invoice.add_argument("--expiry", type=int, default=simnode.REMOTE_EXPIRY_SECONDS)

        fail = actions.add_parser("fail", help="the next payment(s) fail")
        fail.add_argument("--reason", default="NO_ROUTE", help="a FAILURE_REASON_ name")
        _scope(fail)
        _scope(actions.add_parser("hold", help="the next payment(s) stay in flight"))
        delay = actions.add_parser("delay", help="the next payment(s) are routed after SECONDS")
        delay.add_argument("seconds", type=float)
        _scope(delay)

        release = actions.add_parser("release", help="end a hold or a delay now")
        release.add_argument("payment_hash", metavar="HASH")
        outcome = release.add_mutually_exclusive_group(required=True)
        outcome.add_argument("--succeed", action="store_true", help="go on to the payee")
        outcome.add_argument("--fail", action="store_true", help="fail it with --reason")
        release.add_argument("--reason", default="NO_ROUTE")

        payment = actions.add_parser("payment", help="an outgoing payment as the node sees it")
        payment.add_argument("payment_hash", metavar="HASH")

        rules = actions.add_parser("rules", help="list (or --clear) the payment rules")
        rules.add_argument("--clear", action="store_true")

    def handle(self, *args, **options):
        method, path, body = _request(options)
        directory = options["dir"]
        _control.run(
            self, directory, lambda: simnode.control_request(directory, method, path, body)
        )


def _scope(parser) -> None:
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--hash", dest="payment_hash", help="only the payment of this hash")
    scope.add_argument("--count", type=int, help="the next COUNT payments (default 1)")
    scope.add_argument("--all", action="store_true", help="every payment until cleared")


def _request(options) -> tuple[str, str, dict | None]:
    action = options["action"]
    if action == "invoice":
        amount_msat = options["amount_msat"]
        if amount_msat is None:
            amount_msat = options["amount_sat"] * 1000
        body = {"amount_msat": amount_msat, "memo": options["memo"], "expiry": options["expiry"]}
        return "POST", "/invoices", body
    if action in simnode.RULE_ACTIONS:
        body = {"action": action}
        if options["payment_hash"]:
            body["payment_hash"] = options["payment_hash"]
        elif options["all"]:
            body["all"] = True
        elif options["count"] is not None:
            body["count"] = options["count"]
        if action == "fail":
            body["reason"] = options["reason"]
        if action == "delay":
            body["seconds"] = options["seconds"]
        return "POST", "/payments/rules", body
    payment_hash = options.get("payment_hash") or ""
    if action in ("release", "payment") and not _is_hash(payment_hash):
        raise CommandError(f"HASH must be a payment hash (64 hex digits), not {payment_hash!r}")
    if action == "release":
        outcome = "succeed" if options["succeed"] else "fail"
        body = {"outcome": outcome, "reason": options["reason"]}
        return "POST", f"/payments/{payment_hash}/release", body
    if action == "payment":
        return "GET", f"/payments/{payment_hash}", None
    return ("DELETE" if options["clear"] else "GET"), "/payments/rules", None


def _is_hash(value: str) -> bool:
    try:
        return len(bytes.fromhex(value)) == 32
    except ValueError:
        return False
