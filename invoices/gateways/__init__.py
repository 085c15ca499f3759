"""Payment gateways behind one small interface (DESIGN.md section 5, docs/gateways.md)."""

from .base import (  # noqa: F401
    HARD_DECLINE_CODES,
    ChargeRequest,
    ChargeResult,
    Gateway,
    GatewayError,
    gateway_load,
)
