"""The enricher: VWAP, spread and moving average per symbol, published to Kafka and stored in ClickHouse."""
