"""What the sim node's commands share: call its loopback control, print the JSON answer,
and turn what can go wrong into a CommandError that says what to check."""

import json
from collections.abc import Callable
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError


def run(command: BaseCommand, directory: Path, call: Callable[[], tuple[int, dict]]) -> None:
    try:
        status, answer = call()
    except FileNotFoundError:
        raise CommandError(f"no sim node is running in {directory} (no control.port)") from None
    except OSError as exc:  # connection refused, timeout
        raise CommandError(f"cannot reach the sim node of {directory}: {exc}") from exc
    command.stdout.write(json.dumps(answer))
    if status != 200:
        raise CommandError(answer.get("error", f"HTTP {status}"))
