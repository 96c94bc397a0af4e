"""`manage.py simnode_mine --dir D [N]`: mine N blocks on a running simulated LND, through
its control endpoint."""

from pathlib import Path

from django.core.management.base import BaseCommand

from lightning import simnode

from . import _control


class Command(BaseCommand):
    help = "Mine blocks on the simulated LND running in --dir; prints the JSON answer."

    def add_arguments(self, parser):
        parser.add_argument("--dir", required=True, type=Path, help="the sim node's directory")
        parser.add_argument("blocks", type=int, nargs="?", default=1)

    def handle(self, *args, **options):
        directory = options["dir"]
        _control.run(self, directory, lambda: simnode.control_mine(directory, options["blocks"]))
