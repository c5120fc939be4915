"""The city simulator: drivers and riders in a street network, driving the service through
its public API only (``ridehail simulate``), and the report of what happened."""
