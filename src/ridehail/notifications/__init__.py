"""Notifications: domain events to in-app messages, webhooks, email and SMS."""
