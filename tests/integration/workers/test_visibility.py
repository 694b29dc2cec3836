"""The visibility keeper against real kombu deliveries on Redis: it finds kombu's index of
unacknowledged messages under the name it reads from kombu, prolongs the messages it holds,
and never brings back one that was acknowledged."""

from __future__ import annotations

import time

import redis
from kombu import Connection, Exchange, Queue

from tests.integration.conftest import TEST_REDIS_URL
from workers.visibility import UNACKED_INDEX_KEY, VisibilityKeeper


def test_the_keeper_prolongs_held_deliveries_and_leaves_acknowledged_ones(
    redis_client: redis.Redis,
) -> None:
    queue = Queue("vidnav-visibility-test", Exchange("vidnav-visibility-test"),
                  routing_key="vidnav-visibility-test")
    with Connection(TEST_REDIS_URL, transport_options={"visibility_timeout": 60}) as conn:
        producer = conn.Producer()
        producer.publish({"n": 1}, exchange=queue.exchange, routing_key=queue.routing_key,
                         declare=[queue], serializer="json")
        message = queue(conn.default_channel).get(no_ack=False)
        assert message is not None
        tag = str(message.delivery_tag)
        # kombu indexes the unacknowledged delivery under the key the keeper writes.
        delivered = redis_client.zscore(UNACKED_INDEX_KEY, tag)
        assert delivered is not None and abs(delivered - time.time()) < 30
        # As if it had been delivered long ago: the keeper makes it recent again.
        redis_client.zadd(UNACKED_INDEX_KEY, {tag: time.time() - 3600})
        keeper = VisibilityKeeper(TEST_REDIS_URL, 60, held=lambda: [tag])
        try:
            assert keeper.touch() == 1
            touched = redis_client.zscore(UNACKED_INDEX_KEY, tag)
            assert touched is not None and abs(touched - time.time()) < 5
            message.ack()
            assert redis_client.zscore(UNACKED_INDEX_KEY, tag) is None
            keeper.touch()  # still listed as held (a race with the ack): must not re-add it
            assert redis_client.zscore(UNACKED_INDEX_KEY, tag) is None
        finally:
            keeper.client.close()
