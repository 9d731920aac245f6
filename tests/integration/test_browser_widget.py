"""The one-tag widget in a real browser (tests/browser/widget_embed.mjs): a shop page on another
origin than the gateway (localhost vs 127.0.0.1, each served by a small HTTP server here) embeds
<script src="<gateway>/widget.js" async>; the widget works there in zh-CN and in en, a page of an
origin outside allowed_origins cannot frame it, and each run takes a README screenshot
(build/browser-widget-shop.png and build/browser-widget-shop-zh.png; with UPDATE_SCREENSHOTS=1
docs/widget-shop.png and docs/widget-shop-zh.png, which are committed: the zh-CN one needs a font
with Chinese glyphs, fonts-wqy-microhei from make deps, to show text rather than boxes)."""
import functools
import http.server
import os
import threading
import time

import jwt
import pytest

from conftest import JWT_SECRET, ROOT, free_port
from test_browser import (BROWSER_DIR, playwright_installed,  # noqa: F401 (fixture)
                          run_restart_scenario, run_scenario)

SCRIPT = os.path.join(BROWSER_DIR, "widget_embed.mjs")
TENANT_SCRIPT = os.path.join(BROWSER_DIR, "widget_tenant.mjs")
WELCOME_SCRIPT = os.path.join(BROWSER_DIR, "widget_welcome.mjs")


def screenshot(locale):
    """Where the run in locale writes its screenshot of the widget on the shop page."""
    name = "widget-shop" + ("-zh" if locale == "zh-CN" else "") + ".png"
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        return os.path.join(ROOT, "docs", name)
    return os.path.join(ROOT, "build", "browser-" + name)


CONFIG = """
[router]
default_queue = general
sla_first_response_s = chat:0, email:0
sla_next_response_s = chat:0, email:0
idle_close_s = 0
survey_window_s = 600
offer_timeout_s = 0
sticky_window_s = 0

[queue general]
mode = push
"""

# A shop of its own: its own element with the id the widget used to add, and rules that would
# wreck a widget living in the page (every div and iframe hidden, every button red).
SHOP_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Acme shop</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>div, iframe {{ display: none; }} button {{ background: red !important; font-size: 40px; }}
#chat-log {{ outline: 5px solid red; }} body {{ font-family: serif; background: #fdfaf3; }}
main {{ padding: 40px; }} h1 {{ font-size: 34px; }} .item {{ display: block; margin: 12px 0; }}</style></head>
<body><main><h1 id="shop-title">Acme Outdoor — {title}</h1>
<p>Tents, stoves and boots since 1987. Questions? Use the chat in the corner.</p>
<button id="chat-launcher" type="button">the shop's own button</button>
<section id="chat-log"><span class="item">Trail tent 2P — $249</span><span class="item">Camp stove — $59</span></section>
</main>
{tag}
</body></html>
"""


def tag(gateway, **data):
    attrs = "".join(f' data-{k}="{v}"' for k, v in data.items())
    return f'<script src="{gateway}/widget.js" async{attrs}></script>'


def serve(directory):
    """A static HTTP server for directory on 127.0.0.1 (reached as localhost): (port, server)."""
    port = free_port()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    handler.log_message = lambda *a: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return port, srv


def customer_token(sub, name):
    """What a shop's server signs with the desk's key: the customer's identity."""
    now = int(time.time())
    return jwt.encode({"role": "customer", "sub": sub, "name": name, "iat": now, "exp": now + 3600},
                      JWT_SECRET, algorithm="HS256")


@pytest.mark.parametrize("locale", ["zh-CN", "en"])
def test_one_tag_widget_on_a_shop_of_another_origin(playwright_installed, procs, tmp_path, locale):
    shop_dir, blocked_dir = tmp_path / "shop", tmp_path / "blocked"
    shop_dir.mkdir()
    blocked_dir.mkdir()
    shop_port, shop_srv = serve(shop_dir)
    blocked_port, blocked_srv = serve(blocked_dir)
    shop = f"http://localhost:{shop_port}"
    config = tmp_path / "widget.ini"
    config.write_text(CONFIG, encoding="utf-8")
    gw = procs.gateway({"CHATGW_ALLOWED_ORIGINS": shop})
    router = procs.router({"CHATGW_CONFIG": str(config), "CHATGW_BLOCK_MS": 200})
    # one slot: a second customer waits behind the first (the queue position)
    agent = procs.agent_token("alice", "Alice", skills=("general",), cap=1)
    # zh-CN: an English browser told by the tag; en: the browser's own language (en-GB)
    lang = {"locale": "zh-CN"} if locale == "zh-CN" else {}
    name = "王小姐" if locale == "zh-CN" else "Jane Doe"
    (shop_dir / "shop.html").write_text(SHOP_PAGE.format(title="shop", tag=tag(
        gw.base, prechat="true", color="#0a7d5a", title="Acme help",
        **{"customer-token": customer_token("shop-cust-42", name)}, **lang)), encoding="utf-8")
    (shop_dir / "nobody.html").write_text(SHOP_PAGE.format(title="late", tag=tag(gw.base, **lang)),
                                          encoding="utf-8")
    (blocked_dir / "blocked.html").write_text(SHOP_PAGE.format(title="blocked", tag=tag(gw.base)),
                                              encoding="utf-8")
    args = [f"{shop}/shop.html", f"http://localhost:{blocked_port}/blocked.html",
            f"{shop}/nobody.html", agent, locale, screenshot(locale)]
    try:
        run_scenario(SCRIPT, args, gw, router)
    finally:
        shop_srv.shutdown()
        blocked_srv.shutdown()


def shop_desk(procs, tmp_path):
    """A shop origin served from tmp_path/shop (allowed by the gateway), a gateway, a router with
    the widget tests' configuration and alice's token (cap 2): (shop_dir, shop URL, its server,
    gateway, router, agent token)."""
    shop_dir = tmp_path / "shop"
    shop_dir.mkdir()
    shop_port, shop_srv = serve(shop_dir)
    shop = f"http://localhost:{shop_port}"
    config = tmp_path / "widget.ini"
    config.write_text(CONFIG, encoding="utf-8")
    gw = procs.gateway({"CHATGW_ALLOWED_ORIGINS": shop})
    router = procs.router({"CHATGW_CONFIG": str(config), "CHATGW_BLOCK_MS": 200})
    agent = procs.agent_token("alice", "Alice", skills=("general",), cap=2)
    return shop_dir, shop, shop_srv, gw, router, agent


@pytest.mark.parametrize("locale", ["zh-CN", "en"])
def test_widget_data_tenant_served_or_refused(playwright_installed, procs, tmp_path, locale):
    """widget_tenant.mjs: a tag with data-tenant="default" (the tenant the gateway serves) chats
    as one without it; data-tenant="acme" (another tenant) and "Acme Shop" (malformed) are
    refused by the gateway, and the widget says so in its language and stops."""
    shop_dir, shop, shop_srv, gw, router, agent = shop_desk(procs, tmp_path)
    lang = {"locale": "zh-CN"} if locale == "zh-CN" else {}
    pages = {"served": "default", "other": "acme", "malformed": "Acme Shop"}
    for name, tenant in pages.items():
        (shop_dir / f"{name}.html").write_text(SHOP_PAGE.format(title=name, tag=tag(
            gw.base, tenant=tenant, **lang)), encoding="utf-8")
    try:
        run_scenario(TENANT_SCRIPT, [f"{shop}/{name}.html" for name in pages] + [agent, locale],
                     gw, router)
    finally:
        shop_srv.shutdown()


def test_widget_reconnects_and_resumes_in_chinese(playwright_installed, procs):
    """restart.mjs with a Chinese browser: the widget speaks zh-CN, says it is offline and
    reconnecting in it, re-sends what was typed meanwhile and resumes without a gap (the en run
    is test_browser.py's)."""
    gw = procs.gateway()
    router = procs.router()
    token = procs.agent_token("alice", "Alice", skills=("general",), cap=2)
    run_restart_scenario(procs, gw, router, token, {"CUSTOMER_LOCALE": "zh-CN"})


def test_widget_keeps_end_chat_until_it_is_welcomed(playwright_installed, procs, tmp_path):
    """widget_welcome.mjs: End chat pressed after a reconnect, while the hello is not answered
    yet (held back by the test's WebSocket route), is sent once the widget is welcomed: the
    conversation ends and no hello_required comes back."""
    shop_dir, shop, shop_srv, gw, router, agent = shop_desk(procs, tmp_path)
    (shop_dir / "shop.html").write_text(SHOP_PAGE.format(title="shop", tag=tag(gw.base)),
                                        encoding="utf-8")
    try:
        run_scenario(WELCOME_SCRIPT, [f"{shop}/shop.html", agent], gw, router)
    finally:
        shop_srv.shutdown()
