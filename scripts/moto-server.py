"""moto_server with DynamoDB's isolation: one DynamoDB operation at a time.

moto applies a TransactWriteItems in place and, when a condition fails, restores every table
from a copy it took first. Under moto_server's threads, another request that lands in between
is undone with it (an acknowledged write lost) or sees the rolled-back put. Real DynamoDB
isolates transactions (serializable against other writes). This runs the same server with the
DynamoDB backend's operations behind one lock, so concurrent appends behave as on DynamoDB;
every other service (SQS long polls among them) stays concurrent.

Usage: python scripts/moto-server.py -H 127.0.0.1 -p PORT (moto_server's own arguments).
"""

import functools
import threading

from moto import server
from moto.dynamodb.models import DynamoDBBackend

_LOCK = threading.RLock()

for _name in (
    "put_item",
    "get_item",
    "query",
    "scan",
    "update_item",
    "delete_item",
    "transact_write_items",
    "batch_get_item",
    "batch_write_item",
    "transact_get_items",
):
    _original = getattr(DynamoDBBackend, _name)

    @functools.wraps(_original)
    def _serialized(self, *args, __original=_original, **kwargs):
        with _LOCK:
            return __original(self, *args, **kwargs)

    setattr(DynamoDBBackend, _name, _serialized)

if __name__ == "__main__":
    server.main()
