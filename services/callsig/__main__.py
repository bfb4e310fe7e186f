"""`python -m services.callsig`: run one call signaling instance."""

from bridge.service import ServiceRuntime
from core.config import Settings
from core.database import Database
from services.callsig.livekit_server import LiveKitServer
from services.callsig.service import CallSignaling
from services.callsig.tokens import TokenMinter
from services.runner import run


def build(runtime: ServiceRuntime, db: Database, settings: Settings) -> CallSignaling:
    # Made here, inside the running loop: the LiveKit client holds an aiohttp session.
    livekit = LiveKitServer(settings)
    return CallSignaling(runtime, db, settings, TokenMinter.from_settings(settings), livekit)


if __name__ == "__main__":
    run("callsig", build)
