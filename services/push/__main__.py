"""`python -m services.push`: run one push instance."""

from bridge.service import ServiceRuntime
from core.config import Settings
from core.database import Database
from services.push.expo import ExpoSender
from services.push.service import PushService
from services.runner import run


def build(runtime: ServiceRuntime, db: Database, settings: Settings) -> PushService:
    sender = ExpoSender(settings.expo_api_url, settings.expo_access_token)
    return PushService(runtime, db, settings, sender)


if __name__ == "__main__":
    run("push", build)
