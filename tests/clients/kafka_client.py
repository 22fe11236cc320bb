"""The Kafka client of tests/records.rs: kafka-python (Debian's python3-kafka) against a broker.

Creates topic `orders`, tries to create it again (TOPIC_ALREADY_EXISTS), produces three messages
one by one, then fetches them from the beginning. Prints what it read, one value per line.

api_version is pinned: the client's version probing does not finish against every broker, and
the pin makes the request versions (and so the capture) the same on every run.
"""
import sys

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

broker = sys.argv[1]
version = (2, 0, 0)

admin = KafkaAdminClient(bootstrap_servers=broker, api_version=version)
admin.create_topics([NewTopic("orders", 1, 1)])
try:
    admin.create_topics([NewTopic("orders", 1, 1)])
    sys.exit("creating `orders` twice must fail")
except TopicAlreadyExistsError:
    pass
admin.close()

producer = KafkaProducer(bootstrap_servers=broker, api_version=version)
for i in range(3):
    producer.send("orders", b"order-%d" % i).get(timeout=10)
producer.close()

consumer = KafkaConsumer(bootstrap_servers=broker, api_version=version, consumer_timeout_ms=2000)
partition = TopicPartition("orders", 0)
consumer.assign([partition])
consumer.seek_to_beginning(partition)
for message in consumer:
    print(message.value.decode())
consumer.close()
