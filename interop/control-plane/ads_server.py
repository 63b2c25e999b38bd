"""An independent xDS control plane for meshlib's interop suite, on grpcio.

meshlib's own tests serve xDS from `meshlib_xds::server`, written by the same
hands as the client under test. This server is a second implementation, in
another language on another gRPC stack, so that the client meets a control
plane whose quirks it did not choose. One quirk matters most: like
go-control-plane and many grpcio servers, it sends the response headers only
with the first response of a stream, never before (the handler is a generator
that yields nothing until it has something to send, and it never calls
`send_initial_metadata`). meshlib's client once hung against such servers.

It serves `envoy.service.discovery.v3.AggregatedDiscoveryService`, state of
the world only: `StreamAggregatedResources`. `DeltaAggregatedResources` is left
to the generated base class, which answers UNIMPLEMENTED.

Resources come from a JSON file (`--resources PATH`), re-read every 100 ms
(and on SIGHUP); a change is pushed to every open stream:

    {"version": "1",
     "nodes": {"test-node": [RESOURCE, ...], "*": [RESOURCE, ...]}}

A node id without an entry of its own gets the "*" list (or, without one,
nothing).
Each RESOURCE is either

  - {"any_base64": "..."}: a serialized google.protobuf.Any in standard
    base64, served byte for byte (for harnesses that encode with prost), or
  - an Envoy proto3-JSON object with an "@type", e.g.
    {"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", ...}.

Served types: Listener, RouteConfiguration, Cluster, ClusterLoadAssignment
(named by `name`, or `cluster_name` for the last). A file that does not parse
(say, caught half written) is logged and the previous resources are kept.
Responses carry version "<file version>.<change count>".

    python ads_server.py --resources resources.json [--port 0] [--host 127.0.0.1]

prints `listening on HOST:PORT` once it listens; logs ACKs, NACKs and every
response to stderr; exits on SIGTERM or SIGINT.
"""

import argparse
import base64
import concurrent.futures
import itertools
import json
import queue
import signal
import sys
import threading

import grpc
from google.protobuf import any_pb2, json_format

# Every message type a resource may carry, directly or in a typed_config,
# must be imported for the descriptor pool to parse its JSON.
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2  # noqa: F401
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2  # noqa: F401
from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: F401
from envoy.extensions.filters.network.http_connection_manager.v3 import (  # noqa: F401
    http_connection_manager_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2  # noqa: F401
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

PREFIX = "type.googleapis.com/"
# type URL -> (message class, field that names the resource)
TYPES = {
    PREFIX + cls.DESCRIPTOR.full_name: (cls, field)
    for cls, field in (
        (listener_pb2.Listener, "name"),
        (route_pb2.RouteConfiguration, "name"),
        (cluster_pb2.Cluster, "name"),
        (endpoint_pb2.ClusterLoadAssignment, "cluster_name"),
    )
}
# Types whose every response holds every subscribed resource, and for which
# an empty subscription (before any name) means "all" (the xDS wildcard).
WILDCARD_TYPES = {
    PREFIX + listener_pb2.Listener.DESCRIPTOR.full_name,
    PREFIX + cluster_pb2.Cluster.DESCRIPTOR.full_name,
}
POLL_SECONDS = 0.1


LOG_LOCK = threading.Lock()


def log(message):
    with LOG_LOCK:  # whole lines, though streams log from many threads
        sys.stderr.write(f"ads_server: {message}\n")
        sys.stderr.flush()


def short(type_url):
    return type_url.rsplit(".", 1)[-1]


def parse_resource(entry):
    """One resource of the file, as (type URL, name, Any)."""
    packed = any_pb2.Any()
    if not isinstance(entry, dict):
        raise ValueError(f"a resource is an object, not {entry!r}")
    if "any_base64" in entry:
        packed.ParseFromString(base64.b64decode(entry["any_base64"], validate=True))
    elif "@type" in entry:
        json_format.ParseDict(entry, packed)
    else:
        raise ValueError("a resource needs \"any_base64\" or \"@type\"")
    type_url = PREFIX + packed.type_url.rsplit("/", 1)[-1]
    if type_url not in TYPES:
        raise ValueError(f"unsupported resource type {packed.type_url!r}")
    cls, field = TYPES[type_url]
    message = cls()
    if not packed.Unpack(message):
        raise ValueError(f"cannot decode a {packed.type_url}")
    return type_url, getattr(message, field), packed


class Snapshot:
    """One reading of the file: per node, type URL -> name -> Any."""

    def __init__(self, text, generation):
        document = json.loads(text)
        self.version = f"{document.get('version', '')}.{generation}"
        self.nodes = {}
        for node, entries in document.get("nodes", {}).items():
            by_type = self.nodes[node] = {}
            for entry in entries:
                type_url, name, packed = parse_resource(entry)
                if name in by_type.setdefault(type_url, {}):
                    raise ValueError(f"node {node!r}: two {short(type_url)}s named {name!r}")
                by_type[type_url][name] = packed

    @classmethod
    def empty(cls):
        return cls("{}", 0)

    def resources(self, node, type_url):
        by_type = self.nodes.get(node, self.nodes.get("*", {}))
        return by_type.get(type_url, {})


class Store:
    """The current snapshot, and the streams to tell when it changes."""

    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        self.snapshot = Snapshot.empty()
        self.generation = 0
        self.text = None
        self.streams = set()

    def reload(self):
        try:
            with open(self.path, "rb") as f:
                text = f.read()
        except OSError as error:
            if self.text is not False:  # once per disappearance
                log(f"cannot read {self.path}: {error}; keeping the last resources")
                self.text = False
            return
        if text == self.text:
            return
        self.text = text
        try:
            snapshot = Snapshot(text, self.generation + 1)
        except Exception as error:  # JSON, base64, protobuf: all keep the last good one
            log(f"{self.path} does not parse ({error}); keeping the last resources")
            return
        with self.lock:
            self.generation += 1
            self.snapshot = snapshot
            streams = list(self.streams)
        count = sum(len(names) for types in snapshot.nodes.values() for names in types.values())
        log(f"loaded {self.path}: version {snapshot.version}, {count} resources")
        for events in streams:
            events.put(("changed", None))

    def watch(self, stop, reload_now):
        while not stop.is_set():
            self.reload()
            if reload_now.wait(POLL_SECONDS):
                reload_now.clear()

    def attach(self, events):
        with self.lock:
            self.streams.add(events)
            return self.snapshot

    def detach(self, events):
        with self.lock:
            self.streams.discard(events)


class Subscription:
    """One stream's state for one type URL."""

    def __init__(self):
        self.names = set()
        self.wildcard = False
        self.ever_named = False
        self.nonce = ""  # of the last response
        self.sent_version = None  # None: never answered
        self.sent_for = None  # the key() the last response answered
        self.sent = {}  # name -> serialized Any, as last sent

    def update(self, type_url, resource_names):
        names = set(resource_names) - {"*"}
        self.ever_named |= bool(names)
        self.wildcard = "*" in resource_names or (
            not resource_names and not self.ever_named and type_url in WILDCARD_TYPES
        )
        self.names = names

    def key(self):
        return (self.wildcard, frozenset(self.names))

    def wanted(self, available):
        if self.wildcard:
            return dict(available)
        return {name: available[name] for name in sorted(self.names) if name in available}


class Stream:
    """The state of one ADS stream: its node and, per type URL, a Subscription."""

    ids = itertools.count(1)
    nonces = itertools.count(1)
    lock = threading.Lock()

    def __init__(self, snapshot):
        with Stream.lock:
            self.id = next(Stream.ids)
        self.snapshot = snapshot
        self.node = ""
        self.subscriptions = {}

    def log(self, what, type_url, details):
        log(f"{what} stream={self.id} node={self.node} type={short(type_url)} {details}")

    def on_change(self, snapshot):
        """Pushes for every type whose resources for this node changed."""
        self.snapshot = snapshot
        responses = (self.respond(t, sub, push=True) for t, sub in self.subscriptions.items())
        return [r for r in responses if r is not None]

    def on_request(self, request):
        """The response a request calls for, if any."""
        if request.HasField("node") and request.node.id:
            self.node = request.node.id
        type_url, nonce = request.type_url, request.response_nonce
        if type_url not in TYPES:
            self.log("unsupported", type_url, "(not answered)")
            return None
        sub = self.subscriptions.setdefault(type_url, Subscription())
        # The latest request always states the whole interest, even when it
        # answers an older response, so its names are taken in any case.
        sub.update(type_url, list(request.resource_names))
        if nonce and sub.nonce and nonce != sub.nonce:
            # (A nonce on a type not yet answered here is from an older
            # stream: the request counts as a first one.)
            self.log("stale", type_url, f"nonce={nonce} (latest {sub.nonce}): not answered")
            return None
        if request.HasField("error_detail"):
            self.log(
                "NACK",
                type_url,
                f"version={sub.sent_version} nonce={nonce} kept={request.version_info!r}: "
                f"{request.error_detail.message}",
            )
            if sub.sent_for == sub.key():
                return None  # answered only if the names changed too
        elif nonce and sub.nonce:
            self.log("ACK", type_url, f"version={request.version_info} nonce={nonce}")
            if request.version_info == sub.sent_version and sub.sent_for == sub.key():
                return None
        return self.respond(type_url, sub, push=False)

    def respond(self, type_url, sub, push):
        """The response due for `sub`, or None if the client has it already."""
        if not sub.wildcard and not sub.names:
            # Unsubscribed from everything of this type: nothing to send.
            if sub.sent_for not in (None, sub.key()):
                self.log("unsubscribed", type_url, "")
            sub.sent_for = sub.key()
            return None
        wanted = sub.wanted(self.snapshot.resources(self.node, type_url))
        serialized = {name: packed.SerializeToString() for name, packed in wanted.items()}
        if push and (sub.sent_version is None or serialized == sub.sent):
            return None  # not yet asked for, or unchanged for this node
        with Stream.lock:
            sub.nonce = str(next(Stream.nonces))
        sub.sent_version = self.snapshot.version
        sub.sent_for = sub.key()
        sub.sent = serialized
        self.log(
            "push" if push else "send",
            type_url,
            f"version={sub.sent_version} nonce={sub.nonce} resources={sorted(wanted)}",
        )
        return discovery_pb2.DiscoveryResponse(
            version_info=sub.sent_version,
            resources=list(wanted.values()),
            type_url=type_url,
            nonce=sub.nonce,
        )


class AggregatedDiscoveryService(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    """StreamAggregatedResources; DeltaAggregatedResources stays UNIMPLEMENTED."""

    def __init__(self, store):
        self.store = store

    def StreamAggregatedResources(self, request_iterator, context):
        # Requests and file changes meet in one queue; this generator yields
        # nothing (so grpcio sends no headers) until a response is due.
        events = queue.Queue()
        context.add_callback(lambda: events.put(("closed", None)))
        stream = Stream(self.store.attach(events))

        def read():
            try:
                for request in request_iterator:
                    events.put(("request", request))
            except Exception:  # cancelled or reset: the callback ends the stream
                pass
            events.put(("closed", None))

        threading.Thread(target=read, daemon=True).start()
        try:
            while True:
                kind, request = events.get()
                if kind == "closed":
                    return
                if kind == "changed":
                    yield from stream.on_change(self.store.snapshot)
                    continue
                response = stream.on_request(request)
                if response is not None:
                    yield response
        finally:
            self.store.detach(events)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resources", required=True, help="the JSON resources file")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--min-ping-interval-ms",
        type=int,
        help="accept client keepalive pings this often, without limit on strikes "
        "(default: gRPC's policy, one every 5 min, GOAWAY after 2 too soon)",
    )
    args = parser.parse_args()

    store = Store(args.resources)
    store.reload()
    stop, reload_now = threading.Event(), threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: reload_now.set())

    # Each open stream holds a worker thread for as long as it lasts.
    options = []
    if args.min_ping_interval_ms is not None:
        options = [
            ("grpc.http2.min_ping_interval_without_data_ms", args.min_ping_interval_ms),
            ("grpc.http2.max_ping_strikes", 0),
            ("grpc.keepalive_permit_without_calls", 1),
        ]
    server = grpc.server(
        concurrent.futures.ThreadPoolExecutor(max_workers=64), options=options
    )
    ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(
        AggregatedDiscoveryService(store), server
    )
    host = f"[{args.host}]" if ":" in args.host else args.host
    port = server.add_insecure_port(f"{host}:{args.port}")
    server.start()
    print(f"listening on {host}:{port}", flush=True)

    watcher = threading.Thread(target=store.watch, args=(stop, reload_now), daemon=True)
    watcher.start()
    while not stop.wait(1):
        pass
    log("stopping")
    server.stop(grace=1).wait(5)


if __name__ == "__main__":
    main()
