"""`python -m api`: serve the HTTP API with uvicorn."""

import uvicorn

from api.app import create_app
from core.config import get_settings

if __name__ == "__main__":
    settings = get_settings()
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
    )
