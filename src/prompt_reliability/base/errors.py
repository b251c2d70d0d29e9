"""Errors shared by the base layer's checks (config, resources, selective targets)."""


class ConfigError(ValueError):
    """The config is inconsistent; the message names the key and the fix."""
