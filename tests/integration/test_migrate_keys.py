"""tools/chatgw-migrate-keys moves a desk from the old key layout (cg:<name>) to the tenant's
(cg:{t:default}:<name>): the data, a stream's consumer group, and nothing twice."""
import os
import subprocess

from conftest import ROOT
from desk import s

TOOL = os.path.join(ROOT, "tools", "chatgw-migrate-keys")


def test_old_keys_move_to_the_tenant(redis_srv):
    r = redis_srv.r
    r.hset("cg:conv:abc", mapping={"state": "assigned", "seq": 3})
    r.xadd("cg:in", {"c": "abc", "s": 1, "m": b"x"})
    r.xgroup_create("cg:in", "routers", id="0")
    r.set("cg:{t:default}:conv:kept", "1")   # already a tenant's key: untouched
    r.set("cg:gw:gw1", "1")
    r.set("cg:{t:default}:gw:gw1", "new")    # a clash: left, reported
    env = dict(os.environ, CHATGW_REDIS_URL=redis_srv.url)
    dry = subprocess.run([TOOL, "--dry-run"], env=env, capture_output=True, text=True)
    assert dry.returncode == 0 and "cg:conv:abc -> cg:{t:default}:conv:abc" in dry.stdout
    assert r.exists("cg:conv:abc")  # a dry run moves nothing
    p = subprocess.run([TOOL], env=env, capture_output=True, text=True)
    assert p.returncode == 1 and "left: cg:gw:gw1" in p.stderr, p.stdout + p.stderr
    assert "moved 2 keys to cg:{t:default}:; 1 left" in p.stdout
    assert s(r.hget("cg:{t:default}:conv:abc", "seq")) == "3" and not r.exists("cg:conv:abc")
    assert [s(g["name"]) for g in r.xinfo_groups("cg:{t:default}:in")] == ["routers"]
    assert s(r.get("cg:{t:default}:gw:gw1")) == "new" and r.exists("cg:gw:gw1")
