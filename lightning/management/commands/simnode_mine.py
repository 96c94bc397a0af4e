"""`manage.py simnode_mine --dir D [N]`: mine N blocks on a running simulated LND, through
its control endpoint."""

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from lightning import simnode


class Command(BaseCommand):
    help = "Mine blocks on the simulated LND running in --dir; prints the JSON answer."

    def add_arguments(self, parser):
        parser.add_argument("--dir", required=True, type=Path, help="the sim node's directory")
        parser.add_argument("blocks", type=int, nargs="?", default=1)

    def handle(self, *args, **options):
        directory = options["dir"]
        try:
            status, answer = simnode.control_mine(directory, options["blocks"])
        except FileNotFoundError:
            raise CommandError(f"no sim node is running in {directory} (no control.port)") from None
        except OSError as exc:  # connection refused, timeout
            raise CommandError(f"cannot reach the sim node of {directory}: {exc}") from exc
        self.stdout.write(json.dumps(answer))
        if status != 200:
            raise CommandError(answer.get("error", f"HTTP {status}"))
