"""Exit 0 when the Kafka broker at argv[1] answers a metadata request (used by stack readiness)."""

import sys

from confluent_kafka.admin import AdminClient

try:
    metadata = AdminClient({"bootstrap.servers": sys.argv[1]}).list_topics(timeout=3)
except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
    print(f"kafka not ready: {exc}", file=sys.stderr)
    sys.exit(1)
sys.exit(0 if metadata.brokers else 1)
