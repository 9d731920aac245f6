/* widget-app.js -- the chatgw customer chat: launcher, panel and connection. It runs in
 * widget-frame.html, on the gateway's origin, which shops embed through widget.js (an iframe);
 * opened directly, the page is a chat page of its own. Needs chatcore.js, widget-i18n.js and
 * widget-render.js loaded first.
 *
 * Settings come from the frame's URL fragment (widget.js writes it from the tag's data-*
 * attributes; anything else in it is ignored): tenant (sent in hello as it is: the gateway
 * judges it, and a refused hello stops the widget with a message), locale, position
 * (right|left), color (#rgb or #rrggbb), title, prechat (1: ask name and e-mail first), sound (off), customer_token (a
 * customer token the shop's server signed: who the customer is; taken only inside a frame),
 * origin (the embedding page's).
 *
 * The embedding page and this frame talk by postMessage only (widget.js has the page's side):
 *   to the page:   {chatgw: 1, type: 'layout', open, width, height, title}   the iframe's size
 *                  and its name for screen readers, in the widget's language
 *   from the page: {chatgw: 1, type: 'open' | 'close'}
 * Messages are posted to the page's origin only and accepted from the parent window only, from
 * that origin. Nothing of the session (token, transcript) is ever posted.
 *
 * localStorage (the gateway origin's, which the shop's pages cannot read):
 *   chatgw_token     the session token from `welcome` (who this customer is)
 *   chatgw_signed    the shop-signed customer token the session was started with, if any
 *   chatgw_conv      the current conversation id
 *   chatgw_last_seq  the highest sequence number received in it without a gap (what we ack)
 *   chatgw_log       transcript cache {v, convs: [{conv, last_seq, msgs}]} (latest 3 conversations)
 *   chatgw_pending   messages sent but not acknowledged yet: re-sent with the same cmid
 *   chatgw_open      "1" while the chat panel is open
 *   chatgw_seen      {conv, seq}: the last message the customer has seen (the unread badge)
 *   chatgw_profile   {name, email, email_sent}: the pre-chat form's answers */
(function () {
    'use strict';
    var C = window.ChatGW, R = window.ChatGWRender, I = window.ChatGWi18n;
    var el = C.el;
    var store = C.storage('localStorage');
    var K = { token: 'chatgw_token', signed: 'chatgw_signed', conv: 'chatgw_conv', last: 'chatgw_last_seq',
        log: 'chatgw_log', pending: 'chatgw_pending', open: 'chatgw_open', seen: 'chatgw_seen',
        profile: 'chatgw_profile' };
    var MAX_TEXT = 32768, CACHE_CONVS = 3, CACHE_MSGS = 300;
    var EMAIL_RE = /^[^\s@<>()",;:]+@[^\s@<>()",;:]+\.[^\s@<>()",;:]+$/;
    var EMOJI = ['😀', '😂', '😊', '😍', '🤔', '😢', '😡', '👍', '👎', '🙏', '👋', '🎉', '❤️', '✅', '❌', '📦',
        '🚚', '💳', '🔧', '📷', '⏰', '🙂', '😅', '👌'];

    var cfg = settings();
    var locale = I.uiLocale(cfg.locale);
    var t = I.translator(locale);
    var ctx = { t: t, locale: locale, onRate: rate };
    var framed = window.parent !== window;
    var parentOrigin = framed ? embedderOrigin() : '';

    var convs = [];            /* [{conv, log: ConvLog, section}] oldest first */
    var byConv = new Map();
    var current = null;        /* the latest conversation */
    var pending = new Map();   /* cmid -> {cmid, text, cts, node, timer} */
    var welcomed = false, started = false, helloTimer = null, helloCmid = '', typingTimer = null;
    var sentToken = false, signedRefused = false, lastTypingSent = 0, saveTimer = null, errTimer = null;
    var readUpTo = 0, lastReadSent = 0, chimes = 0, lastChime = 0, audio = null;
    var profile = store.getJSON(K.profile) || {};

    /* The fragment's settings, each checked: the page that wrote them is not trusted. */
    function settings() {
        var p = new URLSearchParams(location.hash.slice(1));
        var color = p.get('color') || '';
        var out = {
            tenant: (p.get('tenant') || '').slice(0, 64),
            locale: p.get('locale') || navigator.language || 'zh-CN',
            position: p.get('position') === 'left' ? 'left' : 'right',
            color: /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.test(color) ? color : '',
            title: (p.get('title') || '').replace(/[\u0000-\u001f\u007f]/g, '').slice(0, 60),
            prechat: p.get('prechat') === '1',
            sound: p.get('sound') !== 'off',
            /* only from a page allowed to frame us (frame-ancestors): a link to this page opened
               on its own must not slip its own session into the reader's storage */
            customerToken: window.parent !== window &&
                /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(p.get('customer_token') || '')
                ? p.get('customer_token') : '',
            origin: p.get('origin') || ''
        };
        /* the token is not left in the address (history, screenshots) */
        if (location.hash) history.replaceState(null, '', location.pathname + location.search);
        return out;
    }

    /* The embedding page's origin: what the browser says (ancestorOrigins), else the fragment's.
     * The gateway's frame-ancestors policy already decided that it may embed us. */
    function embedderOrigin() {
        var a = location.ancestorOrigins;
        if (a && a.length) return a[0];
        return /^https?:\/\/[^/]+$/.test(cfg.origin) ? cfg.origin : '';
    }

    function post(msg) {
        if (!framed || !parentOrigin) return;
        msg.chatgw = 1;
        window.parent.postMessage(msg, parentOrigin);
    }

    /* ------------------------------------------------------------------ DOM */
    var ui = {};
    function build() {
        document.documentElement.lang = locale;
        document.body.classList.add('pos-' + cfg.position);
        if (framed) document.body.classList.add('framed');
        if (cfg.color) document.body.style.setProperty('--cg-accent', cfg.color);
        ui.launcher = el('button', { id: 'chat-launcher', type: 'button', className: 'chat-launcher',
            'aria-label': t('launcher'), 'aria-expanded': 'false', 'data-testid': 'chat-launcher', dataset: { chimes: 0 } },
        launcherIcon(),
        el('span', { className: 'chat-launcher-label', text: t('launcher') }),
        ui.unread = el('span', { id: 'chat-unread', className: 'chat-unread', hidden: true, 'data-testid': 'chat-unread' }));
        ui.status = el('span', { id: 'chat-status', className: 'chat-status', 'data-testid': 'chat-status',
            dataset: { state: 'offline' }, text: t('offline') });
        ui.queue = el('div', { id: 'chat-queue', className: 'chat-queue', hidden: true, 'data-testid': 'chat-queue',
            role: 'status' });
        ui.log = el('div', { id: 'chat-log', className: 'chat-log', role: 'log', 'aria-live': 'polite',
            'data-testid': 'chat-log', tabindex: '0' },
        ui.empty = el('div', { className: 'chat-empty', dataset: { pin: 'top' } },
            el('strong', { text: t('empty_title') }),
            el('span', { text: t('empty_text') })),
        ui.pending = el('div', { id: 'chat-pending', className: 'chat-pending' }));
        ui.typing = el('div', { id: 'chat-typing', className: 'chat-typing', hidden: true,
            'data-testid': 'chat-typing', 'aria-live': 'polite' });
        ui.error = el('div', { id: 'chat-error', className: 'chat-error', hidden: true, role: 'alert',
            'data-testid': 'chat-error' });
        ui.input = el('textarea', { id: 'chat-input', className: 'chat-input', rows: '1',
            placeholder: t('placeholder'), 'aria-label': t('message'), maxlength: String(MAX_TEXT),
            'data-testid': 'chat-input' });
        ui.emojiBtn = el('button', { id: 'chat-emoji', type: 'button', className: 'chat-emoji-btn',
            'aria-label': t('emoji'), title: t('emoji'), 'aria-expanded': 'false', 'aria-controls': 'chat-emoji-grid', text: '☺' });
        ui.emoji = el('div', { id: 'chat-emoji-grid', className: 'chat-emoji-grid', hidden: true, role: 'menu' });
        EMOJI.forEach(function (e) {
            ui.emoji.appendChild(el('button', { type: 'button', className: 'emoji', role: 'menuitem', text: e,
                on: { click: function () { insertEmoji(e); } } }));
        });
        ui.send = el('button', { id: 'chat-send', type: 'submit', className: 'chat-send',
            'data-testid': 'chat-send', text: t('send') });
        ui.form = el('form', { id: 'chat-form', className: 'chat-form', autocomplete: 'off' },
            ui.emojiBtn, ui.input, ui.send);
        ui.prechat = prechatForm();
        ui.panel = el('section', { id: 'chat-panel', className: 'chat-panel', hidden: true,
            'aria-label': t('panel'), 'data-testid': 'chat-panel' },
        el('header', { className: 'chat-header' },
            el('div', { className: 'chat-title' },
                el('strong', { text: cfg.title || t('title') }), ui.status),
            el('div', { className: 'chat-actions' },
                ui.end = el('button', { id: 'chat-end', type: 'button', className: 'chat-end', hidden: true,
                    'data-testid': 'chat-end', text: t('end') }),
                ui.download = el('button', { id: 'chat-download', type: 'button', className: 'chat-icon-btn',
                    'aria-label': t('download'), title: t('download'), text: '⤓' }),
                ui.minimize = el('button', { id: 'chat-minimize', type: 'button', className: 'chat-icon-btn',
                    'aria-label': t('minimize'), title: t('minimize'), text: '–' }))),
        ui.queue, ui.log, ui.prechat, ui.typing, ui.error, ui.emoji, ui.form);
        document.body.appendChild(ui.panel);
        document.body.appendChild(ui.launcher);

        ui.launcher.addEventListener('click', function () { setOpen(ui.panel.hidden); });
        ui.minimize.addEventListener('click', function () { setOpen(false); });
        ui.end.addEventListener('click', endChat);
        ui.download.addEventListener('click', downloadTranscript);
        ui.emojiBtn.addEventListener('click', function () { showEmoji(ui.emoji.hidden); });
        ui.form.addEventListener('submit', function (e) { e.preventDefault(); submit(); });
        ui.input.addEventListener('keydown', function (e) {
            if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); submit(); }
        });
        ui.input.addEventListener('input', function () { autoGrow(); typing(); });
        document.addEventListener('keydown', function (e) {
            if (e.key === 'Escape' && !ui.emoji.hidden) { showEmoji(false); ui.input.focus(); }
        });
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

    /* The optional pre-chat form (prechat=1): name (required) and e-mail (optional), asked once
     * before the first connect; the name goes into hello, the e-mail is the first message. */
    function prechatForm() {
        var name = el('input', { id: 'prechat-name', type: 'text', maxlength: '64', autocomplete: 'name', required: 'required' });
        var email = el('input', { id: 'prechat-email', type: 'email', maxlength: '120', autocomplete: 'email' });
        var err = el('div', { className: 'form-error', role: 'alert', hidden: true });
        var form = el('form', { id: 'chat-prechat', className: 'chat-prechat', hidden: true, novalidate: 'novalidate' },
            el('p', { className: 'prechat-title', text: t('prechat_title') }),
            el('label', { text: t('name') }, name),
            el('label', { text: t('email_optional') }, email),
            err,
            el('button', { type: 'submit', className: 'chat-send', text: t('start') }));
        form.addEventListener('submit', function (e) {
            e.preventDefault();
            var n = name.value.replace(/[\u0000-\u001f\u007f]/g, '').trim(), m = email.value.trim();
            err.hidden = false;
            if (!n) { err.textContent = t('name_required'); name.focus(); return; }
            if (m && !EMAIL_RE.test(m)) { err.textContent = t('bad_email'); email.focus(); return; }
            err.hidden = true;
            profile = { name: utf8Cut(n, NAME_BYTES), email: m, email_sent: false, asked: true };
            store.setJSON(K.profile, profile);
            showPrechat(false);
            start();
            ui.input.focus();
        });
        return form;
    }

    function needPrechat() { return cfg.prechat && !profile.asked && !store.get(K.token); }

    /* s cut to at most max UTF-8 bytes, on a character boundary: the gateway refuses a hello
     * whose sender_name is over 128 bytes (too_large), and 64 Chinese characters are 192. */
    var NAME_BYTES = 128;
    function utf8Cut(s, max) {
        var out = '', used = 0;
        for (var ch of s) {
            var c = ch.codePointAt(0);
            var n = c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
            if (used + n > max) break;
            out += ch;
            used += n;
        }
        return out;
    }

    function showPrechat(on) {
        ui.prechat.hidden = !on;
        ui.form.hidden = on;
        if (on) ui.prechat.querySelector('input').focus();
    }

    function showEmoji(on) {
        ui.emoji.hidden = !on;
        ui.emojiBtn.setAttribute('aria-expanded', on ? 'true' : 'false');
        if (on) ui.emoji.querySelector('button').focus();
    }

    function insertEmoji(e) {
        var i = ui.input, a = i.selectionStart, b = i.selectionEnd;
        if (typeof a !== 'number') { a = b = i.value.length; }
        i.value = i.value.slice(0, a) + e + i.value.slice(b);
        i.selectionStart = i.selectionEnd = a + e.length;
        showEmoji(false);
        i.focus();
        autoGrow();
    }

    function autoGrow() {
        if (!ui.input.value) { ui.input.style.height = ''; return; }
        ui.input.style.height = 'auto';
        ui.input.style.height = Math.min(ui.input.scrollHeight, 120) + 'px';
    }

    /* Tell the embedding page how big the iframe must be: the launcher alone, or launcher and panel. */
    function layout() {
        var open = !ui.panel.hidden;
        var r = ui.launcher.getBoundingClientRect();
        post({ type: 'layout', open: open, width: Math.ceil(r.width) + 48, height: Math.ceil(r.height) + 48,
            title: t('panel') });
    }

    function setOpen(open) {
        ui.panel.hidden = !open;
        ui.launcher.setAttribute('aria-expanded', open ? 'true' : 'false');
        ui.launcher.classList.toggle('is-open', open);
        if (open) store.set(K.open, '1'); else store.del(K.open);
        layout();
        if (open) {
            if (needPrechat()) { showPrechat(true); return; }
            markSeen();
            start();
            scrollDown(true);
            ui.input.focus();
        }
    }

    /* ------------------------------------------------------------------ unread, sound, read */
    function seenSeq() {
        var s = store.getJSON(K.seen);
        return s && current && s.conv === current.conv ? Number(s.seq) || 0 : 0;
    }

    function visible() { return !ui.panel.hidden && !document.hidden; }

    /* The customer sees the panel: everything in it counts as seen, and the agent is told. */
    function markSeen() {
        if (!current) { showUnread(); return; }
        store.setJSON(K.seen, { conv: current.conv, seq: current.log.contig });
        showUnread();
        sendRead();
    }

    function unreadCount() {
        if (!current) return 0;
        var seen = seenSeq(), n = 0;
        current.log.msgs.forEach(function (f) {
            if (f.seq > seen && f.role === 'agent' && (f.type === 'text' || f.type === 'attachment')) n++;
        });
        return n;
    }

    function showUnread() {
        var n = visible() ? 0 : unreadCount();
        ui.unread.hidden = n === 0;
        ui.unread.textContent = n > 9 ? '9+' : String(n);
        ui.launcher.setAttribute('aria-label', t('launcher') + (n ? ' · ' + t('unread', { n: n }) : ''));
        ui.launcher.dataset.unread = String(n);
        layout();
    }

    /* A short two-note chime (Web Audio, no file), at most one every 2 s; sound=off mutes it. */
    function chime() {
        if (!cfg.sound || Date.now() - lastChime < 2000) return;
        lastChime = Date.now();
        chimes++;
        ui.launcher.dataset.chimes = String(chimes);
        try {
            var A = window.AudioContext || window.webkitAudioContext;
            if (!A) return;
            audio = audio || new A();
            if (audio.state === 'suspended') audio.resume();
            [660, 880].forEach(function (hz, i) {
                var o = audio.createOscillator(), g = audio.createGain(), at = audio.currentTime + i * 0.12;
                o.frequency.value = hz;
                g.gain.setValueAtTime(0.0001, at);
                g.gain.exponentialRampToValueAtTime(0.12, at + 0.01);
                g.gain.exponentialRampToValueAtTime(0.0001, at + 0.25);
                o.connect(g);
                g.connect(audio.destination);
                o.start(at);
                o.stop(at + 0.26);
            });
        } catch (e) { /* no sound: the badge still shows */ }
    }

    function sendRead() {
        if (!welcomed || !current || !visible() || current.log.contig <= lastReadSent) return;
        if (conn.send({ type: 'read', last_seq: current.log.contig })) lastReadSent = current.log.contig;
    }

    /* The agent has read up to seq: two ticks on the customer's messages up to it. */
    function onRead(f) {
        if (!current || (f.conv && f.conv !== current.conv) || !(f.last_seq > 0)) return;
        readUpTo = Math.max(readUpTo, f.last_seq);
        current.section.querySelectorAll('.msg-mine[data-seq]').forEach(function (n) {
            if (Number(n.dataset.seq) <= readUpTo) R.setState(n, 'read', '', ctx);
        });
    }

    function nearBottom() { return ui.log.scrollHeight - ui.log.scrollTop - ui.log.clientHeight < 80; }
    function scrollDown(force) {
        if (force || nearBottom()) ui.log.scrollTop = ui.log.scrollHeight;
    }

    function setStatus(state, text) {
        ui.status.dataset.state = state;
        ui.status.textContent = text;
    }

    /* The error line: for 10 s, or for good (sticky). */
    function showError(text, sticky) {
        ui.error.textContent = text;
        ui.error.hidden = false;
        clearTimeout(errTimer);
        if (!sticky) errTimer = setTimeout(function () { ui.error.hidden = true; }, 10000);
    }

    function errorText(f) {
        var key = 'err_' + f.code;
        var base = t(key) !== key ? t(key) : t('error', { code: f.code || '?' });
        return locale === 'en' && f.text ? base + ': ' + f.text : base;
    }

    /* The gateway refused the hello itself, and would refuse it again (a tenant it does not
     * serve, a malformed field): no reconnecting in a loop; the widget says so and stays
     * offline until the page is loaded again. The shop's developer gets the details in the
     * console. */
    function helloRefused(f) {
        console.warn('chatgw: the desk refused this chat: ' + f.code + (f.text ? ': ' + f.text : ''));
        clearTimeout(helloTimer);
        conn.stop();
        setStatus('offline', t('unavailable'));
        var base = f.code === 'unknown_tenant' ? t('err_unknown_tenant') : t('err_hello', { code: f.code || '?' });
        showError(locale === 'en' && f.text ? base + ': ' + f.text : base, true);
        ui.input.disabled = true;
        ui.send.disabled = true;
        ui.emojiBtn.disabled = true;
        ui.panel.dataset.refused = f.code || 'error';
    }

    /* ------------------------------------------------------------------ conversations */
    function ensureConv(conv) {
        var c = byConv.get(conv);
        if (c) return c;
        c = { conv: conv, log: new C.ConvLog(conv, 0),
            section: el('div', { className: 'conv-section', dataset: { conv: conv } }) };
        if (convs.length) {
            c.section.appendChild(el('div', { className: 'conv-divider', dataset: { pin: 'top' },
                text: t('new_conversation') }));
        }
        convs.push(c);
        byConv.set(conv, c);
        ui.input.placeholder = t('placeholder');
        ui.log.insertBefore(c.section, ui.pending);
        ui.empty.hidden = true;
        if (current !== c) readUpTo = 0;
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
    function place(c, node, seq) {
        C.insertBySeq(c.section, node, seq);
        R.dateSeparators(c.section, ctx);
    }

    function addLogged(c, f, fromCache) {
        var p = f.cmid && f.role === 'customer' ? pending.get(f.cmid) : null;
        if (p) {
            resolvePending(p, f.seq, c.conv, f);
        } else if (c.log.has(f.seq)) {
            var old = c.log.get(f.seq);
            if (old && old._local) { /* our ack arrived before the echo: keep the full frame */
                c.log.msgs.set(f.seq, f);
                var n = c.section.querySelector('.msg[data-seq="' + f.seq + '"]');
                if (n && f.ts) {
                    n.dataset.ts = String(f.ts);
                    n.querySelector('.msg-time').textContent = C.fmtTime(f.ts);
                }
            }
            return false;
        } else {
            c.log.add(f);
            var node = R.frame(f, ctx);
            if (f.role === 'customer' && f.seq) R.setState(node, f.seq <= readUpTo ? 'read' : 'sent', '', ctx);
            place(c, node, f.seq);
        }
        effects(c, f, fromCache);
        return true;
    }

    function effects(c, f, fromCache) {
        if (f.type === 'assigned' || f.type === 'join') c.joined = true;
        if (c !== current) return;
        if (f.type === 'text' && (f.role === 'system' || f.role === 'bot') && f.position > 0) {
            ui.queue.textContent = t('queue', { n: f.position }) +
                (f.wait > 0 ? ' · ' + (f.wait < 60 ? t('wait_short') : t('wait_minutes', { m: Math.round(f.wait / 60) })) : '');
            ui.queue.hidden = false;
        }
        /* nobody who serves the queue is online (the router's no_agent text), or the desk is
           outside its business hours (off_hours): ask for an e-mail address, before any agent
           joined */
        if (f.type === 'text' && f.role === 'bot' && (f.code === 'no_agent' || f.code === 'off_hours') &&
            !c.joined && !fromCache && !profile.email_sent) askEmail(c, f.seq);
        if (f.type === 'assigned' || f.type === 'closed' || f.type === 'join') ui.queue.hidden = true;
        if (f.type === 'closed') {
            ui.input.placeholder = t('placeholder_closed');
            hideTyping();
            c.closed = true;
        }
        if (f.seq > 0) { /* an open conversation may be ended; a closed one stays closed */
            ui.end.hidden = !!c.closed;
            ui.end.disabled = false;
        }
        if (f.role === 'agent' && (f.type === 'text' || f.type === 'attachment')) {
            hideTyping();
            if (!fromCache && !visible()) chime();
        }
        if (f.type === 'rating') R.rated(c.section, f.rating);
    }

    /* The desk is closed for this conversation: a card under the message asks for an e-mail
     * address; it is sent as the customer's message (the desk answers by e-mail later). */
    function askEmail(c, seq) {
        if (c.section.querySelector('.email-capture')) return;
        var input = el('input', { type: 'email', id: 'capture-email', maxlength: '120', autocomplete: 'email',
            'aria-label': t('email'), placeholder: t('email') });
        var err = el('div', { className: 'form-error', role: 'alert', hidden: true });
        var card = el('form', { className: 'email-capture', dataset: { after: seq }, novalidate: 'novalidate' },
            el('p', { text: t('desk_closed') }),
            el('div', { className: 'capture-row' }, input, el('button', { type: 'submit', className: 'chat-send', text: t('submit') })),
            err);
        card.addEventListener('submit', function (e) {
            e.preventDefault();
            var m = input.value.trim();
            if (!EMAIL_RE.test(m)) { err.textContent = t('bad_email'); err.hidden = false; input.focus(); return; }
            sendEmail(m);
            card.replaceChildren(el('p', { className: 'capture-thanks', text: t('email_thanks', { email: m }) }));
        });
        c.section.appendChild(card);
        scrollDown(true);
    }

    function sendEmail(address) {
        profile.email = address;
        profile.email_sent = true;
        store.setJSON(K.profile, profile);
        queueText(t('email_text', { email: address }));
    }

    /* Commands the customer gave while the session is not (yet, or again) welcomed: sent once
     * the next welcome comes, in order. The gateway refuses any frame before the hello is
     * answered (hello_required), so End chat or a star pressed just after a reconnect would be
     * lost. Each carries a cmid: a re-send after an unanswered try is not applied twice. */
    var held = [];
    function sendWhenWelcomed(frame) {
        if (welcomed && conn.send(frame)) return;
        if (held.length < 16) held.push(frame);
    }

    /* "End chat": the desk closes the customer's current conversation (it leaves the queue, or
     * the agent is told); the closed event that follows hides the button. */
    function endChat() {
        if (!current || ui.end.disabled) return;
        sendWhenWelcomed({ type: 'close', cmid: C.uuid() });
        ui.end.disabled = true;
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
            if (visible()) markSeen(); else showUnread();
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
            if (f.role && f.role !== 'customer') showTyping(f.sender_name || t('agent'));
            return;
        case 'read':
            if (f.role && f.role !== 'customer') onRead(f);
            return;
        default:
            if (C.isLogged(f)) onLogged(f);
        }
    }

    function onWelcome(f) {
        clearTimeout(helloTimer);
        welcomed = true;
        conn.healthy();
        if (typeof f.token === 'string' && f.token) store.set(K.token, f.token);
        if (f.conv) ensureConv(f.conv);
        setStatus('online', t('online'));
        ui.error.hidden = true;
        var h = held;
        held = [];
        h.forEach(sendWhenWelcomed);
        pending.forEach(function (p) { transmit(p); });
        if (profile.email && !profile.email_sent && profile.asked) sendEmail(profile.email);
        if (visible()) markSeen();
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
                R.setState(p.node, 'pending', '', ctx);
                clearTimeout(p.timer);
                p.timer = setTimeout(function () { transmit(p); }, 2000 + Math.random() * 1000);
            } else {
                R.setState(p.node, 'failed', errorText(f), ctx);
            }
            return;
        }
        if (f.code === 'bad_token' || f.code === 'expired_token') {
            if (sentToken) {
                dropSession();
            } else {
                showError(errorText(f));
                conn.stop();
                setStatus('offline', t('unavailable'));
            }
            return;
        }
        if (!welcomed && helloCmid && f.cmid === helloCmid && !f.retry) return helloRefused(f);
        showError(errorText(f));
    }

    /* Our stored session is no longer accepted (expired, or the desk changed its secret), or the
     * shop signed in another customer: forget it and start a new one on the next connect.
     * Unsent messages stay and are sent there. */
    function dropSession(quiet) {
        if (sentToken && cfg.customerToken && store.get(K.signed) === cfg.customerToken &&
            !store.get(K.token)) signedRefused = true; /* the shop's token itself was refused */
        sentToken = false;
        [K.token, K.conv, K.last, K.log, K.seen].forEach(function (k) { store.del(k); });
        convs.forEach(function (c) { clearTimeout(c.ackTimer); c.section.remove(); });
        convs = []; byConv.clear(); current = null;
        ui.empty.hidden = false;
        ui.queue.hidden = true;
        delete ui.log.dataset.conv;
        if (!quiet) showError(t('session_expired'));
    }

    /* ------------------------------------------------------------------ sending */
    function addPending(p) {
        p.node = R.pending(p, ctx);
        var retry = el('button', { type: 'button', className: 'retry-btn', text: t('retry'), on: {
            click: function () { R.setState(p.node, 'pending', '', ctx); transmit(p); } } });
        p.node.appendChild(retry);
        ui.pending.appendChild(p.node);
        pending.set(p.cmid, p);
        ui.empty.hidden = true;
    }

    function transmit(p) {
        if (!welcomed) return;
        clearTimeout(p.timer);
        if (p.node.dataset.state === 'failed') R.setState(p.node, 'pending', '', ctx);
        conn.send({ type: 'text', cmid: p.cmid, text: p.text, cts: p.cts });
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
            seq: seq, conv: conv, _local: true };
        c.log.add(f);
        p.node.dataset.seq = String(seq);
        p.node.dataset.conv = conv;
        if (frame && frame.ts) {
            p.node.dataset.ts = String(frame.ts);
            var tm = p.node.querySelector('.msg-time');
            if (tm) tm.textContent = C.fmtTime(frame.ts);
        }
        R.setState(p.node, seq <= readUpTo ? 'read' : 'sent', '', ctx);
        place(c, p.node, seq);
        scrollDown(true);
    }

    function queueText(text) {
        var p = { cmid: C.uuid(), text: text, cts: Date.now() };
        addPending(p);
        savePending();
        start();
        transmit(p);
        scrollDown(true);
    }

    function submit() {
        var text = ui.input.value.replace(/\s+$/, '');
        if (!text.trim()) return;
        if (new TextEncoder().encode(text).length > MAX_TEXT) {
            showError(t('too_long'));
            return;
        }
        ui.input.value = '';
        autoGrow();
        showEmoji(false);
        queueText(text);
    }

    function typing() {
        var now = Date.now();
        if (!welcomed || !current || now - lastTypingSent < 3000 || !ui.input.value) return;
        lastTypingSent = now;
        conn.send({ type: 'typing' });
    }

    function showTyping(name) {
        ui.typing.textContent = t('typing', { name: name });
        ui.typing.hidden = false;
        clearTimeout(typingTimer);
        typingTimer = setTimeout(hideTyping, 6000);
    }
    function hideTyping() { clearTimeout(typingTimer); ui.typing.hidden = true; }

    function rate(survey, n) {
        var conv = survey.conv || (current && current.conv);
        sendWhenWelcomed({ type: 'rating', cmid: 'rating-' + (conv || '').slice(0, 40) + '-' + survey.seq,
            conv: conv, rating: n });
        var c = conv && byConv.get(conv);
        if (c) R.rated(c.section, n);
    }

    /* ------------------------------------------------------------------ transcript download */
    function pad2(n) { return (n < 10 ? '0' : '') + n; }
    function stamp(ms) {
        var d = new Date(ms);
        return d.getFullYear() + '-' + pad2(d.getMonth() + 1) + '-' + pad2(d.getDate()) + ' ' +
            pad2(d.getHours()) + ':' + pad2(d.getMinutes());
    }

    /* The cached conversations as plain text, one line per message, saved by the browser. */
    function downloadTranscript() {
        var lines = [(cfg.title || t('title')) + ' — ' + t('transcript'), ''];
        convs.forEach(function (c, i) {
            if (i) lines.push('', '— ' + t('new_conversation') + ' —', '');
            c.log.list().forEach(function (f) {
                if (f.type === 'classified' || f.type === 'escalated') return;
                var when = f.ts || f.cts ? '[' + stamp(f.ts || f.cts) + '] ' : '';
                if (f.type === 'text' || f.type === 'attachment') {
                    var who = f.role === 'customer' ? t('you') : f.sender_name || t(f.role === 'agent' ? 'agent' : f.role || 'system');
                    var atts = Array.isArray(f.attachments) ? f.attachments.map(function (a) { return a && a.url ? ' <' + a.url + '>' : ''; }).join('') : '';
                    lines.push(when + who + ': ' + (f.text || '') + atts);
                } else {
                    lines.push(when + '* ' + R.eventText(f, t));
                }
            });
        });
        var blob = new Blob([lines.join('\n') + '\n'], { type: 'text/plain;charset=utf-8' });
        var url = URL.createObjectURL(blob);
        var d = new Date();
        var a = el('a', { href: url, download: 'chat-transcript-' + d.getFullYear() + pad2(d.getMonth() + 1) + pad2(d.getDate()) + '.txt' });
        document.body.appendChild(a);
        a.click();
        a.remove();
        setTimeout(function () { URL.revokeObjectURL(url); }, 10000);
    }

    /* ------------------------------------------------------------------ connection */
    var conn = new C.Connection({
        path: '/ws/customer',
        onState: function (s, info) {
            if (s === 'connecting' || s === 'open') setStatus('connecting', t('connecting'));
            else if (s === 'waiting') setStatus('offline', t('reconnecting', { s: Math.ceil(info.delay / 1000) }));
            else if (s === 'stopped') setStatus('offline', t('offline'));
        },
        onOpen: function () {
            welcomed = false;
            lastReadSent = 0;
            /* the hello's cmid: an error naming it is the gateway refusing the hello */
            helloCmid = 'hello-' + C.uuid();
            var hello = { type: 'hello', cmid: helloCmid, identity: { locale: I.wireLocale(cfg.locale) } };
            if (cfg.tenant) hello.tenant = cfg.tenant;
            /* the shop signed in a customer: that identity, unless the session already is its */
            if (cfg.customerToken && !signedRefused && store.get(K.signed) !== cfg.customerToken) {
                if (store.get(K.token)) dropSession(true);
                store.set(K.signed, cfg.customerToken);
            }
            var tok = store.get(K.token) || (cfg.customerToken && !signedRefused ? cfg.customerToken : '');
            sentToken = !!tok;
            if (tok) hello.token = tok;
            if (current) {
                hello.conv = current.conv;
                if (current.log.contig > 0) hello.last_seq = current.log.contig;
            }
            if (profile.name) hello.sender_name = utf8Cut(String(profile.name), NAME_BYTES);
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
        if (started || needPrechat()) return;
        started = true;
        conn.start();
    }

    function onParentMessage(ev) {
        if (ev.source !== window.parent || ev.origin !== parentOrigin) return;
        var d = ev.data;
        if (!d || typeof d !== 'object' || d.chatgw !== 1) return;
        if (d.type === 'open') setOpen(true);
        else if (d.type === 'close') setOpen(false);
    }

    function init() {
        build();
        restore();
        window.addEventListener('pagehide', save);
        window.addEventListener('message', onParentMessage);
        window.addEventListener('resize', layout);
        document.addEventListener('visibilitychange', function () {
            if (document.hidden) save(); else if (visible()) markSeen();
        });
        if (store.get(K.open) === '1') setOpen(true);
        else if (store.get(K.token)) start();
        showUnread();
        window.ChatGWWidget = { open: function () { setOpen(true); }, close: function () { setOpen(false); },
            state: function () { return { conv: current && current.conv, last_seq: current && current.log.contig,
                pending: pending.size, held: held.length, online: welcomed, locale: locale,
                connection: conn.state }; } };
    }

    if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
    else init();
})();
