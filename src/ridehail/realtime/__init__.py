"""Real time: ride status and driver positions to riders, offers to drivers, over
WebSockets. Sits on top of the other domains and changes none of them."""

from ridehail.realtime.handlers import ride_channel, subscribe_realtime

__all__ = ["ride_channel", "subscribe_realtime"]
