"""Accounts: sign-up, passwords, access tokens. Other domains use only what is exported here."""

from ridehail.accounts.models import Account
from ridehail.accounts.security import Passwords, Tokens
from ridehail.accounts.service import Contact, authenticate, contacts, get_account, register

__all__ = [
    "Account",
    "Contact",
    "Passwords",
    "Tokens",
    "authenticate",
    "contacts",
    "get_account",
    "register",
]
