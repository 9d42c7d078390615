"""`python -m services.enricher`: run the enricher until SIGTERM."""

from services.enricher.app import main

if __name__ == "__main__":
    raise SystemExit(main())
