"""The parent/child sync protocol: every message in the table round-trips; anything out of order,
malformed or missing is a ProtocolError; ERROR becomes a ChildError with the child's one line."""

from __future__ import annotations

import os
import socket

import pytest

from runtime.oci import sync

SAMPLE = {"pid": 42, "message": "boom", "state": {"id": "x", "status": "creating"}}


@pytest.mark.parametrize("kind", sorted(k for k in sync.TABLE if k != sync.ERROR))
def test_each_message_round_trips(kind: str):
    payload = {k: SAMPLE[k] for k in sync.TABLE[kind].payload}
    doc = sync.decode(sync.encode(kind, **payload), kind)
    assert doc == {"type": kind, **payload}


def test_table_is_complete_and_documented():
    for kind, msg in sync.TABLE.items():
        assert msg.sender and msg.receiver and msg.meaning
        assert kind in (sync.__doc__ or ""), f"{kind} missing from the module's diagram"


def test_unknown_or_wrong_payload_is_refused_on_send():
    with pytest.raises(sync.ProtocolError):
        sync.encode("NOPE")
    with pytest.raises(sync.ProtocolError):
        sync.encode(sync.INIT_PID)  # pid missing
    with pytest.raises(sync.ProtocolError):
        sync.encode(sync.CGROUP_PLACED, pid=1)


def test_out_of_order_malformed_and_eof():
    with pytest.raises(sync.ProtocolError, match="expected INIT_READY, got INIT_PID"):
        sync.decode(sync.encode(sync.INIT_PID, pid=1), sync.INIT_READY)
    for raw in (b"{", b"[]", b'{"type": 3}', b'{"type": "INIT_PID"}'):
        with pytest.raises(sync.ProtocolError):
            sync.decode(raw, sync.INIT_PID)
    with pytest.raises(sync.ProtocolError, match="exited before sending INIT_READY"):
        sync.decode(b"", sync.INIT_READY)


def test_error_travels_as_one_line_over_a_real_socketpair():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with a, b:
        sync.send_error(b.fileno(), "mount /x:\n  No such file")
        with pytest.raises(sync.ChildError) as e:
            sync.recv(a.fileno(), sync.INIT_READY)
        assert str(e.value) == "mount /x: No such file"
        sync.send(b.fileno(), sync.INIT_PID, pid=7)
        sync.send(b.fileno(), sync.INIT_READY)  # packets keep their boundaries
        assert sync.recv(a.fileno(), sync.INIT_PID)["pid"] == 7
        assert sync.recv(a.fileno(), sync.INIT_READY)["type"] == sync.INIT_READY


def test_peer_gone_is_a_protocol_error():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    b.close()
    with a:
        with pytest.raises(sync.ProtocolError):
            sync.recv(a.fileno(), sync.INIT_PID)
        with pytest.raises(sync.ProtocolError):
            sync.send(a.fileno(), sync.CGROUP_PLACED)
    os.close(os.open("/dev/null", os.O_RDONLY))
