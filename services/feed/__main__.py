"""`python -m services.feed`: run the market feed until SIGTERM."""

from services.feed.app import main

if __name__ == "__main__":
    raise SystemExit(main())
