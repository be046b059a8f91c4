"""Exit 0 when the Kafka broker at argv[1] answers a metadata request that lists at least argv[2] brokers (default 1;
the cluster profile waits for all three). Used by the stack's readiness checks."""

import sys

from confluent_kafka.admin import AdminClient

wanted = int(sys.argv[2]) if len(sys.argv) > 2 else 1
try:
    metadata = AdminClient({"bootstrap.servers": sys.argv[1]}).list_topics(timeout=3)
except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
    print(f"kafka not ready: {exc}", file=sys.stderr)
    sys.exit(1)
sys.exit(0 if len(metadata.brokers) >= wanted else 1)
