"""Services in another language on the same bus as the chassis.

Runs the example order and shipping services as processes on a real broker
(RabbitMQ, then NATS JetStream) and talks to them with real Python clients
(pika, nats-py) and the CloudEvents Python SDK:

- consumer: a Python subscriber reads the `order.completed.v1` the order
  service publishes for an order placed over HTTP, and validates it as a
  CloudEvent with the SDK (required attributes, time, data);
- producer: Python publishes `order.completed.v1` CloudEvents built with the
  SDK (every binary and structured form the SDK writes for that broker), and
  the shipping service packs each order.

Isolation: a vhost of its own on RabbitMQ (rabbitmqctl), a subject prefix of
its own on NATS (its streams deleted at the end), in-memory stores.
Exit status 0 only when every check passed.

On NATS it runs twice: with the services writing the binary content mode
(the default), then the structured one (`messaging.nats.content_mode`).

Usage: python interop_test.py ORDER_SERVICE_BIN SHIPPING_SERVICE_BIN [rabbitmq|nats|nats-structured ...]
"""

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone

import nats
import pika
from cloudevents.core.bindings import amqp as ce_amqp
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.bindings import rabbitmq as ce_rabbitmq
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
EVENT_TYPE = "order.completed.v1"
WAIT = 60.0
RABBITMQ = "amqp://guest:guest@127.0.0.1:5672/"
NATS = "nats://127.0.0.1:4222"


def log(message):
    print(f"interop: {message}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, None


class Service:
    """One service process, stopped on exit."""

    def __init__(self, binary, name, broker_env):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        env.update(broker_env)
        env.update(
            {
                "CHASSIS_CONFIG_DIR": os.path.join(ROOT, "examples", name, "config"),
                "CHASSIS__HTTP__HOST": "127.0.0.1",
                "CHASSIS__HTTP__PORT": str(self.port),
                "CHASSIS__LOGGING__LEVEL": "warn",
            }
        )
        self.name = name
        self.process = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + WAIT
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{name} exited with {self.process.returncode}")
            try:
                if http("GET", f"{self.url}/health/ready")[0] == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready within {WAIT} s")
            time.sleep(0.1)

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def place_order(order_service, quantity):
    status, order = http(
        "POST",
        f"{order_service.url}/orders",
        {
            "customer_id": "python-interop",
            "destination": destination(),
            "items": [
                {
                    "sku": "LAMP-01",
                    "name": "Desk lamp",
                    "unit_price_cents": 2500,
                    "quantity": quantity,
                    "weight_grams": 1200,
                    "length_mm": 300,
                    "width_mm": 200,
                    "height_mm": 150,
                }
            ],
        },
    )
    assert status == 201, f"placing an order answered {status}"
    return order["id"]


def destination():
    return {
        "name": "Grace Hopper",
        "street": "1 Harbour Road",
        "city": "Arlington",
        "postal_code": "22201",
        "country": "US",
    }


def order_completed(order_id, quantity):
    """An `order.completed.v1` CloudEvent as a Python service would build it."""
    return CloudEvent(
        attributes={
            "type": EVENT_TYPE,
            "source": "/python/interop-test",
            "id": f"py-{uuid.uuid4()}",
            "datacontenttype": "application/json",
            "subject": order_id,
        },
        data={
            "order_id": order_id,
            "destination": destination(),
            "items": [
                {
                    "sku": "BOX",
                    "quantity": quantity,
                    "weight_grams": 2000,
                    "length_mm": 200,
                    "width_mm": 200,
                    "height_mm": 200,
                }
            ],
            "completed_at": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
        },
    )


def check_order_completed(event, order_id):
    """What a consumer in another language relies on."""
    attributes = event.get_attributes()
    assert event.get_specversion() == "1.0", attributes
    assert event.get_type() == EVENT_TYPE, attributes
    assert event.get_source() == "order-service", attributes
    assert event.get_id(), attributes
    assert isinstance(event.get_time(), datetime), attributes
    assert event.get_datacontenttype() == "application/json", attributes
    assert attributes.get("partitionkey") == order_id, attributes
    assert attributes.get("correlationid"), attributes
    traceparent = attributes.get("traceparent")
    assert traceparent is None or len(traceparent.split("-")) == 4, attributes
    data = event.get_data()
    assert data["order_id"] == order_id, data
    assert data["items"][0]["sku"] == "LAMP-01" and data["items"][0]["quantity"] == 2, data
    assert data["destination"]["city"] == "Arlington", data


def await_packed(shipping_service, order_id, quantity, how):
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        status, shipment = http("GET", f"{shipping_service.url}/shipments/{order_id}")
        if status == 200:
            units = 0
            for package_id in shipment["packages"]:
                _, package = http("GET", f"{shipping_service.url}/packages/{package_id}")
                units += sum(
                    i["quantity"] for i in package["items"] if i["order_id"] == order_id
                )
            assert units == quantity, f"{how}: {units} of {quantity} units packed"
            log(f"shipping packed order {order_id} ({how}): {units} units")
            return
        time.sleep(0.2)
    raise AssertionError(f"{how}: order {order_id} not packed within {WAIT} s")


def rabbitmqctl(*args):
    subprocess.run(["rabbitmqctl", *args], check=True, stdout=subprocess.DEVNULL)


def run_rabbitmq(order_bin, shipping_bin):
    vhost = f"interop-{uuid.uuid4().hex[:12]}"
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        url = f"{RABBITMQ}{vhost}"
        broker_env = {
            "CHASSIS__MESSAGING__PROVIDER": "rabbitmq",
            "CHASSIS__MESSAGING__RABBITMQ__URL": url,
        }
        exchange = "chassis.events"
        services = []
        try:
            order = Service(order_bin, "order-service", broker_env)
            services.append(order)
            shipping = Service(shipping_bin, "shipping-service", broker_env)
            services.append(shipping)
            connection = pika.BlockingConnection(pika.URLParameters(url))
            channel = connection.channel()

            # Consumer: our queue on the chassis's exchange, then an order.
            queue = channel.queue_declare("", exclusive=True).method.queue
            channel.queue_bind(queue, exchange, routing_key=EVENT_TYPE)
            order_id = place_order(order, 2)
            deadline = time.monotonic() + WAIT
            while True:
                method, properties, body = channel.basic_get(queue, auto_ack=True)
                if method is not None:
                    break
                assert time.monotonic() < deadline, "order.completed.v1 not received"
                time.sleep(0.1)
            message = ce_amqp.AMQPMessage(
                properties={"content-type": properties.content_type},
                application_properties={
                    k: v.decode() if isinstance(v, bytes) else v
                    for k, v in (properties.headers or {}).items()
                },
                application_data=body,
            )
            event = ce_amqp.from_binary(message, JSONFormat())
            check_order_completed(event, order_id)
            log(f"python read the order service's {EVENT_TYPE} of order {order_id} as a CloudEvent (AMQP binding)")

            # Producer: every form the SDK writes for RabbitMQ.
            forms = [
                ("AMQP binding, binary", lambda e: amqp_form(ce_amqp.to_binary(e, JSONFormat()))),
                ("RabbitMQ binding, binary", lambda e: rabbitmq_form(ce_rabbitmq.to_binary(e, JSONFormat()))),
                ("structured JSON", lambda e: rabbitmq_form(ce_rabbitmq.to_structured(e, JSONFormat()))),
            ]
            for quantity, (how, form) in enumerate(forms, start=1):
                order_id = str(uuid.uuid4())
                content_type, headers, body = form(order_completed(order_id, quantity))
                channel.basic_publish(
                    exchange,
                    EVENT_TYPE,
                    body,
                    pika.BasicProperties(
                        content_type=content_type, headers=headers, delivery_mode=2
                    ),
                )
                await_packed(shipping, order_id, quantity, f"RabbitMQ, {how}")
            connection.close()
        finally:
            for service in services:
                service.stop()
    finally:
        rabbitmqctl("delete_vhost", vhost)


def amqp_form(message):
    return message.properties.get("content-type"), message.application_properties, message.application_data


def rabbitmq_form(message):
    return message.content_type, message.headers, message.body


async def run_nats(order_bin, shipping_bin, content_mode):
    prefix = f"interop_{uuid.uuid4().hex[:12]}"
    broker_env = {
        "CHASSIS__MESSAGING__PROVIDER": "nats",
        "CHASSIS__MESSAGING__NATS__URL": NATS,
        "CHASSIS__MESSAGING__NATS__SUBJECT_PREFIX": prefix,
        "CHASSIS__MESSAGING__NATS__CONTENT_MODE": content_mode,
    }
    client = await nats.connect(NATS)
    js = client.jetstream()
    services = []
    try:
        order = Service(order_bin, "order-service", broker_env)
        services.append(order)
        shipping = Service(shipping_bin, "shipping-service", broker_env)
        services.append(shipping)
        subject = f"{prefix}.{EVENT_TYPE}"

        # Consumer: a core subscription to the subject, then an order.
        subscription = await client.subscribe(subject)
        # The server must have the subscription before the order is placed:
        # place_order blocks this loop, so an unflushed SUB would reach the
        # server after the event it is waiting for.
        await client.flush()
        order_id = place_order(order, 2)
        message = await subscription.next_msg(timeout=WAIT)
        headers = dict(message.headers or {})
        received = ce_http.HTTPMessage(headers=headers, body=message.data)
        if content_mode == "structured":
            assert headers == {"Content-Type": "application/cloudevents+json"}, headers
            event = ce_http.from_structured(received, JSONFormat())
        else:
            assert "ce-id" in headers, headers
            event = ce_http.from_binary(received, JSONFormat())
        check_order_completed(event, order_id)
        await subscription.unsubscribe()
        log(
            f"python read the order service's {EVENT_TYPE} of order {order_id} as a CloudEvent "
            f"(NATS binding, {content_mode} mode)"
        )

        # Producer: binary (ce- headers, percent-encoded) and structured.
        forms = [
            ("binary", lambda e: ce_http.to_binary(e, JSONFormat())),
            ("structured JSON", lambda e: ce_http.to_structured(e, JSONFormat())),
        ]
        for quantity, (how, form) in enumerate(forms, start=1):
            order_id = str(uuid.uuid4())
            message = form(order_completed(order_id, quantity))
            await js.publish(subject, message.body, headers=dict(message.headers))
            await asyncio.get_running_loop().run_in_executor(
                None, await_packed, shipping, order_id, quantity, f"NATS, {how}"
            )
    finally:
        for service in services:
            service.stop()
        for stream in await js.streams_info():
            if stream.config.name.startswith(prefix):
                await js.delete_stream(stream.config.name)
        await client.close()


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    order_bin, shipping_bin = sys.argv[1:3]
    brokers = sys.argv[3:] or ["rabbitmq", "nats", "nats-structured"]
    for broker in brokers:
        log(f"on {broker}")
        if broker == "rabbitmq":
            run_rabbitmq(order_bin, shipping_bin)
        elif broker == "nats":
            asyncio.run(run_nats(order_bin, shipping_bin, "binary"))
        elif broker == "nats-structured":
            asyncio.run(run_nats(order_bin, shipping_bin, "structured"))
        else:
            sys.exit(f"unknown broker {broker!r} (rabbitmq, nats or nats-structured)")
    log("every check passed")


if __name__ == "__main__":
    main()
