"""Token hardening end to end: exp required and bounded (token_max_ttl), identifiers and names
checked, revocation by jti (chatgw-token --revoke, cg:{t:default}:revoked:<jti>), key rotation by kid
(jwt_secrets); every refusal names the problem (error frame, then close 1008 with the reason)."""
import os
import re
import subprocess
import time
import urllib.error
import urllib.request

import jwt as pyjwt

from chat import Client, agent, customer
from conftest import BUILD, JWT_SECRET
from desk import log_of, run

KEY1 = "first-rotating-secret-0123456789abcdef"
KEY2 = "second-rotating-secret-0123456789abcdef"


def signed(claims, key=JWT_SECRET, kid=None, **defaults):
    """An HS256 token (PyJWT) for claims chatgw-token cannot mint."""
    now = int(time.time())
    c = {"role": "agent", "sub": "eve", "iat": now, "exp": now + 600, "jti": "t-1"}
    c.update(claims)
    for k in [k for k, v in c.items() if v is None]:
        del c[k]
    return pyjwt.encode(c, key, algorithm="HS256", headers={"kid": kid} if kid else None)


def mint(procs, agent_id, env=None, *extra):
    """chatgw-token: (token, jti)."""
    e = procs._env(env or {})
    out = subprocess.run([os.path.join(BUILD, "chatgw-token"), "--agent", agent_id,
                          "--skills", "general", *extra], env=e, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    jti = re.search(r"jti (\S+),", out.stderr).group(1)
    return out.stdout.strip(), jti


async def refused(gw, path, token, code="bad_token", **hello):
    """Say hello with token on path: the error frame, and the close (code 1008)."""
    c = await Client.connect(gw.ws, path)
    await c.send({"type": "hello", "token": token, **hello})
    err = await c.expect_type("error")
    assert err["code"] == code, err
    closed = await c.expect_closed()
    assert closed.code == 1008, closed
    return err, closed


def test_agent_tokens_need_exp_within_max_ttl(procs):
    gw = procs.gateway({"CHATGW_TOKEN_MAX_TTL": "3600", "CHATGW_CUSTOMER_TOKEN_TTL": "3600"})

    async def scenario():
        err, closed = await refused(gw, "/ws/agent", signed({"exp": None}))
        assert "'exp' is required" in err["text"] and "'exp' is required" in closed.reason
        now = int(time.time())
        err, closed = await refused(gw, "/ws/agent", signed({"exp": now + 86400}))
        assert "token_max_ttl" in err["text"], err
        err, _ = await refused(gw, "/ws/agent", signed({"exp": now - 5}), code="expired_token")
        ok = await agent(gw, signed({"exp": now + 3000}))
        assert ok.welcome["sender_id"] == "eve"
        await ok.close()

    run(scenario())
    # the desk's tool refuses to mint what the gateway would refuse
    e = procs._env({"CHATGW_TOKEN_MAX_TTL": "3600"})
    out = subprocess.run([os.path.join(BUILD, "chatgw-token"), "--agent", "a", "--ttl", "86400"],
                         env=e, capture_output=True, text=True)
    assert out.returncode == 2 and "token_max_ttl" in out.stderr, out.stderr
    out = subprocess.run([os.path.join(BUILD, "chatgw-token"), "--agent", "a", "--ttl", "0"],
                         env=e, capture_output=True, text=True)
    assert out.returncode == 2, out.stderr


def test_agent_ids_and_skills_are_checked(procs):
    gw = procs.gateway()

    async def scenario():
        for claims, what in (({"sub": "x:socks"}, "'sub'"), ({"sub": "cg:{t:default}:agent:*"}, "'sub'"),
                             ({"skills": ["x:socks"]}, "skill"), ({"skills": ["General"]}, "skill"),
                             ({"jti": None}, "'jti' is required"),
                             ({"name": "Eve\u202egnp.exe"}, "U+202E")):
            err, closed = await refused(gw, "/ws/agent", signed(claims))
            assert what in err["text"], (claims, err)
            assert closed.reason, closed
        ok = await agent(gw, signed({"sub": "eve.w@desk-1", "skills": ["after_sales"]}))
        await ok.close()

    run(scenario())
    out = subprocess.run([os.path.join(BUILD, "chatgw-token"), "--agent", "x:socks"],
                         env=procs._env({}), capture_output=True, text=True)
    assert out.returncode == 1 and "'sub'" in out.stderr, out.stderr


def test_revoked_agent_token_is_refused(procs, redis_srv):
    gw = procs.gateway()
    token, jti = mint(procs, "rita")
    keep, _ = mint(procs, "rita")

    async def before():
        a = await agent(gw, token)
        await a.close()

    run(before())
    out = subprocess.run([os.path.join(BUILD, "chatgw-token"), "--revoke", jti, "--redis",
                          redis_srv.url], env=procs._env({}), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert redis_srv.r.exists(f"cg:{{t:default}}:revoked:{jti}")
    assert 0 < redis_srv.r.ttl(f"cg:{{t:default}}:revoked:{jti}") <= 2592000  # as long as any token can live

    async def after():
        err, closed = await refused(gw, "/ws/agent", token)
        assert "revoked" in err["text"] and closed.reason == "token revoked"
        other = await agent(gw, keep)  # another token of the same agent: fine
        await other.close()

    run(after())
    req = urllib.request.Request(gw.base + "/canned?queue=general",
                                 headers={"Authorization": "Bearer " + token})
    try:
        urllib.request.urlopen(req, timeout=5)
        raise AssertionError("/canned took a revoked token")
    except urllib.error.HTTPError as e:
        assert e.code == 401
    bad = subprocess.run([os.path.join(BUILD, "chatgw-token"), "--revoke", "a b", "--redis",
                          redis_srv.url], env=procs._env({}), capture_output=True, text=True)
    assert bad.returncode == 2 and "jti" in bad.stderr


def test_customer_session_tokens_carry_a_jti_and_can_be_revoked(procs, redis_srv):
    gw = procs.gateway()

    async def scenario():
        c = await customer(gw)
        tok = c.welcome["token"]
        claims = pyjwt.decode(tok, JWT_SECRET, algorithms=["HS256"])
        assert claims["exp"] - claims["iat"] == 2592000 and claims["jti"], claims
        await c.close()
        again = await customer(gw, token=tok)  # the session resumes with it
        assert again.welcome["sender_id"] == claims["sub"]
        await again.close()
        redis_srv.r.set(f"cg:{{t:default}}:revoked:{claims['jti']}", 1, ex=60)
        err, _ = await refused(gw, "/ws/customer", tok)
        assert "revoked" in err["text"], err

    run(scenario())


def test_keys_rotate_by_kid(procs):
    # k2 is the new signing key, k1 the previous one, JWT_SECRET the legacy key (no kid)
    gw = procs.gateway({"CHATGW_JWT_SECRETS": f"k2:{KEY2}, k1:{KEY1}"})

    async def scenario():
        old, _ = mint(procs, "olga", {"CHATGW_JWT_SECRETS": f"k1:{KEY1}"})
        assert pyjwt.get_unverified_header(old)["kid"] == "k1"
        new, _ = mint(procs, "nina", {"CHATGW_JWT_SECRETS": f"k1:{KEY1},k2:{KEY2}"}, "--kid", "k2")
        assert pyjwt.get_unverified_header(new)["kid"] == "k2"
        legacy, _ = mint(procs, "lena")
        assert "kid" not in pyjwt.get_unverified_header(legacy)
        for t in (old, new, legacy):
            a = await agent(gw, t)
            await a.close()
        err, _ = await refused(gw, "/ws/agent", signed({}, key=KEY1, kid="k3"))
        assert "unknown key id" in err["text"], err
        err, _ = await refused(gw, "/ws/agent", signed({}, key=KEY1, kid="k2"))
        assert "bad signature" in err["text"], err
        c = await customer(gw)  # customer tokens are signed with the first key
        assert pyjwt.get_unverified_header(c.welcome["token"])["kid"] == "k2"
        pyjwt.decode(c.welcome["token"], KEY2, algorithms=["HS256"])
        await c.close()

    run(scenario())


def test_bad_key_configuration_stops_the_gateway(procs):
    for env, says in (({"CHATGW_JWT_SECRETS": "k1:short"}, "the secret of kid 'k1'"),
                      ({"CHATGW_JWT_SECRETS": "k1"}, "is not kid:secret"),
                      ({"CHATGW_JWT_SECRET": "", "CHATGW_JWT_SECRETS": ""}, "no token secret"),
                      ({"CHATGW_TOKEN_MAX_TTL": "600"}, "customer_token_ttl")):
        gw = procs.gateway(env, wait_ready=False)
        gw.wait_log(says, 10)
        assert gw.proc.wait(10) == 1
        assert "k1:short" not in gw.text()  # no secret in the log


def test_control_and_bidi_characters_are_removed_from_customer_names(procs, redis_srv):
    gw = procs.gateway()

    async def scenario():
        c = await customer(gw, sender_name="Bob\u202eexe.pdf\x07\u2066\u0085 \u200f张",
                           identity={"account": "acc\u2069ount\n"})
        assert c.welcome["sender_name"] == "Bobexe.pdf 张", c.welcome
        claims = pyjwt.decode(c.welcome["token"], JWT_SECRET, algorithms=["HS256"])
        assert claims["name"] == "Bobexe.pdf 张"
        ack = await c.say("hello")
        assert ack["type"] == "ack", ack
        await c.close()
        return ack["conv"]

    conv = run(scenario())
    log = log_of(redis_srv.r, conv)
    mine = [e for e in log if e.get("text") == "hello"][0]
    assert mine["sender_name"] == "Bobexe.pdf 张", mine
    assert mine["identity"]["account"] == "account", mine
    assert "removed 7 control or bidi characters" in procs.all[0].text()
