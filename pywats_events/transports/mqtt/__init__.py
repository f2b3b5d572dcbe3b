"""MQTT into the bus: `MQTTTransport` (paho-mqtt 2.x, MQTT 3.1.1 and 5), its `MQTTConfig` and `Subscription`s.

Broker sizing: Mosquitto's default `max_queued_messages` (1000) silently drops QoS 1 messages beyond it for a
persistent subscriber that is offline or slow;
`samples/config/mosquitto.conf` holds the settings we recommend.
"""

from ._config import MQTTConfig, Subscription, default_client_id
from ._topic_template import TopicTemplate, TopicTemplateCodec
from ._transport import MQTTStats, MQTTTransport

__all__ = [
    "MQTTConfig",
    "MQTTStats",
    "MQTTTransport",
    "Subscription",
    "TopicTemplate",
    "TopicTemplateCodec",
    "default_client_id",
]
