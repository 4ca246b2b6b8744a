"""What the API's handlers share: the container, the broker gateway, metrics, signers and the rate limiter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from starlette.requests import Request

from common.bootstrap import Container
from common.signing import Signer
from services.api.metrics import ApiMetrics
from services.api.publishing import BrokerGateway

if TYPE_CHECKING:
    from services.api.amqp_async import AsyncPublisher
    from services.api.async_accept import AsyncWorkCheck
    from services.api.rate_limit import RateLimiter
    from services.api.shedding import InFlight


@dataclass
class ApiState:
    """Built once by `create_app`; handlers reach it as `request.app.state.api`."""

    container: Container
    gateway: BrokerGateway
    metrics: ApiMetrics
    done_signer: Signer
    limiter: RateLimiter
    in_flight: InFlight
    # The async hot path (PostgreSQL + RabbitMQ); None in standalone mode, which keeps the thread path.
    work_check: AsyncWorkCheck | None = None
    publisher: AsyncPublisher | None = None


def api_state(request: Request) -> ApiState:
    return cast(ApiState, request.app.state.api)
