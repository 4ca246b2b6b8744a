"""What the API's handlers share: the container, the broker gateway, metrics and signers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from starlette.requests import Request

from common.bootstrap import Container
from common.signing import Signer
from services.api.metrics import ApiMetrics
from services.api.publishing import BrokerGateway


@dataclass
class ApiState:
    """Built once by `create_app`; handlers reach it as `request.app.state.api`."""

    container: Container
    gateway: BrokerGateway
    metrics: ApiMetrics
    done_signer: Signer


def api_state(request: Request) -> ApiState:
    return cast(ApiState, request.app.state.api)
