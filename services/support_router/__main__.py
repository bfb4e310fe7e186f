"""`python -m services.support_router`: run one support router instance."""

from services.runner import run
from services.support_router.service import SupportRouter

if __name__ == "__main__":
    run("support_router", SupportRouter)
