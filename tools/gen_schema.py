#!/usr/bin/python3
"""gen_schema.py -- schema/chatgw.json, checked, into C, Lua, JS and Python.

The schema is the one source of the lists chatgw's parts share (message types, channels, roles,
directions, error codes, timer kinds, KPIs, Redis keys). This script refuses a schema with a
mistake (a duplicate, an unknown class, a key pattern naming an undeclared part, a declared part
no key uses ...) and writes, into OUTDIR:

  proto_schema.h / .c   enums and names of the wire (msg_type, msg_channel, msg_role, msg_dir),
                        the message type flags and the error codes: for proto/ and everything
  desk_schema.h / .c    timer kinds, KPI fields, the tenant and Redis key patterns: for gateway/
                        and router/
  schema.lua            a Lua prelude (table CG) put into the Redis function library
  chatgw_schema.py      the same lists for the tests
  schema.js             the same lists for the pages (window.ChatgwSchema)

  gen_schema.py [--schema FILE] OUTDIR
  gen_schema.py --lua-lib NAME OUT.lua PRELUDE.lua PART.lua...   assemble one function library:
        "#!lua name=NAME", the prelude, then each part without its own #! line; fails when a part
        uses a CG name the schema does not declare, or a top-level local a later part defines
"""
import argparse
import json
import os
import pprint
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = re.compile(r"^[a-z][a-z0-9_]*$")
TENANT_PREFIX = re.compile(r"^cg:\{t:([a-z0-9_-]{1,32})\}:$")  # the wire's tenant form (hello.tenant)
PART = re.compile(r"\{([a-z_]+)\}")
LUA_RESERVED = {"and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto",
                "if", "in", "local", "nil", "not", "or", "repeat", "return", "then", "true",
                "until", "while"}
CLASSES = ("none", "content", "event", "ephemeral", "session", "command", "view")
LOGGED_CLASSES = ("content", "event")


class SchemaError(Exception):
    pass


def check(cond, what):
    if not cond:
        raise SchemaError(what)


def unique(items, field, section, lua=True):
    seen = set()
    for it in items:
        v = it.get(field)
        check(isinstance(v, str) and NAME.match(v), f"{section}: '{v}' is not a lower_snake name")
        check(v not in seen, f"{section}: '{v}' given twice")
        check(not lua or v not in LUA_RESERVED,
              f"{section}: '{v}' is a Lua keyword (these names are Lua fields)")
        check(isinstance(it.get("desc"), str) and it["desc"], f"{section}: '{v}' has no desc")
        seen.add(v)


def load(path):
    with open(path, encoding="utf-8") as f:
        s = json.load(f)
    for sec in ("message_types", "channels", "roles", "dirs"):
        unique(s[sec], "name", sec, lua=sec == "message_types")
        check(s[sec][0]["name"] in ("unknown", "none"), f"{sec}: the first entry must be the unset value")
    for t in s["message_types"]:
        check(t["class"] in CLASSES, f"message type {t['name']}: unknown class {t['class']}")
        check(not t.get("internal") or t["class"] == "event",
              f"message type {t['name']}: only events can be internal (desk-only)")
    unique(s["errors"], "code", "errors")
    for e in s["errors"]:
        check(isinstance(e.get("wire"), bool), f"error {e['code']}: wire must be true or false")
    unique(s["timers"], "kind", "timers")
    for t in s["timers"]:
        check(t["of"] in ("conv", "queue"), f"timer {t['kind']}: of must be conv or queue")
        check(t.get("owner") in ("sla", "close", "routing"),
              f"timer {t['kind']}: owner must be sla, close or routing (the router module and "
              f"Redis function that fire it)")
    unique(s["kpis"], "field", "kpis")
    for k in s["kpis"]:
        check(k["scope"] in ("queue", "agent", "both"), f"kpi {k['field']}: unknown scope")
    unique(s["templates"], "key", "templates")
    for t in s["templates"]:
        check(re.match(r"^[a-z_]+$", t["key"]), f"template {t['key']}: keys are [a-z_]+")
        used_vars = set(PART.findall(t["builtin"]))
        check(used_vars <= set(t["vars"]),
              f"template {t['key']}: its built-in text uses {sorted(used_vars - set(t['vars']))}, "
              f"which are not among its vars")
    unique(s["keys"], "name", "keys")
    parts = s["key_parts"]
    used = set()
    prefix = s["key_prefix"]
    check(isinstance(prefix, str) and TENANT_PREFIX.match(prefix),
          "key_prefix must be cg:{t:<tenant>}: (the tenant's hash tag; tenant 1-32 of a-z 0-9 _ -)")
    s["tenant"] = TENANT_PREFIX.match(prefix).group(1)
    for k in s["keys"]:
        check(not k["pattern"].startswith("cg:"),
              f"key {k['name']}: patterns leave out the key_prefix (cg:{{t:...}}:)")
        check(k["type"] in ("string", "hash", "set", "zset", "stream", "list", "pubsub", "anchor"),
              f"key {k['name']}: unknown type {k['type']}")
        check((k["type"] == "anchor") == (k["pattern"] == ""),
              f"key {k['name']}: only the anchor has an empty pattern")
        k["full"] = prefix[:-1] if k["type"] == "anchor" else prefix + k["pattern"]
        for p in PART.findall(k["pattern"]):
            check(p in parts, f"key {k['name']}: part {{{p}}} is not in key_parts")
            used.add(p)
    for p in parts:
        check(p in used, f"key_parts: {p} is used by no key")
    return s


def c_ident(s):
    return re.sub(r"[^A-Za-z0-9]", "_", s).upper()


def c_str(s):
    return json.dumps(s, ensure_ascii=False)


HEAD = "/* Generated by tools/gen_schema.py from schema/chatgw.json: do not edit. */\n"


def gen_proto(s):
    h = [HEAD, "#ifndef CG_PROTO_SCHEMA_H\n#define CG_PROTO_SCHEMA_H\n\n"]
    h.append(f"#define MSG_VERSION {s['protocol_version']}\n\n")
    enums = (("message_types", "msg_type", "MSG_", "MSG_TYPE_COUNT"),
             ("channels", "msg_channel", "CH_", "CH_COUNT"),
             ("roles", "msg_role", "ROLE_", "ROLE_COUNT"),
             ("dirs", "msg_dir", "DIR_", "DIR_COUNT"))
    c = [HEAD, '#include "proto_schema.h"\n\n']
    for sec, typ, prefix, count in enums:
        h.append(f"typedef enum {typ} {{\n")
        for i, it in enumerate(s[sec]):
            h.append(f"    {prefix}{c_ident(it['name'])} = {i}, /* {it['desc']} */\n")
        h.append(f"    {count}\n}} {typ};\n\n")
        h.append(f"extern const char *const cg_{typ}_names[{count}];\n\n")
        c.append(f"const char *const cg_{typ}_names[{count}] = {{\n")
        for it in s[sec]:
            c.append(f"    {c_str(it['name'])},\n")
        c.append("};\n\n")
    h.append("/* Message type flags: kept in the conversation log / details for the desk only. */\n")
    h.append("#define CG_MT_LOGGED 1u\n#define CG_MT_INTERNAL 2u\n")
    h.append("extern const unsigned char cg_msg_type_flags[MSG_TYPE_COUNT];\n\n")
    c.append("const unsigned char cg_msg_type_flags[MSG_TYPE_COUNT] = {\n")
    for t in s["message_types"]:
        f = []
        if t["class"] in LOGGED_CLASSES:
            f.append("CG_MT_LOGGED")
        if t.get("internal"):
            f.append("CG_MT_INTERNAL")
        c.append(f"    {' | '.join(f) or '0'}, /* {t['name']} */\n")
    c.append("};\n\n")
    h.append("/* Error codes (cg_err.code; `error` frames carry the wire ones). */\n")
    for e in s["errors"]:
        h.append(f"#define CG_E_{c_ident(e['code'])} {c_str(e['code'])} /* {e['desc']} */\n")
    h.append(f"#define CG_ERROR_COUNT {len(s['errors'])}\n")
    h.append("typedef struct cg_error_def {\n    const char *code;\n    int wire, retry;\n"
             "    const char *desc;\n} cg_error_def;\n")
    h.append("extern const cg_error_def cg_errors[CG_ERROR_COUNT];\n\n#endif\n")
    c.append("const cg_error_def cg_errors[CG_ERROR_COUNT] = {\n")
    for e in s["errors"]:
        c.append(f"    {{{c_str(e['code'])}, {int(e['wire'])}, {int(e.get('retry', False))}, "
                 f"{c_str(e['desc'])}}},\n")
    c.append("};\n")
    return "".join(h), "".join(c)


def gen_desk(s):
    h = [HEAD, "#ifndef CG_DESK_SCHEMA_H\n#define CG_DESK_SCHEMA_H\n\n"]
    c = [HEAD, '#include "desk_schema.h"\n\n#include <string.h>\n\n']
    h.append("/* Timer kinds: members of the timers key are \"<kind>:<conv or queue>\". */\n")
    h.append("typedef enum cg_timer_kind {\n")
    for t in s["timers"]:
        h.append(f"    CG_TIMER_{c_ident(t['kind'])}, /* of a {t['of']}: {t['desc']} */\n")
    h.append("    CG_TIMER_COUNT\n} cg_timer_kind;\n")
    h.append("typedef struct cg_timer_def {\n    const char *kind;  /* the member's prefix */\n"
             "    int of_queue;      /* 1: <queue>, 0: <conv> */\n    int sla;\n"
             "    const char *owner; /* sla, close or routing: who fires it */\n"
             "} cg_timer_def;\nextern const cg_timer_def cg_timers[CG_TIMER_COUNT];\n"
             "/* The kind of a timers member \"<kind>:<id>\", or -1. */\n"
             "int cg_timer_find(const char *member);\n\n")
    c.append("const cg_timer_def cg_timers[CG_TIMER_COUNT] = {\n")
    for t in s["timers"]:
        c.append(f"    {{{c_str(t['kind'])}, {int(t['of'] == 'queue')}, {int(t.get('sla', False))}, "
                 f"{c_str(t['owner'])}}},\n")
    c.append("};\n\n")
    c.append("int cg_timer_find(const char *member) {\n"
             "    for (int i = 0; i < CG_TIMER_COUNT; i++) {\n"
             "        const char *k = cg_timers[i].kind;\n"
             "        size_t n = strlen(k);\n"
             "        if (strncmp(member, k, n) == 0 && member[n] == ':') return i;\n"
             "    }\n    return -1;\n}\n\n")
    h.append("/* KPI fields of the cg:kpi:queue:<queue> / cg:kpi:agent:<agent> hashes. */\n")
    h.append("typedef enum cg_kpi {\n")
    for k in s["kpis"]:
        h.append(f"    CG_KPI_{c_ident(k['field'])}, /* {k['desc']} */\n")
    h.append("    CG_KPI_COUNT\n} cg_kpi;\n")
    h.append("typedef struct cg_kpi_def {\n    const char *field;\n    int queue_only;\n"
             "    const char *desc;\n} cg_kpi_def;\nextern const cg_kpi_def cg_kpis[CG_KPI_COUNT];\n\n")
    c.append("const cg_kpi_def cg_kpis[CG_KPI_COUNT] = {\n")
    for k in s["kpis"]:
        c.append(f"    {{{c_str(k['field'])}, {int(k['scope'] == 'queue')}, {c_str(k['desc'])}}},\n")
    c.append("};\n\n")
    h.append("/* The customer texts of [templates <locale>] (router/tmpl.c). */\n")
    h.append("typedef enum tmpl_key {\n")
    for t in s["templates"]:
        v = " ".join("{%s}" % x for x in t["vars"])
        h.append(f"    TMPL_{c_ident(t['key'])}, /* {t['desc']}{': ' + v if v else ''} */\n")
    h.append("    TMPL_N\n} tmpl_key;\n")
    h.append("typedef struct cg_tmpl_def {\n    const char *key;\n"
             "    const char *vars;    /* its variables, space-separated, without braces */\n"
             "    const char *builtin; /* the English text when no template gives one */\n"
             "} cg_tmpl_def;\nextern const cg_tmpl_def cg_tmpls[TMPL_N];\n\n")
    c.append("const cg_tmpl_def cg_tmpls[TMPL_N] = {\n")
    for t in s["templates"]:
        c.append(f"    {{{c_str(t['key'])}, {c_str(' '.join(t['vars']))}, {c_str(t['builtin'])}}},\n")
    c.append("};\n\n")
    h.append("/* The tenant of key_prefix: the one whose keys this build uses, so the one a gateway\n"
             " * serves (a client hello naming another is refused: unknown_tenant). */\n")
    h.append(f"#define CG_TENANT {c_str(s['tenant'])}\n\n")
    h.append("/* Redis keys: printf formats (one %s per part, in the pattern's order). */\n")
    for k in s["keys"]:
        fmt = PART.sub("%s", k["full"])
        h.append(f"#define CG_KEY_{c_ident(k['name'])} {c_str(fmt)} /* {k['type']}: {k['desc']} */\n")
        if PART.search(k["full"]):  # the fixed text before the first part (SCAN MATCH, parsing)
            h.append(f"#define CG_KEY_{c_ident(k['name'])}_PREFIX "
                     f"{c_str(k['full'][:PART.search(k['full']).start()])}\n")
    extra = max(len(PART.sub("", k["full"])) for k in s["keys"]) + 1
    h.append(f"/* Room a key needs besides its parts (the longest fixed text, with its NUL). */\n"
             f"#define CG_KEY_EXTRA {extra}\n")
    h.append("\n#endif\n")
    return "".join(h), "".join(c)


def lua_str(v):
    return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"


def gen_lua(s):
    out = ["-- Generated by tools/gen_schema.py from schema/chatgw.json: do not edit.\n",
           "-- CG: the lists chatgw's parts share. A CG.<list>.<name> the schema does not declare\n",
           "-- fails the build (gen_schema.py --lua-lib checks every use).\n"]
    out.append("local CG = {}\n")

    def names(var, items, field, what):
        body = ", ".join(f"{it[field]} = {lua_str(it[field])}" for it in items)
        out.append(f"CG.{var} = {{{body}}}\n")
    names("MT", s["message_types"], "name", "message type")
    names("TIMER", s["timers"], "kind", "timer kind")
    names("KPI", s["kpis"], "field", "kpi field")
    names("ERR", s["errors"], "code", "error code")
    logged = ", ".join(f"{t['name']} = true" for t in s["message_types"]
                       if t["class"] in LOGGED_CLASSES)
    internal = ", ".join(f"{t['name']} = true" for t in s["message_types"] if t.get("internal"))
    out.append(f"CG.LOGGED = {{{logged}}}\nCG.INTERNAL = {{{internal}}}\n")
    out.append("CG.KEY = {}\n")
    for k in s["keys"]:
        parts = PART.findall(k["full"])
        pieces = re.split(r"\{[a-z_]+\}", k["full"])
        expr = []
        for i, piece in enumerate(pieces):
            if piece:
                expr.append(lua_str(piece))
            if i < len(parts):
                expr.append(parts[i])
        args = ", ".join(parts)
        out.append(f"function CG.KEY.{k['name']}({args}) return {' .. '.join(expr)} end\n")
    return "".join(out)


def plain(s):
    return {
        "protocol_version": s["protocol_version"],
        "message_types": {t["name"]: {"class": t["class"], "logged": t["class"] in LOGGED_CLASSES,
                                      "internal": bool(t.get("internal"))}
                          for t in s["message_types"]},
        "channels": [c["name"] for c in s["channels"][1:]],
        "roles": [r["name"] for r in s["roles"][1:]],
        "errors": {e["code"]: {"wire": e["wire"], "retry": bool(e.get("retry"))}
                   for e in s["errors"]},
        "timers": {t["kind"]: t["of"] for t in s["timers"]},
        "kpis": {k["field"]: k["scope"] for k in s["kpis"]},
        "templates": {t["key"]: t["vars"] for t in s["templates"]},
        "key_prefix": s["key_prefix"],
        "tenant": s["tenant"],
        "keys": {k["name"]: k["full"] for k in s["keys"]},
    }


def gen_py(s):
    return ('"""Generated by tools/gen_schema.py from schema/chatgw.json: do not edit."""\n'
            f"SCHEMA = {pprint.pformat(plain(s), width=100, sort_dicts=False)}\n"
            "MESSAGE_TYPES = SCHEMA['message_types']\nERRORS = SCHEMA['errors']\n"
            "TIMERS = SCHEMA['timers']\nKPIS = SCHEMA['kpis']\nTEMPLATES = SCHEMA['templates']\n"
            "KEYS = SCHEMA['keys']\n\n\n"
            "def key(name, *parts):\n"
            "    \"\"\"The Redis key `name` with its {parts} filled in, in order.\"\"\"\n"
            "    pattern, parts = KEYS[name], list(parts)\n"
            "    out = __import__('re').sub(r'\\{[a-z_]+\\}', lambda m: str(parts.pop(0)), pattern)\n"
            "    assert not parts, f'key {name}: too many parts'\n"
            "    return out\n")


def gen_js(s):
    return ("/* Generated by tools/gen_schema.py from schema/chatgw.json: do not edit. */\n"
            f"window.ChatgwSchema = Object.freeze({json.dumps(plain(s), ensure_ascii=False)});\n")


def write(path, text):
    """Write only when the content changes (keeps make from rebuilding what did not change)."""
    try:
        with open(path, encoding="utf-8") as f:
            if f.read() == text:
                return
    except FileNotFoundError:
        pass
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


LUA_USE = re.compile(r"\bCG\.([A-Z]+)\.([A-Za-z_][A-Za-z0-9_]*)")


def lua_declared(prelude):
    """{list: {names}} as the prelude declares them (CG.X = {a = ..., b = ...}, CG.KEY.f)."""
    out = {}
    for lst, body in re.findall(r"^CG\.([A-Z]+) = \{(.*)\}$", prelude, re.M):
        out[lst] = set(re.findall(r"([a-z_][a-z0-9_]*) = ", body))
    out["KEY"] = set(re.findall(r"^function CG\.KEY\.([a-z_0-9]+)\(", prelude, re.M))
    return out


LUA_LONG_COMMENT = re.compile(r"--\[(=*)\[.*?\]\1\]", re.S)
LUA_STRING = re.compile(r"'(?:\\.|[^'\\\n])*'|\"(?:\\.|[^\"\\\n])*\"")
LUA_TOP_LOCAL = re.compile(r"^local (?:function )?([A-Za-z_][A-Za-z0-9_]*(?:, *[A-Za-z_][A-Za-z0-9_]*)*)",
                           re.M)


def lua_code_only(text):
    """text with its comments and strings blanked (newlines kept, so line numbers stay)."""
    blank = lambda m: re.sub(r"[^\n]", " ", m.group(0))
    text = LUA_LONG_COMMENT.sub(blank, text)
    out = []
    for line in text.split("\n"):
        line = LUA_STRING.sub(blank, line)
        i = line.find("--")
        out.append(line if i < 0 else line[:i])
    return "\n".join(out)


def lua_order_check(sources):
    """sources: [(path, text)] in library order. A top-level local used above its definition is a
    nil global when the function runs (Redis refuses it only then): fail the build instead."""
    lines = []
    for path, text in sources:
        for n, line in enumerate(lua_code_only(text).split("\n"), 1):
            lines.append((path, n, line))
    defined = {}
    for i, (_, _, line) in enumerate(lines):
        m = LUA_TOP_LOCAL.match(line)
        if m:
            for v in re.split(r", *", m.group(1)):
                defined.setdefault(v, i)
    word = re.compile(r"(?<![.:\w])([A-Za-z_][A-Za-z0-9_]*)\b(?!\s*=[^=])")
    for i, (path, n, line) in enumerate(lines):
        for v in word.findall(line):
            if v in defined and defined[v] > i:
                dp, dn, _ = lines[defined[v]]
                raise SchemaError(f"{os.path.relpath(path, ROOT)}:{n}: '{v}' is used before its "
                                  f"definition ({os.path.relpath(dp, ROOT)}:{dn}): put that part "
                                  f"first")


def lua_lib(name, out, prelude, parts):
    pre = open(prelude, encoding="utf-8").read()
    declared = lua_declared(pre)
    text = [f"#!lua name={name}\n", pre]
    sources = []
    for p in parts:
        body = open(p, encoding="utf-8").read()
        sources.append((p, body))
        for n, line in enumerate(body.splitlines(), 1):
            for lst, item in LUA_USE.findall(line):
                if item not in declared.get(lst, ()):
                    raise SchemaError(f"{os.path.relpath(p, ROOT)}:{n}: CG.{lst}.{item} is not "
                                      f"in schema/chatgw.json")
        if body.startswith("#!"):
            body = body.split("\n", 1)[1] if "\n" in body else ""
        text.append(f"-- ---- {os.path.relpath(p, ROOT)} ----\n{body}")
    lua_order_check(sources)
    write(out, "".join(text))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--schema", default=os.path.join(ROOT, "schema", "chatgw.json"))
    ap.add_argument("--lua-lib", nargs="+", metavar="ARG")
    ap.add_argument("outdir", nargs="?")
    a = ap.parse_args()
    if a.lua_lib:
        if len(a.lua_lib) < 4:
            ap.error("--lua-lib NAME OUT.lua PRELUDE.lua PART.lua...")
        try:
            lua_lib(a.lua_lib[0], a.lua_lib[1], a.lua_lib[2], a.lua_lib[3:])
        except SchemaError as e:
            print(e, file=sys.stderr)
            return 1
        return 0
    if not a.outdir:
        ap.error("OUTDIR is required")
    try:
        s = load(a.schema)
    except (SchemaError, KeyError, TypeError, ValueError) as e:
        print(f"{os.path.relpath(a.schema)}: {e}", file=sys.stderr)
        return 1
    os.makedirs(a.outdir, exist_ok=True)
    ph, pc = gen_proto(s)
    dh, dc = gen_desk(s)
    for name, text in (("proto_schema.h", ph), ("proto_schema.c", pc), ("desk_schema.h", dh),
                       ("desk_schema.c", dc), ("schema.lua", gen_lua(s)),
                       ("chatgw_schema.py", gen_py(s)), ("schema.js", gen_js(s))):
        write(os.path.join(a.outdir, name), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
