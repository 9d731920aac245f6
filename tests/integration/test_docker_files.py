"""The container files (issue 12, item 13), checked without a Docker engine (there is none here):

- .dockerignore keeps var/ (JWT secret, AOF), build/, .git, node_modules and keys out of the build
  context, and keeps everything the image is built from in it (Docker's matching rules: patterns
  relative to the context root, a match on a directory covers everything below, `**` spans
  directories, the last matching pattern wins, `!` re-includes);
- the Dockerfile builds and ships chatgw-export, the mail tools and their Python runtime, every
  shared library the binaries need comes from a package the runtime stage installs;
- its HEALTHCHECK command is run for real, the way Docker runs it (exec form, the image's ENV, the
  image's /usr/local/bin on PATH), against a real gateway: healthy while Redis is up, unhealthy
  on 503 and when the gateway is gone — also over TLS;
- compose.yml: the router, which has no HTTP port, does not inherit the gateway's check.
"""
import json
import os
import re
import shlex
import shutil
import subprocess

import pytest
import yaml

from conftest import BUILD, ROOT, wait_until

DOCKERFILE = os.path.join(ROOT, "docker", "Dockerfile")
BINARIES = ("chatgw-gateway", "chatgw-router", "chatgw-token", "chatgw-export")
# debian:12-slim's own packages (Priority: required) that the binaries may link against.
BASE_IMAGE_PACKAGES = {"libc6", "libgcc-s1", "zlib1g", "libzstd1", "liblzma5", "libselinux1"}


# ---- Dockerfile --------------------------------------------------------------------------------

def instructions(path=DOCKERFILE):
    """[(INSTRUCTION, argument text)] with continuation lines joined and comments dropped."""
    out, cur = [], ""
    with open(path) as f:
        for raw in f:
            line = raw.rstrip("\n")
            if not cur and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if cur and line.lstrip().startswith("#"):
                continue  # a comment inside a continued instruction
            if line.endswith("\\"):
                cur += line[:-1] + " "
                continue
            cur += line
            word, _, rest = cur.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            cur = ""
    return out


def stages():
    """The instructions of each build stage, in order."""
    result = []
    for ins, arg in instructions():
        if ins == "FROM":
            result.append([])
        result[-1].append((ins, arg))
    return result


def runtime():
    return stages()[-1]


def copies(stage):
    """[(options, sources, destination)] of the COPY instructions of a stage."""
    out = []
    for ins, arg in stage:
        if ins != "COPY":
            continue
        words = shlex.split(arg)
        opts = [w for w in words if w.startswith("--")]
        paths = [w for w in words if not w.startswith("--")]
        out.append((opts, paths[:-1], paths[-1]))
    return out


def apt_packages(stage):
    pkgs = []
    for ins, arg in stage:
        if ins == "RUN" and "apt-get install" in arg:
            cmd = arg.split("apt-get install", 1)[1].split("&&")[0]
            pkgs += [w for w in cmd.split() if not w.startswith("-")]
    return pkgs


def image_env():
    env = {}
    for ins, arg in runtime():
        if ins == "ENV":
            for w in shlex.split(arg):
                k, _, v = w.partition("=")
                env[k] = v
    return env


def healthcheck_cmd():
    hc = [arg for ins, arg in runtime() if ins == "HEALTHCHECK"]
    assert len(hc) == 1, "the runtime stage has one HEALTHCHECK"
    m = re.search(r"\bCMD\s+(.*)$", hc[0])
    assert m, hc[0]
    cmd = m.group(1).strip()
    # exec form (JSON array) runs as is; shell form runs under /bin/sh -c, i.e. dash
    return json.loads(cmd) if cmd.startswith("[") else ["/bin/sh", "-c", cmd]


def in_image(name):
    """The file of the repository that the runtime stage copies to /usr/local/bin/<name>."""
    for opts, srcs, dest in copies(runtime()):
        if dest.rstrip("/") == "/usr/local/bin" and not any(o.startswith("--from") for o in opts):
            for s in srcs:
                if os.path.basename(s) == name:
                    return os.path.join(ROOT, s)
    return None


# ---- .dockerignore -------------------------------------------------------------------------------

def _pattern_regex(pattern):
    """Docker's pattern syntax (moby/patternmatcher) as a regex over '/'-separated paths."""
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
            continue
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            continue
        out += {"*": "[^/]*", "?": "[^/]"}.get(c, re.escape(c))
        i += 1
    return re.compile(out + r"\Z")


def dockerignore_rules():
    rules = []
    with open(os.path.join(ROOT, ".dockerignore")) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            neg = line.startswith("!")
            pat = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
            rules.append((neg, _pattern_regex(pat)))
    return rules


def excluded(path, rules):
    """Whether the context path (relative to the root) is left out of the build context."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    result = False
    for neg, rx in rules:
        if any(rx.match(p) for p in prefixes):
            result = not neg
    return result


def test_dockerignore_keeps_state_and_secrets_out():
    rules = dockerignore_rules()
    for p in ("var/jwt_secret", "var/appendonlydir/appendonly.aof.1.incr.aof", "var/redis.sock",
              "build/chatgw-gateway", "build/asan/obj/common/rconn.o", ".git/HEAD",
              "node_modules/x/index.js", "tests/browser/node_modules/playwright-core/package.json",
              "bench/node_modules/ws/index.js", ".env", "docker/.env", "certs/server.key",
              "tls.pem", "docker/msmtprc", "tools/__pycache__/x.pyc"):
        assert excluded(p, rules), f"{p} would be sent into the image build"


def test_dockerignore_keeps_the_sources_in():
    rules = dockerignore_rules()
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    needed = [p for p in tracked if p.split("/")[0] in
              ("Makefile", "common", "proto", "channels", "gateway", "router", "redis", "tools",
               "config")]
    assert "gateway/main.c" in needed and "config/chatgw.ini" in needed
    left_out = [p for p in needed if excluded(p, rules)]
    assert not left_out, f"the image build needs {left_out}"
    for opts, srcs, _ in copies(runtime()) + copies(stages()[0]):
        if any(o.startswith("--from") for o in opts):
            continue
        for s in srcs:
            if s == ".":
                continue
            assert os.path.exists(os.path.join(ROOT, s)), f"COPY {s}: no such file"
            assert not excluded(s, rules), f"COPY {s} is excluded by .dockerignore"


# ---- what the image contains ---------------------------------------------------------------------

def test_image_ships_export_and_mail_tools():
    build_stage = stages()[0]
    make = " ".join(arg for ins, arg in build_stage if ins == "RUN" and "make " in arg)
    from_build = [s for opts, srcs, _ in copies(runtime()) if "--from=build" in opts
                  for s in srcs]
    for b in BINARIES:
        assert f"/out/{b}" in make.split(), f"the build stage does not build {b}"
        assert f"/out/{b}" in from_build, f"the image does not ship {b}"
    pkgs = apt_packages(runtime())
    for tool in ("chatgw-mail-in", "chatgw-mail-out", "chatgw-healthcheck"):
        src = in_image(tool)
        assert src and os.access(src, os.X_OK), f"{tool} is not copied (executable) to the image"
        with open(src) as f:
            assert f.readline().strip() == "#!/usr/bin/python3"
    assert "python3" in pkgs and "python3-websockets" in pkgs  # chatgw-mail-out: import websockets
    assert "libwebsockets-evlib-uv" in pkgs  # lws' libuv plugin, loaded at run time


def _packages_of(libs):
    """{soname: the Debian package that installs it}, for {soname: the path the loader picks}
    (one dpkg -S for all; the path's directory tells the architecture apart)."""
    pats = ["*/" + "/".join(path.split("/")[-2:]) for path in libs.values()]
    out = subprocess.run(["dpkg", "-S"] + pats, capture_output=True, text=True)
    owners = {}
    for line in out.stdout.splitlines():
        pkg, _, path = line.partition(": ")
        lib = os.path.basename(path)
        if lib in libs and "-dev" not in pkg and \
                path.endswith("/".join(libs[lib].split("/")[-2:])):
            owners[lib] = pkg.split(":")[0]
    return owners


def _depends(pkg):
    out = subprocess.run(["dpkg-query", "-W", "-f=${Depends} ${Pre-Depends}", pkg],
                         capture_output=True, text=True)
    return {re.split(r"[\s(:]", d.strip())[0] for alt in out.stdout.split(",")
            for d in alt.split("|") if d.strip()}


def test_runtime_packages_provide_every_needed_library():
    pkgs = set(apt_packages(runtime()))
    reachable = pkgs | BASE_IMAGE_PACKAGES
    for p in pkgs:
        reachable |= _depends(p)
    needed = {}
    for b in BINARIES:
        dyn = subprocess.run(["objdump", "-p", os.path.join(ROOT, BUILD, b)],
                             capture_output=True, text=True, check=True).stdout
        for lib in re.findall(r"NEEDED\s+(\S+)", dyn):
            if "asan" not in lib and "ubsan" not in lib:  # a sanitizer build's runtime
                needed.setdefault(lib, []).append(b)
    paths = {}
    for b in BINARIES:
        ldd = subprocess.run(["ldd", os.path.join(ROOT, BUILD, b)], capture_output=True,
                             text=True, check=True).stdout
        paths.update(re.findall(r"^\s*(\S+) => (\S+)", ldd, re.M))
    owners = _packages_of({lib: paths[lib] for lib in needed})
    missing = [f"{lib} ({owners.get(lib)}) for {bins}" for lib, bins in needed.items()
               if owners.get(lib) not in reachable]
    assert not missing, f"not installed in the runtime image: {missing}"


def test_runtime_packages_exist_in_debian_12():
    probe = subprocess.run(["apt-cache", "policy", "libc6"], capture_output=True, text=True)
    if "Candidate: (none)" in probe.stdout or "Candidate" not in probe.stdout:
        pytest.skip("no apt package lists on this machine (apt-get update)")
    pkgs = apt_packages(runtime()) + apt_packages(stages()[0])
    out = subprocess.run(["apt-cache", "policy"] + pkgs, capture_output=True, text=True).stdout
    candidates = dict(re.findall(r"^(\S+):\n\s+Installed: .*\n\s+Candidate: (.*)$", out, re.M))
    for p in pkgs:
        assert candidates.get(p, "(none)") != "(none)", f"no Debian 12 package {p}"


def test_compose_services():
    with open(os.path.join(ROOT, "docker", "compose.yml")) as f:
        compose = yaml.safe_load(f)
    svcs = compose["services"]
    for name in ("gateway", "router"):
        assert svcs[name]["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}
    assert svcs["router"]["healthcheck"] == {"disable": True}
    assert "healthcheck" not in svcs["gateway"]  # the image's own
    for name, s in svcs.items():
        if "build" in s:
            exe = s["command"][0]
            assert in_image(exe) or f"/out/{exe}" in str(copies(runtime())), \
                f"{name}: {exe} is not in the image"


# ---- the HEALTHCHECK, run for real ---------------------------------------------------------------

@pytest.fixture
def image_bin(tmp_path):
    """A directory standing for the image's /usr/local/bin: its tools, as the Dockerfile copies."""
    d = tmp_path / "usr-local-bin"
    d.mkdir()
    for opts, srcs, dest in copies(runtime()):
        if dest.rstrip("/") == "/usr/local/bin" and not any(o.startswith("--") for o in opts):
            for s in srcs:
                shutil.copy2(os.path.join(ROOT, s), d / os.path.basename(s))
    return str(d)


def run_healthcheck(image_bin, port, extra=None):
    """Docker's way: the HEALTHCHECK command with the image's ENV (listen on the test's port)."""
    env = {"PATH": image_bin + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    env.update(image_env())
    env["CHATGW_CONFIG"] = os.path.join(ROOT, "config", "chatgw.ini")
    env["CHATGW_LISTEN"] = f"0.0.0.0:{port}"
    env.update(extra or {})
    return subprocess.run(healthcheck_cmd(), env=env, capture_output=True, text=True, timeout=30)


def test_healthcheck_never_needs_dev_tcp():
    cmd = " ".join(healthcheck_cmd())
    assert "/dev/tcp" not in cmd, "dash (debian's /bin/sh) has no /dev/tcp"


def test_healthcheck_follows_the_gateway(procs, redis_srv, image_bin):
    gw = procs.gateway()
    r = run_healthcheck(image_bin, gw.port)
    assert r.returncode == 0, r.stderr
    redis_srv.kill()
    wait_until(lambda: run_healthcheck(image_bin, gw.port).returncode == 1, 15,
               "unhealthy while Redis is down")
    assert "HTTP 503" in run_healthcheck(image_bin, gw.port).stderr
    redis_srv.start()
    wait_until(lambda: run_healthcheck(image_bin, gw.port).returncode == 0, 15, "healthy again")
    gw.stop()
    r = run_healthcheck(image_bin, gw.port)
    assert r.returncode == 1 and "Connection refused" in r.stderr


def test_healthcheck_reads_the_config_file_and_tls(procs, image_bin, tmp_path):
    from test_gateway_tls import make_cert
    crt, key = make_cert(str(tmp_path), "hc")
    gw = procs.gateway({"CHATGW_TLS_CERT": crt, "CHATGW_TLS_KEY": key})
    assert run_healthcheck(image_bin, gw.port, {"CHATGW_TLS_CERT": crt}).returncode == 0
    r = run_healthcheck(image_bin, gw.port)  # plain http to a TLS port: not healthy
    assert r.returncode == 1
    ini = tmp_path / "gw.ini"
    ini.write_text(f"[gateway]\nlisten = 127.0.0.1:{gw.port} ; comment\ntls_cert = {crt}\n")
    env = {"PATH": image_bin + ":/usr/bin:/bin", "CHATGW_CONFIG": str(ini)}
    r = subprocess.run(healthcheck_cmd(), env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
