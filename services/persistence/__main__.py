"""`python -m services.persistence`: run one persistence instance."""

from services.persistence.service import PersistenceService
from services.runner import run

if __name__ == "__main__":
    run("persistence", PersistenceService)
