/* widget.js -- the chatgw customer chat widget. Needs chatcore.js (window.ChatGW) loaded first.
 *
 * Embed on any page served by the gateway:
 *   <link rel="stylesheet" href="/widget.css">
 *   <script src="/chatcore.js"></script><script src="/widget.js" defer></script>
 * Optional, before the scripts: window.ChatGWConfig = {name: "Jane", identity: {order_no: "…"}}.
 *
 * localStorage (shared by every tab of the shop):
 *   chatgw_token     the session token from `welcome` (who this customer is)
 *   chatgw_conv      the current conversation id
 *   chatgw_last_seq  the highest sequence number received in it without a gap (what we ack)
 *   chatgw_log       transcript cache {v, convs: [{conv, last_seq, msgs}]} (latest 3 conversations)
 *   chatgw_pending   messages sent but not acknowledged yet: re-sent with the same cmid
 *   chatgw_open      "1" while the chat panel is open */
(function () {
    'use strict';
    var C = window.ChatGW;
    var el = C.el;
    var cfg = window.ChatGWConfig || {};
    var store = C.storage('localStorage');
    var K = { token: 'chatgw_token', conv: 'chatgw_conv', last: 'chatgw_last_seq', log: 'chatgw_log',
        pending: 'chatgw_pending', open: 'chatgw_open' };
    var MAX_TEXT = 32768, CACHE_CONVS = 3, CACHE_MSGS = 300;

    var view = { as: 'customer', me: '', onRate: rate };
    var convs = [];            /* [{conv, log: ConvLog, section}] oldest first */
    var byConv = new Map();
    var current = null;        /* the latest conversation */
    var pending = new Map();   /* cmid -> {cmid, text, cts, node, timer} */
    var welcomed = false, started = false, helloTimer = null, typingTimer = null;
    var sentToken = false, lastTypingSent = 0, unread = 0, saveTimer = null, errTimer = null;

    /* ------------------------------------------------------------------ DOM */
    var ui = {};
    function build() {
        ui.launcher = el('button', { id: 'chat-launcher', type: 'button', className: 'chat-launcher',
            'aria-label': 'Chat with us', 'aria-expanded': 'false', 'data-testid': 'chat-launcher' },
        launcherIcon(),
        el('span', { className: 'chat-launcher-label', text: 'Chat with us' }),
        ui.unread = el('span', { id: 'chat-unread', className: 'chat-unread', hidden: true }));
        ui.status = el('span', { id: 'chat-status', className: 'chat-status', 'data-testid': 'chat-status',
            dataset: { state: 'offline' }, text: 'Offline' });
        ui.queue = el('div', { id: 'chat-queue', className: 'chat-queue', hidden: true, 'data-testid': 'chat-queue',
            role: 'status' });
        ui.log = el('div', { id: 'chat-log', className: 'chat-log', role: 'log', 'aria-live': 'polite',
            'data-testid': 'chat-log', tabindex: '0' },
        ui.empty = el('div', { className: 'chat-empty', dataset: { pin: 'top' } },
            el('strong', { text: 'Hi there 👋' }),
            el('span', { text: 'Ask us anything about your order, shipping or returns.' })),
        ui.pending = el('div', { id: 'chat-pending', className: 'chat-pending' }));
        ui.typing = el('div', { id: 'chat-typing', className: 'chat-typing', hidden: true,
            'data-testid': 'chat-typing', 'aria-live': 'polite' });
        ui.error = el('div', { id: 'chat-error', className: 'chat-error', hidden: true, role: 'alert',
            'data-testid': 'chat-error' });
        ui.input = el('textarea', { id: 'chat-input', className: 'chat-input', rows: '1',
            placeholder: 'Type your message…', 'aria-label': 'Message', maxlength: String(MAX_TEXT),
            'data-testid': 'chat-input' });
        ui.send = el('button', { id: 'chat-send', type: 'submit', className: 'chat-send',
            'data-testid': 'chat-send', text: 'Send' });
        ui.form = el('form', { id: 'chat-form', className: 'chat-form', autocomplete: 'off' }, ui.input, ui.send);
        ui.panel = el('section', { id: 'chat-panel', className: 'chat-panel', hidden: true,
            'aria-label': 'Customer support chat', 'data-testid': 'chat-panel' },
        el('header', { className: 'chat-header' },
            el('div', { className: 'chat-title' },
                el('strong', { text: cfg.title || 'Support' }), ui.status),
            el('div', { className: 'chat-actions' },
                ui.end = el('button', { id: 'chat-end', type: 'button', className: 'chat-end', hidden: true,
                    'data-testid': 'chat-end', text: 'End chat' }),
                ui.minimize = el('button', { id: 'chat-minimize', type: 'button', className: 'chat-minimize',
                    'aria-label': 'Minimize chat', text: '–' }))),
        ui.queue, ui.log, ui.typing, ui.error, ui.form);
        var root = document.getElementById('chatgw-widget') || document.body.appendChild(el('div', { id: 'chatgw-widget' }));
        root.appendChild(ui.panel);
        root.appendChild(ui.launcher);

        ui.launcher.addEventListener('click', function () { setOpen(ui.panel.hidden); });
        ui.minimize.addEventListener('click', function () { setOpen(false); });
        ui.end.addEventListener('click', endChat);
        ui.form.addEventListener('submit', function (e) { e.preventDefault(); submit(); });
        ui.input.addEventListener('keydown', function (e) {
            if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); submit(); }
        });
        ui.input.addEventListener('input', function () { autoGrow(); typing(); });
    }

    function launcherIcon() {
        var ns = 'http://www.w3.org/2000/svg';
        var svg = document.createElementNS(ns, 'svg');
        svg.setAttribute('viewBox', '0 0 24 24');
        svg.setAttribute('width', '20');
        svg.setAttribute('height', '20');
        svg.setAttribute('aria-hidden', 'true');
        svg.setAttribute('class', 'chat-launcher-icon');
        var path = document.createElementNS(ns, 'path');
        path.setAttribute('d', 'M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z');
        path.setAttribute('fill', 'currentColor');
        svg.appendChild(path);
        return svg;
    }

    function autoGrow() {
        if (!ui.input.value) { ui.input.style.height = ''; return; }
        ui.input.style.height = 'auto';
        ui.input.style.height = Math.min(ui.input.scrollHeight, 120) + 'px';
    }

    function setOpen(open) {
        ui.panel.hidden = !open;
        ui.launcher.setAttribute('aria-expanded', open ? 'true' : 'false');
        ui.launcher.classList.toggle('is-open', open);
        if (open) store.set(K.open, '1'); else store.del(K.open);
        if (open) {
            unread = 0;
            showUnread();
            start();
            scrollDown(true);
            ui.input.focus();
        }
    }

    function showUnread() {
        ui.unread.hidden = unread === 0;
        ui.unread.textContent = unread > 9 ? '9+' : String(unread);
    }

    function nearBottom() { return ui.log.scrollHeight - ui.log.scrollTop - ui.log.clientHeight < 80; }
    function scrollDown(force) {
        if (force || nearBottom()) ui.log.scrollTop = ui.log.scrollHeight;
    }

    function setStatus(state, text) {
        ui.status.dataset.state = state;
        ui.status.textContent = text;
    }

    function showError(text) {
        ui.error.textContent = text;
        ui.error.hidden = false;
        clearTimeout(errTimer);
        errTimer = setTimeout(function () { ui.error.hidden = true; }, 10000);
    }

    /* ------------------------------------------------------------------ conversations */
    function ensureConv(conv) {
        var c = byConv.get(conv);
        if (c) return c;
        c = { conv: conv, log: new C.ConvLog(conv, 0),
            section: el('div', { className: 'conv-section', dataset: { conv: conv } }) };
        if (convs.length) {
            c.section.appendChild(el('div', { className: 'conv-divider', dataset: { pin: 'top' },
                text: 'New conversation' }));
        }
        convs.push(c);
        byConv.set(conv, c);
        ui.input.placeholder = 'Type your message…';
        ui.log.insertBefore(c.section, ui.pending);
        ui.empty.hidden = true;
        current = c;
        ui.log.dataset.conv = conv;
        store.set(K.conv, conv);
        return c;
    }

    function restore() {
        var cache = store.getJSON(K.log);
        var conv = store.get(K.conv) || '';
        if (cache && cache.v === 1 && Array.isArray(cache.convs)) {
            cache.convs.forEach(function (cc) {
                if (!cc || typeof cc.conv !== 'string' || !cc.conv || !Array.isArray(cc.msgs)) return;
                var c = ensureConv(cc.conv);
                cc.msgs.forEach(function (f) { if (f && f.seq > 0) addLogged(c, f, true); });
                /* the cache may have dropped its oldest frames: trust its resume point */
                var last = Number(cc.last_seq) || 0;
                if (last > c.log.contig) {
                    c.log.contig = last;
                    while (c.log.msgs.has(c.log.contig + 1)) c.log.contig++;
                }
                c.log.acked = c.log.contig;
            });
        }
        if (conv && !byConv.has(conv)) ensureConv(conv); /* no transcript cached: fetch it from 1 */
        var pend = store.getJSON(K.pending);
        if (Array.isArray(pend)) {
            pend.forEach(function (p) {
                if (!p || typeof p.cmid !== 'string' || typeof p.text !== 'string') return;
                addPending({ cmid: p.cmid, text: p.text, cts: Number(p.cts) || Date.now() });
            });
        }
        scrollDown(true);
    }

    function saveSoon() {
        if (!saveTimer) saveTimer = setTimeout(save, 100);
    }

    function save() {
        clearTimeout(saveTimer);
        saveTimer = null;
        var out = convs.slice(-CACHE_CONVS).map(function (c) {
            return { conv: c.conv, last_seq: c.log.contig, msgs: c.log.list().slice(-CACHE_MSGS) };
        });
        store.setJSON(K.log, { v: 1, convs: out });
        if (current) store.set(K.last, String(current.log.contig));
    }

    function savePending() {
        var list = [];
        pending.forEach(function (p) { list.push({ cmid: p.cmid, text: p.text, cts: p.cts }); });
        if (list.length) store.setJSON(K.pending, list); else store.del(K.pending);
    }

    /* ------------------------------------------------------------------ frames */
    function addLogged(c, f, fromCache) {
        var node;
        var p = f.cmid && f.role === 'customer' ? pending.get(f.cmid) : null;
        if (p) {
            resolvePending(p, f.seq, c.conv, f);
        } else if (c.log.has(f.seq)) {
            var old = c.log.get(f.seq);
            if (old && old._local) { /* our ack arrived before the echo: keep the full frame */
                c.log.msgs.set(f.seq, f);
                var n = c.section.querySelector('.msg[data-seq="' + f.seq + '"] .msg-time');
                if (n) n.textContent = C.fmtTime(f.ts);
            }
            return false;
        } else {
            c.log.add(f);
            node = C.renderFrame(f, view);
            C.insertBySeq(c.section, node, f.seq);
        }
        effects(c, f, fromCache);
        return true;
    }

    function effects(c, f, fromCache) {
        if (c !== current) return;
        if (f.type === 'text' && (f.role === 'system' || f.role === 'bot') && f.position > 0) {
            ui.queue.textContent = 'You are #' + f.position + ' in line' +
                (f.wait > 0 ? ' · ' + C.fmtWait(f.wait) : '');
            ui.queue.hidden = false;
        }
        if (f.type === 'assigned' || f.type === 'closed' || f.type === 'join') ui.queue.hidden = true;
        if (f.type === 'assigned') view.agentName = f.agent_name || '';
        if (f.type === 'closed') {
            ui.input.placeholder = 'Write to start a new conversation…';
            hideTyping();
            c.closed = true;
        }
        if (f.seq > 0) { /* an open conversation may be ended; a closed one stays closed */
            ui.end.hidden = !!c.closed;
            ui.end.disabled = false;
        }
        if (f.type === 'text' && f.role === 'agent') {
            hideTyping();
            if (!fromCache && ui.panel.hidden) { unread++; showUnread(); }
        }
        if (f.type === 'rating') {
            c.section.querySelectorAll('.rate-btn').forEach(function (b) { b.disabled = true; });
        }
    }

    /* "End chat": the desk closes the customer's current conversation (it leaves the queue, or
     * the agent is told); the closed event that follows hides the button. */
    function endChat() {
        if (!current || ui.end.disabled) return;
        if (conn.send({ type: 'close', cmid: C.uuid() })) ui.end.disabled = true;
    }

    function onLogged(f) {
        var conv = f.conv || (current && current.conv);
        if (!conv) return;
        var c = ensureConv(conv);
        var stick = nearBottom();
        if (addLogged(c, f, false)) {
            scheduleAck(c);
            saveSoon();
            scrollDown(stick || f.role === 'customer');
        }
    }

    function scheduleAck(c) {
        if (c.ackTimer) return;
        c.ackTimer = setTimeout(function () {
            c.ackTimer = null;
            if (!welcomed || c.log.contig <= c.log.acked) return;
            if (conn.send({ type: 'ack', conv: c.conv, last_seq: c.log.contig })) c.log.acked = c.log.contig;
        }, 250);
    }

    function onFrame(f) {
        switch (f.type) {
        case 'welcome': return onWelcome(f);
        case 'ack': return onAck(f);
        case 'error': return onError(f);
        case 'typing':
            if (f.role && f.role !== 'customer') showTyping(f.sender_name || view.agentName || 'Agent');
            return;
        case 'read': return;
        default:
            if (C.isLogged(f)) onLogged(f);
        }
    }

    function onWelcome(f) {
        clearTimeout(helloTimer);
        welcomed = true;
        conn.healthy();
        if (typeof f.token === 'string' && f.token) store.set(K.token, f.token);
        if (f.sender_id) view.me = f.sender_id;
        if (f.conv) ensureConv(f.conv);
        setStatus('online', 'Online');
        ui.error.hidden = true;
        pending.forEach(function (p) { transmit(p); });
    }

    function onAck(f) {
        var p = f.cmid ? pending.get(f.cmid) : null;
        if (!p || !(f.seq > 0)) return;
        var conv = f.conv || (current && current.conv);
        if (!conv) return;
        resolvePending(p, f.seq, conv, null);
        var c = byConv.get(conv);
        if (c) scheduleAck(c);
        saveSoon();
    }

    function onError(f) {
        var p = f.cmid ? pending.get(f.cmid) : null;
        if (p) {
            if (f.retry) {
                C.setPendingState(p.node, 'pending');
                clearTimeout(p.timer);
                p.timer = setTimeout(function () { transmit(p); }, 2000 + Math.random() * 1000);
            } else {
                failPending(p, C.errorText(f));
            }
            return;
        }
        if (f.code === 'bad_token' || f.code === 'expired_token') {
            if (sentToken) {
                dropSession();
            } else {
                showError(C.errorText(f));
                conn.stop();
                setStatus('offline', 'Unavailable');
            }
            return;
        }
        showError(C.errorText(f));
    }

    /* Our stored session is no longer accepted (expired, or the desk changed its secret): forget
     * it and start a new one on the next connect. Unsent messages stay and are sent there. */
    function dropSession() {
        sentToken = false;
        store.del(K.token); store.del(K.conv); store.del(K.last); store.del(K.log);
        convs.forEach(function (c) { clearTimeout(c.ackTimer); c.section.remove(); });
        convs = []; byConv.clear(); current = null;
        ui.empty.hidden = false;
        ui.queue.hidden = true;
        delete ui.log.dataset.conv;
        showError('Your previous chat session has expired; starting a new one.');
    }

    /* ------------------------------------------------------------------ sending */
    function addPending(p) {
        p.node = C.renderPending(p, view);
        var retry = el('button', { type: 'button', className: 'retry-btn', text: 'Retry', on: {
            click: function () { C.setPendingState(p.node, 'pending'); transmit(p); } } });
        p.node.appendChild(retry);
        ui.pending.appendChild(p.node);
        pending.set(p.cmid, p);
        ui.empty.hidden = true;
    }

    function transmit(p) {
        if (!welcomed) return;
        clearTimeout(p.timer);
        if (p.node.dataset.state === 'failed') C.setPendingState(p.node, 'pending');
        conn.send({ type: 'text', cmid: p.cmid, text: p.text, cts: p.cts });
    }

    function failPending(p, reason) {
        C.setPendingState(p.node, 'failed', reason);
    }

    function resolvePending(p, seq, conv, frame) {
        clearTimeout(p.timer);
        pending.delete(p.cmid);
        savePending();
        var c = ensureConv(conv);
        var retry = p.node.querySelector('.retry-btn');
        if (retry) retry.remove();
        if (c.log.has(seq)) { /* already on screen (e.g. from the cache) */
            p.node.remove();
            return;
        }
        var f = frame || { type: 'text', role: 'customer', cmid: p.cmid, text: p.text, cts: p.cts,
            seq: seq, conv: conv, sender_id: view.me, _local: true };
        c.log.add(f);
        p.node.dataset.seq = String(seq);
        p.node.dataset.conv = conv;
        C.setPendingState(p.node, 'sent');
        if (frame && frame.ts) {
            var t = p.node.querySelector('.msg-time');
            if (t) t.textContent = C.fmtTime(frame.ts);
        }
        C.insertBySeq(c.section, p.node, seq);
        scrollDown(true);
    }

    function submit() {
        var text = ui.input.value.replace(/\s+$/, '');
        if (!text.trim()) return;
        if (new TextEncoder().encode(text).length > MAX_TEXT) {
            showError('The message is too long (32 KB at most).');
            return;
        }
        ui.input.value = '';
        autoGrow();
        var p = { cmid: C.uuid(), text: text, cts: Date.now() };
        addPending(p);
        savePending();
        start();
        transmit(p);
        scrollDown(true);
    }

    function typing() {
        var now = Date.now();
        if (!welcomed || !current || now - lastTypingSent < 3000 || !ui.input.value) return;
        lastTypingSent = now;
        conn.send({ type: 'typing' });
    }

    function showTyping(name) {
        ui.typing.textContent = name + ' is typing…';
        ui.typing.hidden = false;
        clearTimeout(typingTimer);
        typingTimer = setTimeout(hideTyping, 6000);
    }
    function hideTyping() { clearTimeout(typingTimer); ui.typing.hidden = true; }

    function rate(survey, n) {
        var conv = survey.conv || (current && current.conv);
        conn.send({ type: 'rating', cmid: 'rating-' + (conv || '').slice(0, 40) + '-' + survey.seq,
            conv: conv, rating: n });
        var c = conv && byConv.get(conv);
        if (c) c.section.querySelectorAll('.rate-btn').forEach(function (b) {
            b.disabled = true;
            b.classList.toggle('chosen', Number(b.dataset.rating) <= n);
        });
    }

    /* ------------------------------------------------------------------ connection */
    var conn = new C.Connection({
        path: '/ws/customer',
        onState: function (s, info) {
            if (s === 'connecting' || s === 'open') setStatus('connecting', 'Connecting…');
            else if (s === 'waiting') setStatus('offline', 'Offline · reconnecting in ' + Math.ceil(info.delay / 1000) + ' s');
            else if (s === 'stopped') setStatus('offline', 'Offline');
        },
        onOpen: function () {
            welcomed = false;
            var hello = { type: 'hello' };
            var tok = store.get(K.token);
            sentToken = !!tok;
            if (tok) hello.token = tok;
            if (current) {
                hello.conv = current.conv;
                if (current.log.contig > 0) hello.last_seq = current.log.contig;
            }
            if (cfg.name) hello.sender_name = String(cfg.name);
            if (cfg.identity && typeof cfg.identity === 'object') hello.identity = cfg.identity;
            conn.send(hello);
            clearTimeout(helloTimer);
            helloTimer = setTimeout(function () { if (!welcomed) conn.drop(4000, 'no welcome'); }, 10000);
        },
        onFrame: onFrame,
        onClose: function (ev) {
            if (ev.code === 1008 && sentToken && !welcomed) dropSession(); /* refused at hello */
            welcomed = false;
            clearTimeout(helloTimer);
            hideTyping();
            convs.forEach(function (c) { clearTimeout(c.ackTimer); c.ackTimer = null; c.log.acked = 0; });
            return true;
        }
    });

    function start() {
        if (started) return;
        started = true;
        conn.start();
    }

    function init() {
        build();
        restore();
        window.addEventListener('pagehide', save);
        document.addEventListener('visibilitychange', function () { if (document.hidden) save(); });
        /* another tab of the same customer got a token first: use it on the next connect */
        if (store.get(K.open) === '1') setOpen(true);
        else if (store.get(K.token)) start();
        window.ChatGWWidget = { open: function () { setOpen(true); }, close: function () { setOpen(false); },
            state: function () { return { conv: current && current.conv, last_seq: current && current.log.contig,
                pending: pending.size, online: welcomed }; } };
    }

    if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
    else init();
})();
