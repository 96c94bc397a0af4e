"""`manage.py simnode_pay --dir D BOLT11`: pay an invoice of a running simulated LND as a
remote wallet would, through its control endpoint."""

from pathlib import Path

from django.core.management.base import BaseCommand

from lightning import simnode

from . import _control


class Command(BaseCommand):
    help = "Pay an invoice of the simulated LND running in --dir; prints the JSON answer."

    def add_arguments(self, parser):
        parser.add_argument("--dir", required=True, type=Path, help="the sim node's directory")
        parser.add_argument("bolt11")

    def handle(self, *args, **options):
        directory = options["dir"]
        _control.run(self, directory, lambda: simnode.control_pay(directory, options["bolt11"]))
