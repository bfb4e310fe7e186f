"""`python -m services.presence`: run the presence tracker."""

from services.presence.service import PresenceTracker
from services.runner import run

if __name__ == "__main__":
    run("presence", PresenceTracker)
