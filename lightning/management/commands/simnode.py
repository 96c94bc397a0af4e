"""`manage.py simnode --dir D [--port N]`: the simulated LND in the foreground, for a local
end-to-end run of the lnd backend (see lightning/simnode.py)."""

from pathlib import Path

from django.core.management.base import BaseCommand

from lightning import simnode


class Command(BaseCommand):
    help = "Run a simulated LND (regtest, gRPC + TLS + macaroon) until SIGINT or SIGTERM."

    def add_arguments(self, parser):
        parser.add_argument("--dir", required=True, type=Path, help="state directory")
        parser.add_argument("--port", type=int, default=10009, help="gRPC port (0: any free)")
        parser.add_argument("--control-port", type=int, default=0, help="HTTP control port")

    def handle(self, *args, **options):
        simnode.serve(options["dir"], options["port"], options["control_port"], self.stdout)
