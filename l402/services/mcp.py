"""The MCP client's version check: is the caller's version current, outdated or no
longer supported."""

from __future__ import annotations

import re

from django.conf import settings

from config.problems import Problem

# A version like 1.2.3 (also v1.2, 1.2.3-beta.1+build): the OpenAPI document says the same.
VERSION_PATTERN = r"v?([0-9]+)(?:\.([0-9]+))?(?:\.([0-9]+))?(?:[-+][0-9A-Za-z.+-]*)?"


def _version_tuple(version: str) -> tuple[int, ...]:
    match = re.fullmatch(VERSION_PATTERN, version) if len(version) <= 64 else None
    if not match:
        raise ValueError(version)
    return tuple(int(part or 0) for part in match.groups())


def mcp_version_check(current: str | None) -> dict:
    latest = settings.L402_MCP_LATEST_VERSION
    minimum = settings.L402_MCP_MIN_VERSION
    body = {
        "latestVersion": latest,
        "updateRecommended": False,
        "updateRequired": False,
        "message": f"The latest version is {latest}.",
        "releaseNotes": settings.L402_MCP_RELEASE_NOTES,
    }
    if not current:
        return body
    try:
        mine = _version_tuple(current)
    except ValueError:
        raise Problem(
            400,
            "validation_error",
            "currentVersion must look like 1.2.3",
            {"currentVersion": ["Must be a version like 1.2.3."]},
        ) from None
    body["updateRequired"] = mine < _version_tuple(minimum)
    body["updateRecommended"] = mine < _version_tuple(latest)
    if body["updateRequired"]:
        body["message"] = f"Version {current} is no longer supported; update to {latest}."
    elif body["updateRecommended"]:
        body["message"] = f"Version {latest} is available (you have {current})."
    else:
        body["message"] = f"Version {current} is up to date."
    return body
