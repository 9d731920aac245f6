/* chatcore.js -- shared client code of the chatgw customer widget and the agent console.
 *
 * Plain browser JavaScript, no build step, no dependencies. Defines window.ChatGW with:
 *   uuid()               client message ids (crypto.randomUUID, with a fallback for plain http)
 *   wsUrl(path)          ws(s)://<this host><path>
 *   Connection           one WebSocket (subprotocol chatgw.json.v1) that reconnects with backoff
 *   ConvLog              the frames of one conversation by seq: de-duplication and resume point
 *   el(), insertBySeq(), renderFrame(), eventText(), fmtTime(), fmtDuration()
 *
 * Every piece of text that came from the network is put into the page with textContent (or as an
 * attribute value), never as HTML. See docs/protocol.md for the frames. */
(function (global) {
    'use strict';

    var PROTOCOL = 'chatgw.json.v1';
    /* the schema's lists (gen/schema.js, generated from schema/chatgw.json) */
    var S = window.ChatgwSchema;
    /* events whose details only the desk sees: shown to agents as internal notes (a transfer
       only when it carries the note) */
    function isInternal(f, view) {
        var t = S.message_types[f.type];
        return view.as === 'agent' && !!t && t.internal && (f.type !== 'transferred' || !!f.text);
    }

    function uuid() {
        var c = global.crypto;
        if (c && typeof c.randomUUID === 'function') {
            try { return c.randomUUID(); } catch (e) { /* insecure context: fall through */ }
        }
        var b = new Uint8Array(16);
        if (c && c.getRandomValues) c.getRandomValues(b);
        else for (var i = 0; i < 16; i++) b[i] = Math.floor(Math.random() * 256);
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        var h = '';
        for (var j = 0; j < 16; j++) h += (b[j] < 16 ? '0' : '') + b[j].toString(16);
        return h.slice(0, 8) + '-' + h.slice(8, 12) + '-' + h.slice(12, 16) + '-' + h.slice(16, 20) +
            '-' + h.slice(20);
    }

    function wsUrl(path) {
        var l = global.location;
        return (l.protocol === 'https:' ? 'wss://' : 'ws://') + l.host + path;
    }

    /* el('div', {className: 'x', dataset: {seq: 3}, title: '…'}, 'text', child, …) */
    function el(tag, props) {
        var e = document.createElement(tag);
        if (props) {
            Object.keys(props).forEach(function (k) {
                var v = props[k];
                if (v === undefined || v === null) return;
                if (k === 'dataset') Object.keys(v).forEach(function (d) {
                    if (v[d] !== undefined && v[d] !== null) e.dataset[d] = String(v[d]);
                });
                else if (k === 'className') e.className = v;
                else if (k === 'text') e.textContent = String(v);
                else if (k === 'on') Object.keys(v).forEach(function (ev) { e.addEventListener(ev, v[ev]); });
                else if (k in e && typeof v !== 'string') e[k] = v;
                else e.setAttribute(k, String(v));
            });
        }
        for (var i = 2; i < arguments.length; i++) {
            var c = arguments[i];
            if (c === undefined || c === null || c === false) continue;
            e.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
        }
        return e;
    }

    function pad2(n) { return (n < 10 ? '0' : '') + n; }

    function fmtTime(ms) {
        if (!ms) return '';
        var d = new Date(ms);
        return pad2(d.getHours()) + ':' + pad2(d.getMinutes());
    }

    function fmtDuration(sec) {
        sec = Math.max(0, Math.floor(sec));
        var h = Math.floor(sec / 3600), m = Math.floor((sec % 3600) / 60), s = sec % 60;
        return (h ? h + ':' + pad2(m) : String(m)) + ':' + pad2(s);
    }

    function fmtWait(sec) {
        if (!(sec > 0)) return '';
        if (sec < 60) return 'under a minute';
        var m = Math.round(sec / 60);
        return 'about ' + m + (m === 1 ? ' minute' : ' minutes');
    }

    function fmtSize(n) {
        if (!(n > 0)) return '';
        if (n < 1024) return n + ' B';
        if (n < 1048576) return (n / 1024).toFixed(1) + ' KB';
        return (n / 1048576).toFixed(1) + ' MB';
    }

    /* ---------------------------------------------------------------- connection with backoff */

    /* opts: path, onOpen(), onFrame(frame), onState(state, info), onClose(event) -> false to stop
     * reconnecting. States: 'connecting', 'open', 'waiting' (info.delay ms), 'stopped'. */
    function Connection(opts) {
        this.opts = opts;
        this.ws = null;
        this.attempt = 0;
        this.timer = null;
        this.stopped = true;
        this.minDelay = opts.minDelay || 1000;
        this.maxDelay = opts.maxDelay || 10000;
        var self = this;
        global.addEventListener('online', function () { self.reconnectNow(); });
    }

    Connection.prototype.start = function () {
        this.stopped = false;
        if (!this.ws) this._open();
    };

    Connection.prototype._state = function (s, info) {
        this.state = s;
        if (this.opts.onState) this.opts.onState(s, info || {});
    };

    Connection.prototype._open = function () {
        var self = this;
        clearTimeout(this.timer);
        this.timer = null;
        var ws;
        try {
            ws = new WebSocket(wsUrl(this.opts.path), [PROTOCOL]);
        } catch (e) {
            console.error('chatgw: cannot open WebSocket', e);
            this._schedule();
            return;
        }
        this.ws = ws;
        this._state('connecting');
        ws.onopen = function () {
            if (self.ws !== ws) return;
            self._state('open');
            if (self.opts.onOpen) self.opts.onOpen();
        };
        ws.onmessage = function (ev) {
            if (self.ws !== ws) return;
            if (typeof ev.data !== 'string') return; /* JSON subprotocol: text frames only */
            var f;
            try { f = JSON.parse(ev.data); } catch (e) {
                console.warn('chatgw: frame is not JSON', ev.data);
                return;
            }
            if (!f || typeof f !== 'object' || typeof f.type !== 'string') return;
            try { self.opts.onFrame(f); } catch (e) { console.error('chatgw: frame handler', e, f); }
        };
        ws.onerror = function () { /* onclose follows */ };
        ws.onclose = function (ev) {
            if (self.ws !== ws) return;
            self.ws = null;
            var again = self.opts.onClose ? self.opts.onClose(ev) : true;
            if (again === false) self.stopped = true;
            if (self.stopped) self._state('stopped', { code: ev.code, reason: ev.reason });
            else self._schedule(ev);
        };
    };

    Connection.prototype._schedule = function (ev) {
        var base = Math.min(this.maxDelay, this.minDelay * Math.pow(2, this.attempt));
        var delay = Math.min(this.maxDelay, Math.round(base * (1 + Math.random() * 0.2)));
        this.attempt++;
        var self = this;
        this.timer = setTimeout(function () { self._open(); }, delay);
        this._state('waiting', { delay: delay, until: Date.now() + delay, code: ev && ev.code });
    };

    /* Call when the session is established (welcome): the next failure starts again at 1 s. */
    Connection.prototype.healthy = function () { this.attempt = 0; };

    Connection.prototype.isOpen = function () {
        return !!this.ws && this.ws.readyState === 1;
    };

    Connection.prototype.send = function (obj) {
        if (!this.isOpen()) return false;
        try { this.ws.send(JSON.stringify(obj)); } catch (e) { return false; }
        return true;
    };

    Connection.prototype.reconnectNow = function () {
        if (this.stopped || this.ws) return;
        this._open();
    };

    /* Close the socket; the usual backoff then reconnects (unless stop()ped). */
    Connection.prototype.drop = function (code, reason) {
        if (this.ws) try { this.ws.close(code || 4000, reason || ''); } catch (e) { /* ignore */ }
    };

    Connection.prototype.stop = function () {
        this.stopped = true;
        clearTimeout(this.timer);
        if (this.ws) { var ws = this.ws; this.ws = null; try { ws.close(1000); } catch (e) { /* */ } }
        this._state('stopped', {});
    };

    /* ---------------------------------------------------------------- one conversation's log */

    function ConvLog(conv, lastSeq) {
        this.conv = conv;
        this.msgs = new Map();
        this.contig = lastSeq > 0 ? lastSeq : 0; /* every seq <= contig has been received */
        this.max = this.contig;
        this.acked = 0;                         /* last_seq we reported in an ack frame */
    }
    ConvLog.prototype.has = function (seq) { return seq <= this.contig || this.msgs.has(seq); };
    ConvLog.prototype.get = function (seq) { return this.msgs.get(seq); };
    /* true when the frame is new (and was stored) */
    ConvLog.prototype.add = function (f) {
        var seq = f.seq;
        if (!(seq > 0) || this.has(seq)) return false;
        this.msgs.set(seq, f);
        if (seq > this.max) this.max = seq;
        while (this.msgs.has(this.contig + 1)) this.contig++;
        return true;
    };
    ConvLog.prototype.list = function () {
        return Array.from(this.msgs.values()).sort(function (a, b) { return a.seq - b.seq; });
    };

    function isLogged(f) { var t = S.message_types[f.type]; return !!t && t.logged && f.seq > 0; }

    /* ---------------------------------------------------------------- rendering */

    /* Insert el (with data-seq) into container, ordered by seq; elements without data-seq (pending
     * messages, notices) stay at the end. */
    function insertBySeq(container, node, seq) {
        var kids = container.children;
        for (var i = kids.length - 1; i >= 0; i--) {
            var k = kids[i];
            var s = k.dataset && k.dataset.seq ? Number(k.dataset.seq) : 0;
            if (s && s < seq) {
                container.insertBefore(node, k.nextSibling);
                return;
            }
            if (!s && k.dataset && k.dataset.pin === 'top') {
                container.insertBefore(node, k.nextSibling);
                return;
            }
        }
        container.insertBefore(node, container.firstChild);
    }

    function roleLabel(role) {
        return { customer: 'Customer', agent: 'Agent', system: 'System', bot: 'Assistant',
            bridge: 'Bridge' }[role] || 'Unknown';
    }

    /* view: {as: 'customer' | 'agent', me: sender id of this client} */
    function eventText(f, view) {
        var who = f.agent_name || f.sender_name || f.agent_id || 'Someone';
        var mine = view.as === 'agent' && f.agent_id && f.agent_id === view.me;
        switch (f.type) {
        case 'assigned':
            if (view.as === 'agent') return mine ? 'Assigned to you' + (f.queue ? ' (queue ' + f.queue + ')' : '')
                : 'Assigned to ' + who;
            return (f.agent_name || 'An agent') + ' joined';
        case 'join': return (mine ? 'You' : who) + ' joined';
        case 'leave': return (mine ? 'You' : who) + ' left';
        case 'transferred':
            if (view.as === 'agent') {
                /* the note (text) is for the desk only: customers get the frame without it */
                var to = f.agent_id && f.agent_id === view.me ? 'you' : f.agent_name || f.agent_id ||
                    (f.queue ? 'queue ' + f.queue : '');
                return 'Transferred' + (to ? ' to ' + to : '') +
                    (typeof f.text === 'string' && f.text ? ' — note: ' + f.text : '');
            }
            return 'Conversation transferred' + (f.agent_name ? ' to ' + f.agent_name
                : f.queue ? ' to ' + f.queue : '');
        case 'classified':
            /* customers get a bare frame (no code, no text): nothing to tell them */
            if (view.as !== 'agent') return '';
            return typeof f.text === 'string' && f.text ? f.text
                : 'Re-classified' + (f.code ? ' as ' + f.code : '');
        case 'escalated':
            /* an SLA breach: for the desk only (customers get a bare frame) */
            if (view.as !== 'agent') return '';
            return typeof f.text === 'string' && f.text ? f.text
                : 'SLA breach' + (f.code ? ' (' + f.code + ')' : '');
        case 'closed':
            return 'Conversation closed' + (view.as === 'agent' && f.code ? ' (' + f.code + ')' : '');
        case 'survey': return view.as === 'agent' ? 'Satisfaction survey offered' : 'How did we do?';
        case 'rating':
            return (view.as === 'agent' ? 'Customer rated ' : 'You rated ') + (f.rating || '?') + '/5';
        default: return f.type;
        }
    }

    /* A logged frame as a .msg element. view: {as, me, onRate(frame, n)} */
    function renderFrame(f, view) {
        var role = f.role || (f.type === 'text' ? 'system' : 'system');
        var data = { seq: f.seq || undefined, role: role, type: f.type, cmid: f.cmid || undefined,
            conv: f.conv || undefined };
        if ((f.type === 'classified' || f.type === 'escalated') && view.as !== 'agent') {
            /* kept in the transcript (by seq) but invisible to the customer */
            return el('div', { className: 'msg event event-' + f.type, dataset: data, hidden: true,
                'aria-hidden': 'true' });
        }
        if (f.type !== 'text' && f.type !== 'attachment') {
            var internal = isInternal(f, view);
            var ev = el('div', { className: 'msg event event-' + f.type + (internal ? ' event-internal' : ''),
                dataset: data, role: 'status', title: internal ? 'Internal: only the desk sees this' : null },
                internal ? el('span', { className: 'event-label', text: 'internal' }) : null,
                el('span', { className: 'event-text', text: eventText(f, view) }),
                f.ts ? el('span', { className: 'msg-time', text: fmtTime(f.ts) }) : null);
            if (f.type === 'survey' && view.as === 'customer' && view.onRate) {
                var stars = el('span', { className: 'rating' });
                for (var n = 1; n <= 5; n++) {
                    stars.appendChild(el('button', {
                        type: 'button', className: 'rate-btn', dataset: { rating: n },
                        'aria-label': 'Rate ' + n + ' of 5', text: '★',
                        on: { click: (function (r) { return function () { view.onRate(f, r); }; })(n) }
                    }));
                }
                ev.appendChild(stars);
            }
            return ev;
        }
        var side;
        if (role === 'system' || role === 'bot') side = 'center';
        else if (view.as === 'customer') side = role === 'customer' ? 'mine' : 'theirs';
        else side = role === 'agent' ? 'mine' : 'theirs';
        var name;
        if (side === 'mine') name = view.as === 'agent' && f.sender_id && view.me && f.sender_id !== view.me
            ? (f.sender_name || 'Another agent') : 'You';
        else name = f.sender_name || roleLabel(role);
        var bubble = el('div', { className: 'msg-bubble' });
        if (typeof f.text === 'string' && f.text !== '') bubble.appendChild(el('div', { className: 'msg-text', text: f.text }));
        if (Array.isArray(f.attachments) && f.attachments.length) {
            var list = el('ul', { className: 'msg-att' });
            f.attachments.forEach(function (a) {
                if (!a || typeof a !== 'object') return;
                var label = (a.name || a.url || 'attachment') + (a.size ? ' (' + fmtSize(a.size) + ')' : '');
                var safe = typeof a.url === 'string' && /^https?:\/\//i.test(a.url);
                list.appendChild(el('li', null, safe
                    ? el('a', { href: a.url, target: '_blank', rel: 'noopener noreferrer', text: label })
                    : el('span', { text: label })));
            });
            bubble.appendChild(list);
        }
        return el('div', { className: 'msg msg-' + side + ' role-' + role, dataset: data },
            side === 'center' ? null : el('div', { className: 'msg-meta' },
                el('span', { className: 'msg-name', text: name }),
                el('span', { className: 'msg-time', text: fmtTime(f.ts || f.cts) })),
            bubble,
            side === 'mine' ? el('div', { className: 'msg-status' }) : null);
    }

    /* An outgoing message not yet acknowledged. */
    function renderPending(p, view) {
        var node = renderFrame({ type: 'text', role: view.as, text: p.text, cmid: p.cmid, cts: p.cts,
            conv: p.conv, sender_id: view.me }, view);
        setPendingState(node, 'pending');
        return node;
    }

    function setPendingState(node, state, reason) {
        node.dataset.state = state;
        var st = node.querySelector('.msg-status');
        if (!st) return;
        st.textContent = state === 'pending' ? 'Sending…' : state === 'failed'
            ? 'Not sent' + (reason ? ': ' + reason : '') : '';
    }

    /* JWT payload (display only: the gateway verifies the signature). */
    function jwtPayload(tok) {
        try {
            var p = String(tok).split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
            while (p.length % 4) p += '=';
            var bin = atob(p), bytes = new Uint8Array(bin.length);
            for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
            return JSON.parse(new TextDecoder().decode(bytes));
        } catch (e) { return null; }
    }

    function storage(kind) {
        var s;
        try { s = global[kind]; s.getItem('x'); } catch (e) { s = null; }
        var mem = {};
        return {
            get: function (k) { try { return s ? s.getItem(k) : (k in mem ? mem[k] : null); } catch (e) { return null; } },
            set: function (k, v) { try { if (s) s.setItem(k, v); else mem[k] = String(v); } catch (e) { /* full */ } },
            del: function (k) { try { if (s) s.removeItem(k); else delete mem[k]; } catch (e) { /* */ } },
            getJSON: function (k) { try { var v = this.get(k); return v ? JSON.parse(v) : null; } catch (e) { return null; } },
            setJSON: function (k, v) { this.set(k, JSON.stringify(v)); }
        };
    }

    global.ChatGW = {
        PROTOCOL: PROTOCOL, uuid: uuid, wsUrl: wsUrl, el: el, Connection: Connection, ConvLog: ConvLog,
        isLogged: isLogged, insertBySeq: insertBySeq, renderFrame: renderFrame,
        renderPending: renderPending, setPendingState: setPendingState, eventText: eventText,
        fmtTime: fmtTime, fmtDuration: fmtDuration, fmtWait: fmtWait,
        jwtPayload: jwtPayload, storage: storage, roleLabel: roleLabel
    };
})(window);
