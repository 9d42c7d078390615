"""The ledger: the platform's write model.

Orders arrive over REST with an idempotency key, fill at once at their price (the sandbox's venue is a
simulator), and are written to PostgreSQL together with the account's position and an outbox row in one
transaction. A background relay publishes the outbox to the Kafka topic `orders`, at least once.
"""
