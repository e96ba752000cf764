"""The Garmin Connect source, by concern: `connect` (login with MFA, token import),
`tokens` (garminconnect's token file in hillsync's state directory), `errors` (what a
library failure means), `mapping` (summaries to activities), `source` (polling).

Built on garminconnect >= 0.3.20 (no garth). The library keeps its own token file
(`garmin_tokens.json`: DI access and refresh tokens) in a folder we give it as a path, so
that tokens it refreshes are written back there. hillsync never stores the password.

API economy: the summaries already carry elevationGain/elevationLoss, which is enough to
label most runs, so a poll with nothing new costs one request, and the original FIT is
downloaded only for an outdoor run whose label needs a profile (or with streams="always").
"""

from hillsync.sources.garmin.connect import GarminAccount, connect_garmin, import_garmin_tokens
from hillsync.sources.garmin.mapping import GARMIN_SPORTS, activity_from_summary
from hillsync.sources.garmin.source import GarminSource, LoggedInClients
from hillsync.sources.garmin.tokens import TOKEN_FILE, disconnect_garmin

__all__ = [
    "GARMIN_SPORTS",
    "TOKEN_FILE",
    "GarminAccount",
    "GarminSource",
    "LoggedInClients",
    "activity_from_summary",
    "connect_garmin",
    "disconnect_garmin",
    "import_garmin_tokens",
]
