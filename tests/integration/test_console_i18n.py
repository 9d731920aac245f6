"""The agent console's own texts exist in both languages (gateway/www/agent_i18n.js): the same
keys in zh-CN and en, none empty, and every key the console uses (data-i18n* attributes in
agent.html, t('…') calls in agent.js) is defined. Runs the file in node with a stand-in window."""
import json
import os
import re
import shutil
import subprocess

import pytest

from conftest import ROOT

WWW = os.path.join(ROOT, "gateway", "www")
NODE = shutil.which("node")

def tables():
    """{locale: {key: text}} parsed from the T object of agent_i18n.js by node."""
    script = r"""
const vm = require('vm'), fs = require('fs');
let src = fs.readFileSync(process.argv[1], 'utf8');
// expose the private table T for the test
src = src.replace("global.AgentI18n = {", "global.__T = T; global.AgentI18n = {");
const window = { navigator: { languages: ['en-US'] } };
vm.runInNewContext(src, { window, document: {} });
console.log(JSON.stringify({ T: window.__T, locales: window.AgentI18n.LOCALES,
    pick: ['zh-TW', 'en-GB', 'fr-FR'].map((l) => { const w = { navigator: { languages: [l] } };
        vm.runInNewContext(src, { window: w, document: {} }); return w.AgentI18n.locale(); }) }));
"""
    r = subprocess.run([NODE, "-e", script, os.path.join(WWW, "agent_i18n.js")], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.skipif(not NODE, reason="node is not installed")
def test_console_texts_exist_in_both_languages():
    d = tables()
    assert d["locales"] == ["zh-CN", "en"]
    # the browser's language picks the console's: Chinese and unknown ones zh-CN, English en
    assert d["pick"] == ["zh-CN", "en", "zh-CN"]
    zh, en = d["T"]["zh-CN"], d["T"]["en"]
    assert sorted(set(en) - set(zh)) == [] and sorted(set(zh) - set(en)) == []
    for loc, table in d["T"].items():
        assert [k for k, v in table.items() if not v.strip()] == [], loc
    # the Chinese texts are Chinese: a key whose zh text equals the en one must be language-neutral
    same = sorted(k for k in en if zh[k] == en[k])
    assert same == ["agent_option", "panel_stars", "why_http"], same

    used = set()
    html = open(os.path.join(WWW, "agent.html"), encoding="utf-8").read()
    used |= set(re.findall(r'data-i18n(?:-placeholder|-title|-aria)?="([a-z0-9_]+)"', html))
    js = open(os.path.join(WWW, "agent.js"), encoding="utf-8").read()
    used |= set(re.findall(r"\bt\('([a-z0-9_]*[a-z0-9])'", js))  # direct calls (keys chosen by a
    # condition are exercised by the browser tests in both languages)
    missing = sorted(k for k in used if k not in en)
    assert missing == [], f"keys used by the console without a text: {missing}"
    assert len(used) > 100
