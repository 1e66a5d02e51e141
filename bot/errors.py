"""Error types whose messages are meant for people, not stack traces."""

from __future__ import annotations


class SalesbotError(Exception):
    """Base class: the message is shown to the user as is."""


class ConfigError(SalesbotError):
    """The configuration file is missing, malformed or invalid. Names the file and the key."""


class TemplateError(SalesbotError):
    """A script template does not parse or uses an unknown variable. Names the file and line."""


class ScenarioError(SalesbotError):
    """A simulator scenario is malformed. Names the step."""


class TransportError(SalesbotError):
    """The chat platform could not be reached or refused an operation."""


class NotConnected(TransportError):
    """The account is not connected right now, so nothing was sent: try again after it reconnects."""


class DeliveryUnknown(TransportError):
    """The connection broke while sending: the platform may or may not have the message."""


class RecipientUnavailable(TransportError):
    """The customer can no longer be messaged (they deleted the rep or blocked the account)."""


class CommandError(SalesbotError):
    """A business error in a rep command (unknown stage, no such customer): shown to the rep as is."""


class UsageError(SalesbotError):
    """A command's words do not fit its arguments: the rep gets the usage line."""
