"""Dispatch: finds drivers for searching rides, makes offers, takes answers."""

from ridehail.dispatch.handlers import subscribe as subscribe_dispatch
from ridehail.dispatch.schemas import OfferOut
from ridehail.dispatch.service import DispatchPolicy, open_offers
from ridehail.dispatch.worker import Dispatcher, offer_channel

__all__ = [
    "DispatchPolicy",
    "Dispatcher",
    "OfferOut",
    "offer_channel",
    "open_offers",
    "subscribe_dispatch",
]
