"""Real redis-server deployments for tests: single node, three-master cluster, TLS and ACL users.

The harness speaks a few lines of RESP over plain or TLS sockets itself, so it does not depend
on the client library the tests are checking.
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, TypeAlias
from urllib.parse import quote

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

Reply: TypeAlias = bytes | int | list["Reply"] | None

#: An application user confined to the backend's default key prefix (see ``set_user``).
APP_USER, APP_PASSWORD = "app", "secret"
APP_USER_RULES = ("on", "~langswarm:*", "resetchannels", "+@all", "-@dangerous", "+@scripting")


class RedisReplyError(RuntimeError):
    """The server answered a harness command with an error reply (``-ERR ...``)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_cluster_ports(count: int) -> list[int]:
    """Distinct free loopback ports whose cluster-bus twins (port + 10000) are free too."""
    ports: list[int] = []
    for _ in range(200 * count):
        port = free_port()
        if port in ports or port + 10000 > 65535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == count:
            return ports
    raise RuntimeError(f"found no {count} free port pairs (port, port + 10000) on 127.0.0.1")


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed; the README test command installs it")
    return path


def _encode(args: tuple[object, ...]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _read(stream: BinaryIO) -> Reply:
    line = stream.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError(f"connection closed mid-reply after {line!r}")
    kind, body = line[:1], line[1:-2]
    if kind == b"-":
        raise RedisReplyError(body.decode(errors="replace"))
    if kind == b"+":
        return body
    if kind == b":":
        return int(body)
    if kind == b"$":
        return None if int(body) < 0 else stream.read(int(body) + 2)[:-2]
    if kind == b"*":
        return None if int(body) < 0 else [_read(stream) for _ in range(int(body))]
    raise ConnectionError(f"unexpected reply {line!r}")


def _array(reply: Reply) -> list[Reply]:
    assert isinstance(reply, list), reply
    return reply


@dataclass
class RedisServer:
    """A redis-server process started by the tests on a free loopback port.

    ``password``, when set, is the ``default`` user's password (``requirepass``); the harness
    then authenticates its own commands with it.
    """

    port: int
    directory: Path
    extra_args: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None
    password: str | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def listen_args(self) -> list[str]:
        """Command-line options saying where the server listens."""
        return ["--port", str(self.port)]

    def open_socket(self, timeout: float) -> socket.socket:
        """A connected socket to the server (TLS servers wrap it)."""
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def ready(self) -> bool:
        """Whether the server answers PING (or asks for a password)."""
        try:
            with self.open_socket(timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False

    def start(self) -> None:
        auth = ("--requirepass", self.password) if self.password is not None else ()
        self.process = subprocess.Popen(
            [
                _binary("redis-server"), *self.listen_args(), "--bind", "127.0.0.1",
                "--dir", str(self.directory), "--save", "", "--daemonize", "no",
                *auth, *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.ready():
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            time.sleep(0.02)
        raise RuntimeError("redis-server did not start within 10 s")

    def call(self, *args: object, timeout: float = 5) -> Reply:
        """Run one command on a fresh connection and return its reply."""
        with self.open_socket(timeout) as sock, sock.makefile("rb") as stream:
            if self.password is not None:
                sock.sendall(_encode(("AUTH", self.password)))
                _read(stream)
            sock.sendall(_encode(args))
            return _read(stream)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _signal(self, signum: signal.Signals) -> None:
        if self.process is not None and self.alive():
            self.process.send_signal(signum)

    def pause(self) -> None:
        """Freeze the process (SIGSTOP): connections stay open, nothing is answered."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def kill(self) -> None:
        if self.process is not None and self.alive():
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.alive():
            self.resume()
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def flushall(self) -> None:
        self.call("FLUSHALL", timeout=2)

    def set_user(self, user: str, password: str, *rules: str) -> None:
        """Create or replace an ACL user with exactly these rules (e.g. ``APP_USER_RULES``)."""
        self.call("ACL", "SETUSER", user, "reset", f">{password}", *rules)

    def acl_url(self, user: str, password: str) -> str:
        """This server's URL logging in as ``user``; both parts percent-encoded."""
        credentials = f"{quote(user, safe='')}:{quote(password, safe='')}"
        return f"{self.url.split('://')[0]}://{credentials}@127.0.0.1:{self.port}/0"


@dataclass
class RedisCluster:
    """Cluster-enabled masters (three by default) on loopback ports, no replicas.

    Each node has its own directory and ``nodes.conf``, so a killed node restarts with the same
    identity and slots. ``node_timeout_ms`` is short enough for failure tests and long enough
    that a loaded machine's late heartbeats do not get a node marked failed.
    """

    directory: Path
    size: int = 3
    node_timeout_ms: int = 5000
    nodes: list[RedisServer] = field(default_factory=list)

    @property
    def startup_nodes(self) -> list[str]:
        """``127.0.0.1:port`` of every master."""
        return [f"127.0.0.1:{node.port}" for node in self.nodes]

    @property
    def urls(self) -> list[str]:
        """``redis://127.0.0.1:port`` of every master."""
        return [f"redis://{address}" for address in self.startup_nodes]

    @property
    def url(self) -> str:
        """Every master in one URL: ``redis+cluster://host:port,host:port,...``."""
        return "redis+cluster://" + ",".join(self.startup_nodes)

    @property
    def node_url(self) -> str:
        """The first master's plain URL, from which cluster clients discover the rest."""
        return self.urls[0]

    def start(self, timeout: float = 30) -> None:
        cluster = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
        node_timeout = ("--cluster-node-timeout", str(self.node_timeout_ms))
        options = (*cluster, *node_timeout, "--appendonly", "no")
        try:
            for i, port in enumerate(free_cluster_ports(self.size)):
                (directory := self.directory / f"node-{i}").mkdir()
                self.nodes.append(RedisServer(port, directory, extra_args=options))
                self.nodes[-1].start()
            command = [_binary("redis-cli"), "--cluster", "create", *self.startup_nodes]
            command += ["--cluster-replicas", "0", "--cluster-yes"]
            created = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
            if created.returncode != 0:
                output = created.stdout + created.stderr
                raise RuntimeError(f"redis-cli --cluster create failed:\n{output}")
            self.wait_until_ok(timeout)
        except BaseException:
            self.stop()
            raise

    def _ask_each(self, *command: object) -> list[str | None]:
        """``command``'s text reply from every node (``None`` where it got no answer)."""
        replies: list[str | None] = []
        for node in self.nodes:
            try:
                reply = node.call(*command, timeout=1)
            except (OSError, RedisReplyError):
                replies.append(None)
                continue
            assert isinstance(reply, bytes)
            replies.append(reply.decode())
        return replies

    def states(self) -> list[str]:
        """Each node's ``cluster_state`` (``ok``/``fail``), or ``unreachable``."""
        states = []
        for info in self._ask_each("CLUSTER", "INFO"):
            if info is None:
                states.append("unreachable")
                continue
            fields = dict(line.split(":", 1) for line in info.split() if ":" in line)
            states.append(fields.get("cluster_state", "unknown"))
        return states

    def views(self) -> list[object]:
        """Each node's view of the cluster (every node's config epoch and slots), or why it
        has none: unreachable, a node flagged failing, or a slot half-migrated."""
        views: list[object] = []
        for table in self._ask_each("CLUSTER", "NODES"):
            rows = [line.split() for line in (table or "").splitlines() if line.strip()]
            if table is None:
                views.append("unreachable")
            elif any("fail" in row[2] for row in rows):
                views.append("a node flagged failing")
            elif any("->-" in slot or "-<-" in slot for row in rows for slot in row[8:]):
                views.append("a slot migrating")
            else:
                views.append(sorted((row[0], row[6], tuple(row[8:])) for row in rows))
        return views

    def settled(self) -> bool:
        """Every node says ``cluster_state:ok`` and all see the same epochs and slot owners,
        so no late heartbeat can move a slot back and bounce clients between nodes."""
        if self.states() != ["ok"] * len(self.nodes):
            return False
        views = self.views()
        return isinstance(views[0], list) and all(view == views[0] for view in views)

    def wait_until_ok(self, timeout: float = 30) -> None:
        """Poll until every node is ok and their slot maps agree (gossip has settled)."""
        deadline = time.monotonic() + timeout
        while not self.settled():
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"cluster not settled within {timeout} s; node states: {self.states()}, "
                    f"views: {self.views()}"
                )
            time.sleep(0.02)

    def flushall(self) -> None:
        for node in self.nodes:
            node.flushall()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def kill_node(self, i: int) -> None:
        self.nodes[i].kill()

    def pause_node(self, i: int) -> None:
        self.nodes[i].pause()

    def resume_node(self, i: int) -> None:
        self.nodes[i].resume()

    def restart_node(self, i: int) -> None:
        """Start a killed node again; it rejoins with its old identity and slots."""
        self.nodes[i].start()

    def heal(self) -> None:
        """Resume paused nodes, restart dead ones and wait until the cluster is ok again."""
        for i, node in enumerate(self.nodes):
            node.resume()
            if not node.alive():
                self.restart_node(i)
        self.wait_until_ok()

    def slot_owner(self, slot: int) -> int:
        """Index in ``nodes`` of the master serving ``slot``, as the first node sees it."""
        for entry in _array(self.nodes[0].call("CLUSTER", "SLOTS")):
            first, last, master = _array(entry)[:3]
            port = _array(master)[1]
            assert isinstance(first, int) and isinstance(last, int) and isinstance(port, int)
            if first <= slot <= last:
                return [node.port for node in self.nodes].index(port)
        raise LookupError(f"no node serves slot {slot}")

    def move_slot(self, slot: int, to: int) -> None:
        """Migrate ``slot`` and its keys to ``nodes[to]``; clients with the old map get MOVED."""
        source, target = self.nodes[self.slot_owner(slot)], self.nodes[to]
        if source is target:
            return
        source_id, target_id = source.call("CLUSTER", "MYID"), target.call("CLUSTER", "MYID")
        target.call("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        source.call("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        while keys := _array(source.call("CLUSTER", "GETKEYSINSLOT", slot, 100)):
            source.call("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
        others = [node for node in self.nodes if node is not source and node is not target]
        for node in (target, source, *others):
            node.call("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        self.wait_until_ok()


Issued: TypeAlias = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


def _issue(name: str, issuer: Issued | None, purpose: x509.ObjectIdentifier | None) -> Issued:
    """A P-256 key and a one-day certificate for it: a CA when ``issuer`` is None."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, signer = (issuer[0].subject, issuer[1]) if issuer else (subject, key)
    ca, now = issuer is None, datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        # digital_signature always; certificate and CRL signing for the CA only
        .add_extension(x509.KeyUsage(True, False, False, False, False, ca, ca, False, False), True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), False
        )
    )
    if purpose is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
    if purpose == ExtendedKeyUsageOID.SERVER_AUTH:
        names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(signer, hashes.SHA256()), key


def make_certificates(directory: Path) -> None:
    """Write ``ca.pem``, ``server.pem``/``.key`` (127.0.0.1, localhost), ``client.pem``/``.key``."""
    ca = _issue("langswarm test CA", None, None)
    issued = {
        "server": _issue("127.0.0.1", ca, ExtendedKeyUsageOID.SERVER_AUTH),
        "client": _issue("langswarm test client", ca, ExtendedKeyUsageOID.CLIENT_AUTH),
    }
    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(ca[0].public_bytes(pem))
    for role, (cert, key) in issued.items():
        (directory / f"{role}.pem").write_bytes(cert.public_bytes(pem))
        (directory / f"{role}.key").write_bytes(
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )


def redis_tls_missing() -> str | None:
    """Why this redis-server cannot serve TLS, or None when it can.

    Given a TLS port but no CA, a TLS build fails while configuring TLS; other builds fail on
    the option itself.
    """
    command = [_binary("redis-server"), "--port", "0", "--bind", "127.0.0.1"]
    command += ["--tls-port", str(free_port()), "--tls-auth-clients", "yes"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return "a TLS probe of redis-server did not exit"
    output = (result.stdout + result.stderr).strip()
    if "configure TLS" in output:
        return None
    return output.splitlines()[-1] if output else f"probe exited with {result.returncode}"


@dataclass
class RedisTLSServer(RedisServer):
    """redis-server listening only on a TLS port, with a fresh CA written to ``directory``.

    With ``require_client_cert`` the server refuses clients that do not present a certificate
    signed by that CA (``client_cert`` is such a certificate).
    """

    require_client_cert: bool = False

    def __post_init__(self) -> None:
        make_certificates(self.directory)

    @property
    def url(self) -> str:
        return f"rediss://127.0.0.1:{self.port}/0"

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def client_cert(self) -> tuple[Path, Path]:
        """A certificate and key the CA signed for clients (``ssl_certfile``, ``ssl_keyfile``)."""
        return self.directory / "client.pem", self.directory / "client.key"

    def listen_args(self) -> list[str]:
        cert, key = self.directory / "server.pem", self.directory / "server.key"
        return [
            "--port", "0", "--tls-port", str(self.port), "--tls-ca-cert-file", str(self.ca_file),
            "--tls-cert-file", str(cert), "--tls-key-file", str(key),
            "--tls-auth-clients", "yes" if self.require_client_cert else "no",
        ]  # fmt: skip

    def open_socket(self, timeout: float) -> socket.socket:
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.require_client_cert:
            context.load_cert_chain(*self.client_cert)
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        try:
            return context.wrap_socket(raw, server_hostname="127.0.0.1")
        except BaseException:
            raw.close()
            raise
