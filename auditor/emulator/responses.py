"""HTTP responses the emulator sends, and ARM's error envelope.

ARM answers every failure with `{"error": {"code": ..., "message": ...}}` and `Content-Type: application/json`;
the SDKs read `code` and `message` from there into `HttpResponseError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

JSON_TYPE = "application/json; charset=utf-8"


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = JSON_TYPE
    # How the server hands it over: "" normally; "hang" (never), "drip" (a byte at a time), "reset" (drop the
    # connection without an answer). Faults set it; the handler acts on it.
    delivery: str = ""


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    return Response(status, body, dict(headers or {}))


class ArmError(Exception):
    """An ARM error response; raised anywhere in routing and turned into a Response by the server."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def to_response(self) -> Response:
        return json_response(self.status, {"error": {"code": self.code, "message": self.message}}, self.headers)


def not_found(code: str, message: str) -> ArmError:
    return ArmError(404, code, message)


def resource_not_found(resource_type: str, name: str, resource_group: str | None) -> ArmError:
    where = f" under resource group '{resource_group}'" if resource_group else ""
    return not_found(
        "ResourceNotFound",
        f"The Resource '{resource_type}/{name}'{where} was not found. "
        "For more details please go to https://aka.ms/ARMResourceNotFoundFix",
    )


def subscription_not_found(sub: str) -> ArmError:
    return not_found("SubscriptionNotFound", f"The subscription '{sub}' could not be found.")


def resource_group_not_found(rg: str) -> ArmError:
    return not_found("ResourceGroupNotFound", f"Resource group '{rg}' could not be found.")


def bad_request(code: str, message: str) -> ArmError:
    return ArmError(400, code, message)
