"""moto_server with DynamoDB's isolation and stream shards that outlive a rolled-back
transaction, and Kinesis's routing and shard ends after a reshard.

moto applies a TransactWriteItems in place and, when a condition fails, restores every table
from a copy it took first. Under moto_server's threads, another request that lands in between
is undone with it (an acknowledged write lost) or sees the rolled-back put. Real DynamoDB
isolates transactions (serializable against other writes). This runs the same server with the
DynamoDB backend's operations behind one lock, so concurrent appends behave as on DynamoDB;
every other service (SQS long polls among them) stays concurrent. A rolled-back transaction
also keeps each table's stream shard the one readers hold (see _transact_keeping_streams).

Kinesis, after a SplitShard or MergeShards, keeps routing records to the closed parent (it
takes the first shard whose hash range holds the key, closed or not), and a closed shard's
iterator never ends. On Kinesis a closed shard takes no more records, and GetRecords answers
a null NextShardIterator once a closed shard has nothing more to give: that is what consumers
wait for before they read the children. This routes records to open shards only and ends a
closed shard's iterator so. (moto's split also re-puts the parent's records into the
children: consumers see them twice, which they must tolerate anyway.)

Usage: python scripts/moto-server.py -H 127.0.0.1 -p PORT (moto_server's own arguments).
"""

import functools
import threading

from moto import server
from moto.dynamodb.models import DynamoDBBackend
from moto.kinesis.models import KinesisBackend, Stream
from moto.kinesis.utils import decompose_shard_iterator
from moto.utilities.utils import md5_hash

_LOCK = threading.RLock()

_transact = DynamoDBBackend.transact_write_items


@functools.wraps(_transact)
def _transact_keeping_streams(self, *args, **kwargs):
    """A rolled-back transaction puts back a deep copy of each table it touched, stream shard
    and all: the readers' shard iterators then hold the old shard, which no record reaches
    again, where on DynamoDB a shard is the same whatever a transaction did. This puts the
    shard the readers hold back in place, with the records it had before the transaction."""
    shards = {
        name: t.stream_shard
        for name, t in self.tables.items()
        if t.stream_shard is not None
    }
    try:
        return _transact(self, *args, **kwargs)
    except Exception:
        for name, shard in shards.items():
            table = self.tables.get(name)
            copied = getattr(table, "stream_shard", None)
            if copied is not None and copied is not shard:
                shard.items = copied.items
                shard.table = table
                table.stream_shard = shard
        raise


DynamoDBBackend.transact_write_items = _transact_keeping_streams

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

_shard_for_key = Stream.get_shard_for_key


def _open_shard_for_key(self, partition_key, explicit_hash_key):
    found = _shard_for_key(self, partition_key, explicit_hash_key)  # validates the key
    if found is None or found.is_open:
        return found
    if explicit_hash_key:
        key = int(explicit_hash_key)
    else:
        key = int(md5_hash(partition_key.encode("utf-8")).hexdigest(), 16)
    for shard in self.shards.values():
        if shard.is_open and shard.starting_hash <= key <= shard.ending_hash:
            return shard
    return None


Stream.get_shard_for_key = _open_shard_for_key

_get_records = KinesisBackend.get_records


def _get_records_to_the_end(self, stream_arn, shard_iterator, limit):
    next_iterator, records, behind = _get_records(self, stream_arn, shard_iterator, limit)
    stream_name, shard_id, _ = decompose_shard_iterator(shard_iterator)
    stream = self.describe_stream(stream_arn=stream_arn, stream_name=stream_name)
    shard = stream.get_shard(shard_id)
    _, _, last = decompose_shard_iterator(next_iterator)
    if not shard.is_open and int(last) >= shard.get_max_sequence_number():
        next_iterator = None
    return next_iterator, records, behind


KinesisBackend.get_records = _get_records_to_the_end

if __name__ == "__main__":
    server.main()
