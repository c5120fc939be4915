"""Payments: rider payment methods, charges after the ride, refunds and the ledger."""
