"""Notifications: domain events to in-app messages, webhooks, email and SMS.

Other domains use only what is exported here."""

from ridehail.notifications.channels import EmailSender, MessageLog, SmsSender, read_message_log
from ridehail.notifications.domain import signature, verify_signature
from ridehail.notifications.handlers import subscribe as subscribe_notifications
from ridehail.notifications.schemas import NotificationOut
from ridehail.notifications.sender import (
    NotificationSender,
    SenderPolicy,
    push_message,
    user_channel,
)
from ridehail.notifications.service import list_notifications, queued_work

__all__ = [
    "EmailSender",
    "MessageLog",
    "NotificationOut",
    "NotificationSender",
    "SenderPolicy",
    "SmsSender",
    "list_notifications",
    "push_message",
    "queued_work",
    "read_message_log",
    "signature",
    "subscribe_notifications",
    "user_channel",
    "verify_signature",
]
