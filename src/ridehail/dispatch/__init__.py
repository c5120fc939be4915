"""Dispatch: finds drivers for searching rides, makes offers, takes answers."""

from ridehail.dispatch.handlers import subscribe as subscribe_dispatch
from ridehail.dispatch.service import DispatchPolicy
from ridehail.dispatch.worker import Dispatcher

__all__ = ["DispatchPolicy", "Dispatcher", "subscribe_dispatch"]
