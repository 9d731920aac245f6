/* widget.js -- the one tag a shop puts on its pages to get the chatgw chat:
 *
 *   <script src="https://desk.example/widget.js" async data-tenant="default"
 *           data-locale="en" data-position="left" data-color="#0a7d5a" data-title="Help"
 *           data-prechat="true" data-sound="off" data-customer-token="<JWT>"></script>
 *
 * Every data-* attribute is optional: data-tenant (the desk's tenant the chat is for: the
 * gateway refuses another one than it serves, and the widget then says so), data-locale (default: the browser's language; the widget
 * speaks zh-CN and en), data-position (right | left), data-color (#rgb or #rrggbb), data-title,
 * data-prechat (ask name and e-mail before the first message), data-sound (off: no chime),
 * data-customer-token (a customer token the shop's server signed with a desk key: who the
 * customer is, docs/configuration.md). The gateway is where this script came from.
 *
 * The script adds one element to the page: a host whose closed shadow root holds an iframe of
 * <gateway>/widget-frame.html, where the chat lives (widget-app.js). The shop's styles, ids and
 * scripts cannot reach into it, and the customer's session token stays in the gateway origin's
 * storage. Page and frame talk by postMessage only, each checking the other's window and origin:
 * the frame tells the size it needs and its name ({chatgw: 1, type: 'layout', open, width, height,
 * title}); the page
 * may ask it to open or close (window.ChatGWWidget.open(), .close()). Nothing else crosses. */
(function () {
    'use strict';
    if (window.ChatGWWidget) return; /* the tag twice on a page: one widget */
    var script = document.currentScript || document.querySelector('script[src$="/widget.js"]');
    if (!script || !script.src) return;
    var frameUrl = new URL('widget-frame.html', script.src);
    var gateway = frameUrl.origin;
    var d = script.dataset;

    var params = new URLSearchParams();
    params.set('origin', location.origin);
    params.set('locale', d.locale || navigator.language || '');
    if (d.tenant) params.set('tenant', d.tenant);
    if (d.position) params.set('position', d.position);
    if (d.color) params.set('color', d.color);
    if (d.title) params.set('title', d.title);
    if (d.prechat === 'true' || d.prechat === '1') params.set('prechat', '1');
    if (d.sound === 'off') params.set('sound', 'off');
    if (d.customerToken) params.set('customer_token', d.customerToken);
    frameUrl.hash = params.toString();
    var left = d.position === 'left';
    var state = { open: false, width: 0, height: 0 };

    /* CSSOM, not style attributes: allowed by the strictest page policy; !important against
     * the page's own rules for the host element. */
    function css(node, props) {
        Object.keys(props).forEach(function (k) { node.style.setProperty(k, props[k], 'important'); });
    }

    var host = document.createElement('div');
    host.setAttribute('data-chatgw', '');
    css(host, { all: 'initial', position: 'fixed', bottom: '0', width: '0', height: '0', 'z-index': '2147483000' });
    css(host, left ? { left: '0' } : { right: '0' });
    var root = host.attachShadow({ mode: 'closed' });
    var frame = document.createElement('iframe');
    frame.title = 'Chat';
    frame.setAttribute('allow', 'autoplay');
    frame.setAttribute('referrerpolicy', 'no-referrer');
    css(frame, { position: 'fixed', bottom: '0', border: '0', margin: '0', padding: '0', background: 'transparent',
        'color-scheme': 'normal', width: '0', height: '0', visibility: 'hidden', 'max-width': '100vw', 'max-height': '100vh' });
    css(frame, left ? { left: '0' } : { right: '0' });
    frame.src = frameUrl.href;
    root.appendChild(frame);

    /* The iframe's size: the launcher's while closed, the panel's while open (the whole
     * viewport on a phone). Hidden until the frame has said how big it is. */
    function resize() {
        var w = state.width, h = state.height;
        if (state.open) {
            var phone = window.innerWidth <= 480;
            w = phone ? window.innerWidth : Math.min(440, window.innerWidth);
            h = phone ? window.innerHeight : Math.min(700, window.innerHeight);
        }
        css(frame, { width: w + 'px', height: h + 'px', visibility: 'visible' });
    }

    window.addEventListener('message', function (ev) {
        if (ev.source !== frame.contentWindow || ev.origin !== gateway) return;
        var m = ev.data;
        if (!m || typeof m !== 'object' || m.chatgw !== 1 || m.type !== 'layout') return;
        state.open = !!m.open;
        state.width = Math.max(0, Math.min(400, Number(m.width) || 0));
        state.height = Math.max(0, Math.min(200, Number(m.height) || 0));
        if (typeof m.title === 'string') frame.title = m.title.slice(0, 80);
        resize();
    });
    window.addEventListener('resize', function () { if (state.open) resize(); });

    function tell(type) {
        if (frame.contentWindow) frame.contentWindow.postMessage({ chatgw: 1, type: type }, gateway);
    }
    window.ChatGWWidget = { open: function () { tell('open'); }, close: function () { tell('close'); } };

    function mount() { document.body.appendChild(host); }
    if (document.body) mount(); else document.addEventListener('DOMContentLoaded', mount);
})();
