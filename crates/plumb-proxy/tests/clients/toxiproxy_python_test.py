"""Drives a plumb proxy server with toxiproxy-python (PyPI), unchanged.

Usage: python3 toxiproxy_python_test.py ADMIN_HOST ADMIN_PORT ECHO_UPSTREAM
Launched by tests/proxy/clients.rs; exits non-zero on the first failure.
"""
import socket
import sys
import time

from toxiproxy import Toxiproxy
from toxiproxy.exceptions import NotFound, ProxyExists, InvalidToxic


def round_trip(addr, msg=b"ping"):
    host, port = addr.rsplit(":", 1)
    t = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(msg)
        got = b""
        while len(got) < len(msg):
            chunk = s.recv(65536)
            assert chunk, "connection closed early"
            got += chunk
    assert got == msg, got
    return time.monotonic() - t


def main():
    host, port, upstream = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    tp = Toxiproxy()
    tp.update_api_consumer(host, port)
    assert tp.running()
    assert b"2." in tp.version(), tp.version()

    proxy = tp.create(upstream=upstream, name="py_echo")
    assert proxy.listen.startswith("127.0.0.1:") and not proxy.listen.endswith(":0"), proxy.listen
    assert "py_echo" in tp.proxies()
    assert round_trip(proxy.listen) < 0.5

    try:
        tp.create(upstream=upstream, name="py_echo")
        raise AssertionError("duplicate proxy accepted")
    except ProxyExists:
        pass

    proxy.add_toxic(type="latency", attributes={"latency": 300})
    toxics = proxy.toxics()
    assert list(toxics) == ["latency_downstream"], toxics
    assert toxics["latency_downstream"].attributes["latency"] == 300
    d = round_trip(proxy.listen)
    assert d >= 0.28, d

    try:
        proxy.add_toxic(type="not_a_toxic")
        raise AssertionError("bad toxic accepted")
    except InvalidToxic:
        pass

    proxy.destroy_toxic("latency_downstream")
    assert proxy.toxics() == {}
    assert round_trip(proxy.listen) < 0.25

    with proxy.down():
        try:
            round_trip(proxy.listen)
            raise AssertionError("disabled proxy still accepts")
        except (ConnectionRefusedError, ConnectionResetError):
            pass
    assert round_trip(proxy.listen) < 0.5

    proxy.add_toxic(type="reset_peer", stream="upstream", attributes={"timeout": 0})
    try:
        round_trip(proxy.listen)
        raise AssertionError("reset_peer did not reset")
    except (ConnectionResetError, AssertionError) as e:
        if isinstance(e, AssertionError) and "closed early" not in str(e):
            raise
    tp.reset()
    assert proxy.toxics() == {}
    assert round_trip(proxy.listen) < 0.5

    populated = tp.populate([{"name": "py_second", "upstream": upstream, "listen": "127.0.0.1:0"}])
    assert [p.name for p in populated] == ["py_second"]
    tp.destroy_all()
    assert tp.proxies() == {}
    try:
        tp.get_proxy("py_echo").destroy()
        raise AssertionError("proxy survived destroy_all")
    except AttributeError:
        pass
    print("toxiproxy-python: all checks passed")


if __name__ == "__main__":
    main()
