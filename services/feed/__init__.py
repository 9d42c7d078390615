"""The market feed: ticks for a Zipf-skewed instrument universe, produced to Kafka at a scheduled rate."""
