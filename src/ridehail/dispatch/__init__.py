"""Dispatch: finds drivers for searching rides, makes offers, takes answers."""

from ridehail.dispatch.eta import EtaProvider, StraightLineEta
from ridehail.dispatch.handlers import (
    open_searches_with_requests,
    opened_searches,
)
from ridehail.dispatch.handlers import subscribe as subscribe_dispatch
from ridehail.dispatch.policy import DispatchPolicy, Strategy
from ridehail.dispatch.schemas import OfferOut
from ridehail.dispatch.service import open_offers
from ridehail.dispatch.surge import SurgeUpdater
from ridehail.dispatch.worker import Dispatcher, offer_channel

__all__ = [
    "DispatchPolicy",
    "Dispatcher",
    "EtaProvider",
    "OfferOut",
    "StraightLineEta",
    "Strategy",
    "SurgeUpdater",
    "offer_channel",
    "open_offers",
    "open_searches_with_requests",
    "opened_searches",
    "subscribe_dispatch",
]
