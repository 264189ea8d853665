"""One batch written to several destination tables at once: the bootstrap copy of a
source with several destinations reads the source once."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from replicator.protocols import DestinationWriter


class FanOutWriter:
    """A ``DestinationWriter`` that sends each BatchWriteItem to every destination.

    What any destination leaves unprocessed is sent again to all of them: a copy's
    puts carry the source's image, so writing one twice changes nothing.
    """

    def __init__(self, destinations: Sequence[DestinationWriter]) -> None:
        self._destinations = list(destinations)

    async def batch_write(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        answers = await asyncio.gather(
            *(destination.batch_write(requests) for destination in self._destinations),
            return_exceptions=True,
        )
        left: list[dict[str, Any]] = []
        for answer in answers:
            if isinstance(answer, BaseException):
                raise answer
            left.extend(answer)
        return left
