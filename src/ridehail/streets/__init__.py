"""Street networks: a generated city (or an imported map), travel-time routing over it, and
pickup-time estimates from it. A library for the simulator and the dispatcher: it knows no
domain and does no I/O."""

from ridehail.streets.city import City, Hotspot, generate_city
from ridehail.streets.demand import DemandProfile, TripSampler
from ridehail.streets.eta import RoadNetworkEta
from ridehail.streets.graph import Point, RoadClass, Route, StreetGraph
from ridehail.streets.osm import city_from_graph, city_from_osm, load_osm

__all__ = [
    "City",
    "DemandProfile",
    "Hotspot",
    "Point",
    "RoadClass",
    "RoadNetworkEta",
    "Route",
    "StreetGraph",
    "TripSampler",
    "city_from_graph",
    "city_from_osm",
    "generate_city",
    "load_osm",
]
