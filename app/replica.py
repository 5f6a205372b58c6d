"""A read replica's background loop: follow the writer's journal, and open the writer's new
version when it publishes one (index.replica). Searches meanwhile use what is open."""

from __future__ import annotations

import asyncio
import logging

from app.offload import run_blocking
from app.service import SearchService
from index.replica import catch_up, open_replica

LOG = logging.getLogger(__name__)
RETIRE_AFTER_S = 30.0  # a replaced index is closed this long after the switch (requests on it finish)


async def follow(service: SearchService) -> None:
    settings = service.settings
    while True:
        await asyncio.sleep(settings.replica_poll_s)
        live = service.live
        if live is None:
            continue
        try:
            if await run_blocking(catch_up, live.index):
                continue
            fresh = await run_blocking(
                open_replica, settings.index_path, live.encoder.checksum, settings.store_settings
            )
        except Exception as exc:  # the writer mid-publish, or a new encoder: keep serving what is open
            LOG.warning("read replica could not follow %s: %s", settings.index_path, exc)
            continue
        old = live.index
        service.swap(fresh, live.encoder)
        LOG.info("read replica switched from version %s to %s", old.version, fresh.version)
        asyncio.get_running_loop().call_later(RETIRE_AFTER_S, old.close)
