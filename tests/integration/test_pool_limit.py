"""A pool's limits: max_connections (open connections to its servers
together) and max_requests (in flight to each server) stay within bounds;
a request finding no room waits in the pool's queue, oldest first, under
the queue timeout (by default the connect timeout) and its time left, then
gets 503 queue_timeout (more in test_admission.py)."""
from conftest import answering as slow
from conftest import concurrent_gets
from conftest import start_with_config as start_with


def test_requests_wait_for_a_free_connection(proxy_factory, upstream, tmp_path):
    up = upstream(slow(0.3))
    p = start_with(proxy_factory, tmp_path, f"""
pools:
  app:
    servers: [{up.addr}]
    max_connections: 1
routes:
  - {{path: /, pool: app}}
""")
    res = concurrent_gets(p, ["/a", "/b"])
    (ra, ta), (rb, tb) = res["/a"], res["/b"]
    assert ra.status == 200 and ra.body == b"/a"
    assert rb.status == 200 and rb.body == b"/b"
    assert ta < 0.55 and 0.55 <= tb < 1.2, (ta, tb)   # b waited for a's connection
    assert len(up.conns) == 1, "the limit of one connection was exceeded"


def test_waiting_is_bounded_by_the_queue_timeout_which_defaults_to_connect(proxy_factory, upstream, tmp_path):
    up = upstream(slow(1.0))
    p = start_with(proxy_factory, tmp_path, f"""
timeouts: {{connect: 200ms}}
pools:
  app:
    servers: [{up.addr}]
    max_connections: 1
routes:
  - {{path: /, pool: app}}
""")
    res = concurrent_gets(p, ["/a", "/b"])
    (ra, _), (rb, tb) = res["/a"], res["/b"]
    assert ra.status == 200
    assert rb.status == 503 and 0.18 <= tb < 0.5, (rb, tb)
    lines = p.wait_log(2)
    b = [l for l in lines if l["target"] == "/b"][0]
    assert b["reason"] == "queue_timeout", b
    assert "no free connection or server in pool app" in p.stderr_text()
    assert len(up.conns) == 1
