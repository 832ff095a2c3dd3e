"""What every router of the receiver is given: the store, the accounts, the clock, the limits.

`create_app` builds one `AppContext` and hands it to each area's ``router(ctx)``; a dependency can
also reach it as ``request.app.state.central`` (`app_context`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from central.accounts import Accounts
from central.limits import IngestLimits
from central.store import Store


@dataclass
class AppContext:
    store: Store
    accounts: Accounts
    clock: Callable[[], float] = time.time  # the server's wall clock, seconds
    limits: IngestLimits = field(default_factory=IngestLimits)
    alerts: Any = None  # central.alerts.engine.AlertEngine: evaluates each stored batch, /v1/alerts
    quotas: Any = None  # central.quotas.SharedQuotas of the node endpoints (set by their router)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)


def app_context(request: Request) -> AppContext:
    return request.app.state.central
