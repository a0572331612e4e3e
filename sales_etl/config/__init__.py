"""The one reader of the environment: the frozen settings (settings, connections, reader),
what the Functions host accepts (hostsettings), identity tokens and the protector built
from the configured keys (keys). May import core and stages."""
