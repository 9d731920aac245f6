/* agent.js -- the chatgw agent console (agent.html). Needs chatcore.js (window.ChatGW),
 * agent_i18n.js (window.AgentI18n: the console's texts in zh-CN and en) and agent_alerts.js
 * (window.AgentAlerts: sound and desktop notifications).
 *
 * The agent token comes from the address (#token=…, removed from the address bar at once) or from
 * the paste box, and is kept in sessionStorage (this tab only). The console connects to /ws/agent,
 * keeps every assigned conversation's transcript by seq (de-duplicated: after `welcome` the gateway
 * sends each assigned conversation from seq 1), acknowledges what it received, and re-sends
 * unacknowledged replies with the same cmid after a reconnect. pick, close, transfer and classify
 * carry a cmid: the router's refusal comes back later as an error naming it (transfer and classify
 * refusals are shown next to their controls; their success is the logged `transferred` /
 * `classified` event). System texts without seq are notices for this agent (offer timeout, SLA).
 *
 * HTTP reads with the same token (Authorization: Bearer): GET /canned?queue=… (the open
 * conversation's canned replies, once per queue: a picker, and a search in the composer that
 * starts with "/"), GET /desk (the close dialog's resolutions, the categories, the transfer
 * targets: online agents with their load, and queues; read at connect, when a conversation is
 * opened and when the transfer picker gets focus) and GET /customer?conv=… (the customer panel).
 * End chat asks first: a dialog with the resolution (the first configured one preselected) and a
 * confirmation. `read` frames of the customer mark the agent's replies read; the console sends its
 * own `read` for the open conversation. A new offer or customer message while the agent looks
 * elsewhere plays a sound, shows a desktop notification (once allowed) and counts in the title.
 * The agent's status (online / away) is the agent's choice: a console the agent has not set yet
 * connects away. The choice is kept in localStorage per agent id (so a reload, a reconnect or a
 * new tab of this browser keeps it; signing out forgets it) and said in every hello (its code),
 * so that connecting never makes the agent online by itself; an away set by the desk (missed
 * offers) is kept the same way. */
(function () {
    'use strict';
    var C = window.ChatGW;
    var I = window.AgentI18n;
    var A = window.AgentAlerts;
    var t = I.t;
    var el = C.el;
    var sess = C.storage('sessionStorage');
    var local = C.storage('localStorage');
    var K = { token: 'chatgw_agent_token', status: 'chatgw_agent_status:' };
    var MAX_TEXT = 32768;
    var ALERT_AGE_MS = 120000; /* frames older than this (a replay after a reload) alert nobody */

    var $ = function (id) { return document.getElementById(id); };
    var ui = {
        name: $('agent-name'), conn: $('conn-status'), toggle: $('status-toggle'), logout: $('logout-btn'),
        tokenPanel: $('token-panel'), tokenForm: $('token-form'), tokenInput: $('token-input'),
        tokenError: $('token-error'), console: $('console'), queueList: $('queue-list'),
        queueCount: $('queue-count'), convList: $('conv-list'), convCount: $('conv-count'),
        convEmpty: $('conv-empty'), title: $('conv-title'), sub: $('conv-sub'), closeBtn: $('close-btn'),
        log: $('agent-log'), typing: $('agent-typing'), error: $('agent-error'), form: $('agent-form'),
        input: $('agent-input'), send: $('agent-send'), tools: $('conv-tools'),
        transferForm: $('transfer-form'), transferFields: $('transfer-fields'),
        kindAgent: $('transfer-kind-agent'), kindQueue: $('transfer-kind-queue'),
        transferTarget: $('transfer-target'), transferTargetLabel: $('transfer-target-label'),
        transferNote: $('transfer-note'), transferBtn: $('transfer-btn'), transferError: $('transfer-error'),
        classifyForm: $('classify-form'), classifyFields: $('classify-fields'), classifyCode: $('classify-code'),
        classifyBtn: $('classify-btn'), classifyError: $('classify-error'), deskError: $('desk-error'),
        cannedFields: $('canned-fields'), cannedSelect: $('canned-select'), cannedStatus: $('canned-status'),
        suggest: $('canned-suggest'), suggestTitle: $('canned-suggest-title'), suggestList: $('canned-suggest-list'),
        closeDialog: $('close-dialog'), closeForm: $('close-form'), closeWho: $('close-who'),
        closeResolution: $('close-resolution'), closeHint: $('close-hint'), closeCancel: $('close-cancel'),
        shortcutsDialog: $('shortcuts-dialog'), shortcutsBtn: $('shortcuts-btn'), notifyBtn: $('notify-btn'),
        lang: $('lang-select'), panel: $('cust-panel'), facts: $('cust-facts'), earlier: $('cust-earlier'),
        panelError: $('cust-error')
    };

    var view = { as: 'agent', me: '' };
    var token = '';
    /* the status the agent chose (away until it chooses), and the one the last hello said */
    var desired = 'away', helloCode = '';
    var queues = new Map();      /* queue name -> items[] */
    var queueNodes = new Map();  /* conv -> .queue-item element */
    var queueTs = new Map();     /* queue name -> ts of the snapshot shown */
    var convs = new Map();       /* conv -> entry */
    var picking = new Map();     /* conv -> timer */
    var commands = new Map();    /* cmid of a pick / close / transfer / classify -> {type, conv} */
    var canned = new Map();      /* queue -> {state: 'loading' | 'ok' | 'error', replies: [{name, text}], error} */
    /* GET /desk: the pickers' lists */
    var desk = { state: '', at: 0, why: '', resolutions: [], unresolved: [], categories: [], queues: [], agents: [] };
    var panels = new Map();      /* conv -> {state, data, why} of GET /customer */
    var suggest = { open: false, items: [], index: 0 };
    var connState = { state: 'offline', key: 'conn_offline', vars: null };
    var selected = null;
    var welcomed = false, helloTimer = null, errTimer = null, lastTypingSent = 0;

    /* ------------------------------------------------------------------ token */
    function readToken() {
        var m = /(?:^#|&)token=([^&]+)/.exec(location.hash || '');
        if (m) {
            var tk = '';
            try { tk = decodeURIComponent(m[1]); } catch (e) { tk = m[1]; }
            sess.set(K.token, tk.trim());
            /* keep the secret out of the address bar and the history */
            history.replaceState(null, '', location.pathname + location.search);
        }
        return sess.get(K.token) || '';
    }

    function showTokenPanel(message) {
        document.body.dataset.auth = 'out';
        ui.console.hidden = true;
        ui.tokenPanel.hidden = false;
        ui.tokenError.hidden = !message;
        ui.tokenError.textContent = message || '';
        ui.tokenInput.focus();
    }

    /* ------------------------------------------------------------------ status */
    function statusKey() { return K.status + view.me; }

    function loadStatus() {
        desired = local.get(statusKey()) === 'online' ? 'online' : 'away';
        renderToggle();
    }

    function setStatus(s) {
        desired = s;
        local.set(statusKey(), s);
        renderToggle();
    }

    function useToken(tk) {
        token = tk;
        var claims = C.jwtPayload(tk) || {};
        ui.name.textContent = (claims.name || claims.sub || t('role_agent')) +
            (Array.isArray(claims.skills) && claims.skills.length ? ' · ' + claims.skills.join(', ') : '');
        view.me = claims.sub || view.me;
        loadStatus();
        document.body.dataset.auth = 'in';
        ui.tokenPanel.hidden = true;
        ui.console.hidden = false;
        conn.start();
    }

    /* ------------------------------------------------------------------ small UI helpers */
    function setConn(state, key, vars) {
        connState = { state: state, key: key, vars: vars || null };
        ui.conn.dataset.state = state;
        ui.conn.textContent = t(key, vars);
    }

    function showError(text, kind) {
        ui.error.textContent = text;
        ui.error.dataset.kind = kind || 'error';
        ui.error.hidden = false;
        clearTimeout(errTimer);
        errTimer = setTimeout(function () { ui.error.hidden = true; }, 10000);
    }

    function errText(f) { return I.errorText(f); }

    function renderToggle() {
        ui.toggle.dataset.status = desired;
        ui.toggle.setAttribute('aria-pressed', desired === 'online' ? 'true' : 'false');
        ui.toggle.textContent = t(desired === 'online' ? 'status_online' : 'status_away');
        ui.toggle.title = t(desired === 'online' ? 'status_online_title' : 'status_away_title');
    }

    function sendPresence() {
        if (welcomed) conn.send({ type: 'presence', code: desired });
    }

    function updateTitle() {
        var n = 0;
        convs.forEach(function (e) { n += e.unread; });
        document.title = (n ? '(' + n + ') ' : '') + t('page_title');
        document.body.dataset.unread = String(n);
    }

    function nearBottom() { return ui.log.scrollHeight - ui.log.scrollTop - ui.log.clientHeight < 80; }
    function scrollDown(force) { if (force || nearBottom()) ui.log.scrollTop = ui.log.scrollHeight; }

    function customerName(e) { return e.customer || t('customer_n', { id: e.customerId || e.conv.slice(0, 6) }); }

    /* The label of a configured code: a known resolution / category in the current language, else
     * the code itself; queues by their configured names. */
    function codeLabel(prefix, code) { return I.has(prefix + code) ? t(prefix + code) : code; }
    function queueLabel(name) {
        var q = desk.queues.filter(function (x) { return x.name === name; })[0];
        if (!q) return name;
        return (I.locale() === 'zh-CN' ? q.name_zh || q.name_en : q.name_en || q.name_zh) || name;
    }

    /* ------------------------------------------------------------------ transcript texts */
    /* The text of an event frame for this agent (chatcore's eventText, in the console's language). */
    function eventText(f) {
        var who = f.agent_name || f.sender_name || f.agent_id || t('ev_someone');
        var mine = f.agent_id && f.agent_id === view.me;
        var note = typeof f.text === 'string' && f.text ? f.text : '';
        switch (f.type) {
        case 'assigned':
            return mine ? t('ev_assigned_you') + (f.queue ? t('ev_in_queue', { q: f.queue }) : '')
                : t('ev_assigned_to', { who: who });
        case 'join': return t('ev_joined', { who: mine ? t('ev_you') : who });
        case 'leave': return t('ev_left', { who: mine ? t('ev_you') : who });
        case 'transferred':
            var to = mine ? t('ev_to_you') : f.agent_name || f.agent_id || (f.queue ? t('ev_to_queue', { q: f.queue }) : '');
            return (to ? t('ev_transferred_to', { to: to }) : t('ev_transferred')) + (note ? t('ev_note', { note: note }) : '');
        case 'classified':
            /* the router's text (English) says from what and by whom */
            return I.locale() === 'en' && note ? note : t('ev_reclassified', { code: f.code || '?' });
        case 'escalated': return note || t('ev_sla') + (f.code ? ' (' + f.code + ')' : '');
        case 'closed': return f.code ? t('ev_closed_code', { code: f.code }) : t('ev_closed');
        case 'survey': return t('ev_survey');
        case 'rating': return t('ev_rating', { n: f.rating || '?' });
        default: return C.eventText(f, view);
        }
    }

    function roleName(f) {
        var role = f.role || 'system';
        if (role === 'agent') {
            return f.sender_id && view.me && f.sender_id !== view.me ? f.sender_name || t('role_other_agent') : t('you');
        }
        return f.sender_name || t('role_' + ({ customer: 1, agent: 1, system: 1, bot: 1, bridge: 1 }[role] ? role : 'unknown'));
    }

    /* Put this console's language into a node chatcore rendered for frame f. */
    function localize(node, f) {
        if (!node || !f) return node;
        var ev = node.querySelector('.event-text');
        if (ev) ev.textContent = eventText(f);
        var label = node.querySelector('.event-label');
        if (label) { label.textContent = t('internal'); node.title = t('internal_title'); }
        var name = node.querySelector('.msg-name');
        if (name) name.textContent = roleName(f);
        var retry = node.querySelector('.retry-btn');
        if (retry) retry.textContent = t('retry');
        renderStatus(node);
        return node;
    }

    function renderFrame(f) { return localize(C.renderFrame(f, view), f); }

    /* The status line under one of the agent's messages: sending, not sent, read. */
    function renderStatus(node) {
        var st = node.querySelector('.msg-status');
        if (!st) return;
        var s = node.dataset.state;
        if (s === 'pending') st.textContent = t('sending');
        else if (s === 'failed') st.textContent = t('not_sent') + (node.dataset.reason ? ': ' + node.dataset.reason : '');
        else st.textContent = node.dataset.read === '1' ? t('read') : '';
    }

    function setPendingState(node, state, reason) {
        C.setPendingState(node, state, reason);
        if (reason) node.dataset.reason = reason; else delete node.dataset.reason;
        renderStatus(node);
    }

    /* ------------------------------------------------------------------ queues */
    function sinceMs(v) {
        v = Number(v) || 0;
        return v > 0 && v < 1e12 ? v * 1000 : v; /* accept seconds too */
    }

    function renderQueues() {
        var names = Array.from(queues.keys()).sort();
        var frag = document.createDocumentFragment();
        var used = new Set(), total = 0;
        names.forEach(function (q) {
            var items = (queues.get(q) || []).slice().sort(function (a, b) { return (a.position || 0) - (b.position || 0); });
            total += items.length;
            var group = el('section', { className: 'queue-group', dataset: { queue: q } },
                el('h3', null, el('span', { text: queueLabel(q) }), el('span', { className: 'count', text: String(items.length) })));
            if (!items.length) group.appendChild(el('p', { className: 'empty', text: t('no_one_waiting') }));
            items.forEach(function (it) {
                if (!it || typeof it.conv !== 'string') return;
                used.add(it.conv);
                group.appendChild(queueItem(it));
            });
            frag.appendChild(group);
        });
        if (!names.length) frag.appendChild(el('p', { className: 'empty', text: t('no_queue_info') }));
        queueNodes.forEach(function (n, conv) { if (!used.has(conv)) queueNodes.delete(conv); });
        ui.queueList.replaceChildren(frag);
        ui.queueCount.textContent = String(total);
        tick();
    }

    function queueItem(it) {
        var n = queueNodes.get(it.conv);
        if (!n) {
            n = el('div', { className: 'queue-item', dataset: { conv: it.conv } });
            n.pick = el('button', { type: 'button', className: 'pick-btn', dataset: { conv: it.conv },
                on: { click: function () { pick(it.conv); } } });
            queueNodes.set(it.conv, n);
        }
        n.replaceChildren(
            el('div', { className: 'qi-top' },
                el('span', { className: 'qi-pos', text: '#' + (it.position || '?') }),
                el('span', { className: 'chip', text: it.channel || 'web' }),
                it.priority > 0 ? el('span', { className: 'chip' + (it.priority >= 7 ? ' prio' : ''),
                    title: t('prio_title'), text: t('prio', { n: it.priority }) }) : null,
                el('span', { className: 'wait', dataset: { since: sinceMs(it.since) || '' }, title: t('wait_title') })),
            el('div', { className: 'qi-preview', text: it.preview || t('no_text') }),
            n.pick);
        var busy = picking.has(it.conv);
        n.pick.disabled = busy;
        n.pick.textContent = t(busy ? 'picking' : 'pick');
        return n;
    }

    function tick() {
        var now = Date.now();
        ui.queueList.querySelectorAll('.wait[data-since]').forEach(function (w) {
            var s = Number(w.dataset.since);
            w.textContent = s ? C.fmtDuration((now - s) / 1000) : '';
        });
    }

    function pick(conv) {
        if (picking.has(conv)) return;
        if (!command({ type: 'pick', conv: conv })) return;
        picking.set(conv, setTimeout(function () { donePicking(conv); }, 10000));
        var n = queueNodes.get(conv);
        if (n) { n.pick.disabled = true; n.pick.textContent = t('picking'); }
    }

    function donePicking(conv) {
        clearTimeout(picking.get(conv));
        picking.delete(conv);
        var n = queueNodes.get(conv);
        if (n) { n.pick.disabled = false; n.pick.textContent = t('pick'); }
    }

    /* ------------------------------------------------------------------ conversations */
    function ensureConv(conv) {
        var e = convs.get(conv);
        if (e) return e;
        e = { conv: conv, log: new C.ConvLog(conv, 0), pending: new Map(), state: 'assigned',
            customer: '', channel: '', queue: '', category: '', preview: '', unread: 0, typingUntil: 0,
            readSeq: 0, readSent: 0, closing: null, transfer: { timer: null, error: '' }, classify: { timer: null, error: '' },
            container: el('div', { className: 'conv-transcript', dataset: { conv: conv } }),
            item: el('div', { className: 'conv-item', dataset: { conv: conv }, role: 'option', tabindex: '0' }) };
        e.item.addEventListener('click', function () { select(conv); });
        e.item.addEventListener('keydown', function (ev) { if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); select(conv); } });
        convs.set(conv, e);
        ui.convList.insertBefore(e.item, ui.convList.firstChild);
        ui.convEmpty.hidden = true;
        renderConvItem(e);
        return e;
    }

    function renderConvItem(e) {
        var typing = e.typingUntil > Date.now();
        e.item.dataset.state = e.state;
        e.item.classList.toggle('active', e.conv === selected);
        e.item.setAttribute('aria-selected', e.conv === selected ? 'true' : 'false');
        e.item.replaceChildren(
            el('div', { className: 'ci-top' },
                el('span', { className: 'ci-name', text: customerName(e) }),
                e.state !== 'assigned' ? el('span', { className: 'chip state', text: t(e.state === 'closed' ? 'chip_closed' : 'chip_transferred') }) : null,
                e.unread ? el('span', { className: 'badge', text: String(e.unread) }) : null,
                e.state !== 'assigned' ? el('button', { type: 'button', className: 'dismiss-btn',
                    title: t('remove'), 'aria-label': t('remove'), text: '×',
                    on: { click: function (ev) { ev.stopPropagation(); dismiss(e.conv); } } }) : null),
            el('div', { className: 'ci-preview' + (typing ? ' typing' : ''), text: typing ? t('typing') : (e.preview || ' ') }));
        var open = 0;
        convs.forEach(function (x) { if (x.state === 'assigned') open++; });
        ui.convCount.textContent = String(open);
        updateTitle();
    }

    function renderNothingSelected() {
        ui.log.replaceChildren(el('p', { className: 'empty', text: t('pick_hint') }));
        ui.title.textContent = t('no_selected');
        ui.sub.textContent = '';
        ui.closeBtn.disabled = true;
        ui.closeBtn.textContent = t('end_chat');
        ui.input.disabled = true;
        ui.send.disabled = true;
        ui.typing.hidden = true;
        ui.input.placeholder = t('reply_placeholder');
        renderTools();
        renderPanel();
    }

    /* Forget a closed (or transferred) conversation: it leaves the list until it comes back. */
    function dismiss(conv) {
        var e = convs.get(conv);
        if (!e || e.state === 'assigned') return;
        convs.delete(conv);
        e.item.remove();
        if (selected === conv) { selected = null; renderNothingSelected(); }
        ui.convEmpty.hidden = convs.size > 0;
        updateTitle();
    }

    function select(conv) {
        var e = convs.get(conv);
        if (!e) return;
        var prev = selected && convs.get(selected);
        if (selected !== conv) {
            /* what was chosen in the transfer / category controls was for the other conversation */
            ui.transferTarget.value = '';
            ui.transferNote.value = '';
            ui.classifyCode.value = '';
            closeSuggest();
        }
        selected = conv;
        if (prev) renderConvItem(prev);
        e.unread = 0;
        renderConvItem(e);
        ui.log.replaceChildren(e.container);
        renderHeader();
        renderTyping();
        scrollDown(true);
        sendRead(e);
        loadDesk(false);
        loadPanel(e, false);
        if (!ui.input.disabled) ui.input.focus();
    }

    /* Alt+↓ / Alt+↑: the next / previous conversation of the list (its order on screen). */
    function selectStep(dir) {
        var items = Array.from(ui.convList.querySelectorAll('.conv-item'));
        if (!items.length) return;
        var at = items.findIndex(function (n) { return n.dataset.conv === selected; });
        var next = items[(at < 0 ? 0 : at + dir + items.length) % items.length];
        if (next) select(next.dataset.conv);
    }

    function renderHeader() {
        var e = selected && convs.get(selected);
        if (!e) return;
        ui.title.textContent = customerName(e);
        var id = e.identity || {};
        ui.sub.textContent = [e.channel || 'web', e.queue ? t('sub_queue', { q: queueLabel(e.queue) }) : '',
            id.order_no ? t('sub_order', { v: id.order_no }) : '', id.account ? t('sub_account', { v: id.account }) : '',
            id.tier ? t('sub_tier', { v: id.tier }) : '', id.locale || '',
            e.category ? t('sub_category', { v: e.category }) : '', t('sub_conv', { v: e.conv }),
            e.state === 'closed' ? t('chip_closed') : e.state === 'away' ? t('chip_transferred') : t('sub_assigned')]
            .filter(Boolean).join(' · ');
        var open = e.state === 'assigned';
        ui.closeBtn.disabled = !open || !!e.closing;
        ui.closeBtn.textContent = t(e.closing ? 'ending' : 'end_chat');
        ui.input.disabled = !open;
        ui.send.disabled = !open;
        ui.input.placeholder = open ? t('reply_placeholder') : t(e.state === 'closed' ? 'conv_closed' : 'conv_not_yours');
        if (!open) closeSuggest();
        renderTools();
        renderPanel();
    }

    /* ------------------------------------------------------------------ desk lists (GET /desk) */
    function httpWhy(status, conv) {
        if (status === 0) return t('why_net');
        if (status === 403 && conv) return t('why_403_conv');
        return { 401: t('why_401'), 403: t('why_403'), 404: t('why_404'), 503: t('why_503') }[status] ||
            t('why_http', { n: status });
    }

    /* GET path with the token: done(status, json) (status 0: network error). */
    function getJSON(path, done) {
        fetch(path, { headers: { Authorization: 'Bearer ' + token }, cache: 'no-store', credentials: 'omit' })
            .then(function (r) {
                if (!r.ok) { done(r.status, null); return null; }
                return r.json().then(function (j) { done(200, j); });
            }).catch(function () { done(0, null); });
    }

    function strings(a) { return Array.isArray(a) ? a.filter(function (x) { return typeof x === 'string' && x; }) : []; }

    /* Read the lists again: now (force, or the last read is 3 s old), else once 3 s after the
     * last read; never two reads at a time. */
    function loadDesk(force) {
        if (!token) return;
        var wait = desk.at ? desk.at + 3000 - Date.now() : 0;
        if (desk.state === 'loading' || (!force && wait > 0)) {
            if (!desk.later) desk.later = setTimeout(function () { desk.later = null; loadDesk(true); }, Math.max(wait, 500));
            return;
        }
        desk.state = 'loading';
        getJSON('/desk', function (status, j) {
            desk.at = Date.now();
            if (status !== 200 || !j) {
                desk.state = 'error';
                desk.why = httpWhy(status);
            } else {
                desk.state = 'ok';
                desk.resolutions = strings(j.resolutions);
                desk.unresolved = strings(j.unresolved);
                desk.categories = strings(j.categories);
                desk.queues = Array.isArray(j.queues) ? j.queues.filter(function (q) { return q && typeof q.name === 'string'; }) : [];
                desk.agents = Array.isArray(j.agents) ? j.agents.filter(function (a) {
                    return a && typeof a.id === 'string' && a.id !== view.me;
                }) : [];
            }
            renderPickers();
            renderQueues();
            if (selected) renderHeader();
        });
    }

    /* Fill select with [value, label, disabled] options, keeping the choice when it is still there. */
    function fillSelect(select, placeholder, options) {
        var keep = select.value;
        var opts = [el('option', { value: '', text: placeholder })];
        options.forEach(function (o) {
            var n = el('option', { value: o[0], text: o[1] });
            if (o[2]) n.disabled = true;
            opts.push(n);
        });
        select.replaceChildren.apply(select, opts);
        if (options.some(function (o) { return o[0] === keep && !o[2]; })) select.value = keep;
    }

    function renderPickers() {
        var toQueue = ui.kindQueue.checked;
        ui.transferTargetLabel.textContent = t(toQueue ? 'to_queue' : 'to_agent');
        ui.transferTarget.dataset.kind = toQueue ? 'queue' : 'agent';
        if (toQueue) {
            var e = selected && convs.get(selected);
            var qs = desk.queues.filter(function (q) { return !e || q.name !== e.queue; });
            fillSelect(ui.transferTarget, qs.length ? t('choose') : t('no_queues'), qs.map(function (q) {
                return [q.name, t('queue_option', { name: queueLabel(q.name), online: q.online || 0 })];
            }));
        } else {
            fillSelect(ui.transferTarget, desk.agents.length ? t('choose') : t('no_agents'), desk.agents.map(function (a) {
                return [a.id, t('agent_option', { name: a.name || a.id, load: a.load || 0, cap: a.cap || 0 }) +
                    (a.status && a.status !== 'online' ? t('agent_away') : '')];
            }));
        }
        fillSelect(ui.classifyCode, t('choose'), desk.categories.map(function (c) {
            var l = codeLabel('cat_', c);
            return [c, l === c ? c : l + ' (' + c + ')'];
        }));
        ui.deskError.hidden = desk.state !== 'error';
        ui.deskError.textContent = desk.state === 'error' ? t('desk_error', { why: desk.why }) : '';
    }

    /* ------------------------------------------------------------------ customer panel */
    function loadPanel(e, force) {
        var p = panels.get(e.conv);
        if (p && (p.state === 'loading' || (p.state === 'ok' && !force))) return;
        panels.set(e.conv, { state: 'loading' });
        getJSON('/customer?conv=' + encodeURIComponent(e.conv), function (status, j) {
            panels.set(e.conv, status === 200 && j ? { state: 'ok', data: j } : { state: 'error', why: httpWhy(status, true) });
            /* the category the router gave it (no classified event says it until an agent changes it) */
            if (status === 200 && j && typeof j.category === 'string' && !e.category) e.category = j.category;
            if (selected === e.conv) renderHeader();
        });
    }

    function fact(dl, key, value) {
        if (value === undefined || value === null || value === '') return;
        dl.appendChild(el('dt', { text: t(key) }));
        dl.appendChild(el('dd', { dataset: { fact: key }, text: String(value) }));
    }

    function fmtDate(ms) {
        if (!(ms > 0)) return '';
        var d = new Date(ms);
        return d.toLocaleDateString(I.locale()) + ' ' + C.fmtTime(ms);
    }

    function renderPanel() {
        var e = selected && convs.get(selected);
        ui.panel.hidden = !e;
        if (!e) return;
        var p = panels.get(e.conv) || { state: 'loading' };
        var d = p.state === 'ok' ? p.data : {};
        var id = e.identity || {};
        var dl = document.createDocumentFragment();
        fact(dl, 'panel_name', d.name || e.customer || id.name || '');
        fact(dl, 'panel_id', d.customer || id.customer_id || '');
        fact(dl, 'panel_channel', d.channel || e.channel || 'web');
        fact(dl, 'panel_locale', d.locale || id.locale || '');
        fact(dl, 'panel_order', id.order_no || '');
        fact(dl, 'panel_account', id.account || '');
        fact(dl, 'panel_tier', id.tier || '');
        fact(dl, 'panel_started', fmtDate(d.created));
        if (p.state === 'ok') {
            fact(dl, 'panel_ticket', d.ticket ? d.ticket + (d.complaint_class ? ' · ' + d.complaint_class : '') : t('panel_no_ticket'));
            if (d.latest_ticket && d.latest_ticket !== d.ticket) fact(dl, 'panel_ticket_latest', d.latest_ticket);
            fact(dl, 'panel_rating', d.rating > 0 ? t('panel_stars', { n: d.rating }) : t('panel_no_rating'));
            fact(dl, 'panel_last_agent', d.last_agent || '');
        }
        ui.facts.replaceChildren(dl);
        var earlier = p.state === 'ok' && Array.isArray(d.earlier) ? d.earlier : [];
        ui.earlier.replaceChildren.apply(ui.earlier, earlier.length ? earlier.map(function (x) {
            return el('li', { dataset: { conv: x.conv } },
                el('span', { className: 'ce-when', text: fmtDate(x.created) || String(x.conv).slice(0, 8) }),
                el('span', { className: 'chip state', text: x.resolution ? codeLabel('res_', x.resolution) : x.state || '' }),
                x.rating > 0 ? el('span', { className: 'ce-rating', text: '★ ' + t('panel_stars', { n: x.rating }) }) : null,
                x.ticket ? el('span', { className: 'ce-ticket', text: x.ticket }) : null);
        }) : [el('li', { className: 'empty', text: p.state === 'loading' ? t('loading') : t('panel_none') })]);
        ui.panelError.hidden = p.state !== 'error';
        ui.panelError.textContent = p.state === 'error' ? t('panel_error', { why: p.why }) : '';
    }

    /* ------------------------------------------------------------------ transfer and category */
    function renderTools() {
        var e = selected && convs.get(selected);
        ui.tools.hidden = !e;
        if (!e) return;
        var open = e.state === 'assigned';
        ui.tools.dataset.state = e.state;
        ui.transferFields.disabled = !open;
        ui.classifyFields.disabled = !open;
        ui.transferBtn.disabled = !!e.transfer.timer;
        ui.transferBtn.textContent = t(e.transfer.timer ? 'transferring' : 'transfer');
        ui.classifyBtn.disabled = !!e.classify.timer;
        ui.classifyBtn.textContent = t(e.classify.timer ? 'saving' : 'reclassify');
        ui.transferError.textContent = e.transfer.error;
        ui.transferError.hidden = !e.transfer.error;
        ui.classifyError.textContent = e.classify.error;
        ui.classifyError.hidden = !e.classify.error;
        renderCanned();
    }

    /* ------------------------------------------------------------------ canned replies */
    /* Fetch the canned replies of queue q once (an error is kept until the queue is opened again). */
    function loadCanned(q) {
        var c = canned.get(q);
        if (c && (c.state === 'loading' || c.state === 'ok')) return;
        canned.set(q, { state: 'loading', replies: [], status: 0 });
        getJSON('/canned?queue=' + encodeURIComponent(q), function (status, j) {
            var list = status === 200 && j && Array.isArray(j.replies) ? j.replies.filter(function (x) {
                return x && typeof x.name === 'string' && typeof x.text === 'string';
            }) : [];
            canned.set(q, { state: status === 200 ? 'ok' : 'error', replies: list, status: status });
            var e = selected && convs.get(selected);
            if (e && e.queue === q) { renderCanned(); if (suggest.open) renderSuggest(); }
        });
    }

    /* The picker for the open conversation: its queue's replies (loaded on first use). */
    function renderCanned() {
        var e = selected && convs.get(selected);
        var q = e && e.queue;
        var c = q ? canned.get(q) : null;
        if (q && (!c || c.state === 'error') && ui.cannedSelect.dataset.queue !== q) loadCanned(q);
        c = q ? canned.get(q) : null;
        var key = (q ? q + ':' + (c ? c.state : '') : '') + ':' + I.locale();
        if (ui.cannedSelect.dataset.key !== key) {
            ui.cannedSelect.dataset.key = key;
            ui.cannedSelect.dataset.queue = q || '';
            var opts = [el('option', { text: t('canned_choose') })];
            opts[0].value = '';
            (c && c.state === 'ok' ? c.replies : []).forEach(function (r, i) {
                var o = el('option', { text: r.name + ' — ' + (r.text.length > 60 ? r.text.slice(0, 60) + '…' : r.text) });
                o.value = String(i);
                o.title = r.text;
                opts.push(o);
            });
            ui.cannedSelect.replaceChildren.apply(ui.cannedSelect, opts);
        }
        var ready = !!c && c.state === 'ok' && c.replies.length > 0;
        ui.cannedFields.disabled = !e || e.state !== 'assigned' || !ready;
        var status = !q ? t('canned_noqueue')
            : !c || c.state === 'loading' ? t('loading')
            : c.state === 'error' ? t('canned_error', { why: httpWhy(c.status) })
            : c.replies.length ? '' : t('canned_none', { q: q });
        ui.cannedStatus.textContent = status;
        ui.cannedStatus.hidden = !status;
    }

    /* Put text into the composer replacing [start, end), the cursor after it. */
    function insertText(text, start, end) {
        var v = ui.input.value;
        var next = (v.slice(0, start) + text + v.slice(end)).slice(0, MAX_TEXT);
        ui.input.value = next;
        ui.input.focus();
        var at = Math.min(start + text.length, next.length);
        ui.input.setSelectionRange(at, at);
    }

    /* The chosen reply's text into the composer at the cursor (replacing a selection). */
    function insertCanned() {
        var e = selected && convs.get(selected);
        var c = e && e.queue ? canned.get(e.queue) : null;
        var r = c && c.state === 'ok' ? c.replies[Number(ui.cannedSelect.value)] : null;
        ui.cannedSelect.value = '';
        if (!r || ui.input.disabled) return;
        var v = ui.input.value;
        insertText(r.text, ui.input.selectionStart == null ? v.length : ui.input.selectionStart,
            ui.input.selectionEnd == null ? v.length : ui.input.selectionEnd);
    }

    /* "/" at the start of an otherwise empty line of the composer searches the canned replies
     * (name or text, case-insensitive); the query is what follows it on that line. */
    function suggestQuery() {
        var v = ui.input.value, at = ui.input.selectionStart == null ? v.length : ui.input.selectionStart;
        var lineStart = v.lastIndexOf('\n', at - 1) + 1;
        var line = v.slice(lineStart, at);
        if (line.charAt(0) !== '/' || /\s{2}|\n/.test(line)) return null;
        return { start: lineStart, end: at, q: line.slice(1) };
    }

    function closeSuggest() {
        suggest.open = false;
        ui.suggest.hidden = true;
        ui.input.removeAttribute('aria-activedescendant');
    }

    function renderSuggest() {
        var e = selected && convs.get(selected);
        var sq = suggestQuery();
        if (!e || e.state !== 'assigned' || !sq) { closeSuggest(); return; }
        if (e.queue) loadCanned(e.queue);
        var c = e.queue ? canned.get(e.queue) : null;
        var q = sq.q.toLowerCase();
        var items = c && c.state === 'ok' ? c.replies.filter(function (r) {
            return !q || r.name.toLowerCase().indexOf(q) >= 0 || r.text.toLowerCase().indexOf(q) >= 0;
        }).slice(0, 8) : [];
        suggest.open = true;
        suggest.items = items;
        suggest.range = sq;
        if (suggest.index >= items.length) suggest.index = 0;
        ui.suggest.hidden = false;
        ui.suggestTitle.textContent = !c || c.state === 'loading' ? t('loading')
            : c.state === 'error' ? t('canned_error', { why: httpWhy(c.status) })
            : !items.length ? t('canned_nomatch', { q: sq.q }) : sq.q ? t('canned_search', { q: sq.q }) : t('canned_all');
        ui.suggestList.replaceChildren.apply(ui.suggestList, items.map(function (r, i) {
            return el('li', { id: 'cs-' + i, role: 'option', className: 'cs-item' + (i === suggest.index ? ' active' : ''),
                'aria-selected': i === suggest.index ? 'true' : 'false', dataset: { name: r.name },
                on: { mousedown: function (ev) { ev.preventDefault(); suggest.index = i; chooseSuggest(); } } },
                el('span', { className: 'cs-name', text: r.name }),
                el('span', { className: 'cs-text', text: r.text.length > 90 ? r.text.slice(0, 90) + '…' : r.text }));
        }));
        if (items.length) ui.input.setAttribute('aria-activedescendant', 'cs-' + suggest.index);
    }

    function chooseSuggest() {
        var r = suggest.items[suggest.index];
        var range = suggest.range;
        closeSuggest();
        if (r && range) insertText(r.text, range.start, range.end);
    }

    /* keys of the composer while the search is open: true when the key was used */
    function suggestKey(ev) {
        if (!suggest.open) return false;
        if (ev.key === 'Escape') { closeSuggest(); return true; }
        if (!suggest.items.length) return false;
        if (ev.key === 'ArrowDown' || ev.key === 'ArrowUp') {
            suggest.index = (suggest.index + (ev.key === 'ArrowDown' ? 1 : suggest.items.length - 1)) % suggest.items.length;
            renderSuggest();
            return true;
        }
        if ((ev.key === 'Enter' && !ev.shiftKey) || ev.key === 'Tab') { chooseSuggest(); return true; }
        return false;
    }

    /* Send a transfer or classify command for the open conversation; the outcome is the logged
     * event (success) or an error frame with the cmid (shown next to the control). */
    function toolCommand(kind, frame, missing) {
        var e = selected && convs.get(selected);
        if (!e || e.state !== 'assigned') return false;
        var st = e[kind];
        if (st.timer) return false;
        st.error = '';
        if (missing) st.error = missing;
        else if (!welcomed) st.error = t('not_connected');
        if (st.error) { renderTools(); return false; }
        frame.conv = e.conv;
        if (!command(frame)) { st.error = t('not_connected'); renderTools(); return false; }
        st.timer = setTimeout(function () { st.timer = null; if (e.conv === selected) renderTools(); }, 15000);
        renderTools();
        return true;
    }

    function submitTransfer() {
        var toQueue = ui.kindQueue.checked;
        var target = ui.transferTarget.value;
        var note = ui.transferNote.value.trim();
        var frame = { type: 'transfer' };
        frame[toQueue ? 'queue' : 'agent_id'] = target;
        if (note) frame.text = note;
        toolCommand('transfer', frame, target ? '' : t(toQueue ? 'choose_queue' : 'choose_agent'));
        if (!target) ui.transferTarget.focus();
    }

    function submitClassify() {
        var code = ui.classifyCode.value;
        toolCommand('classify', { type: 'classify', code: code }, code ? '' : t('choose_category'));
        if (!code) ui.classifyCode.focus();
    }

    /* The logged event of a transfer or a re-classification arrived: the command (if any) is done. */
    function toolDone(e, kind) {
        var st = e[kind];
        clearTimeout(st.timer);
        st.timer = null;
        st.error = '';
        if (e.conv === selected) {
            if (kind === 'transfer') { ui.transferTarget.value = ''; ui.transferNote.value = ''; }
            else ui.classifyCode.value = '';
        }
    }

    /* ------------------------------------------------------------------ close (End chat) */
    /* The dialog: the resolution (configured codes, the first one preselected), then confirm. */
    function openClose() {
        var e = selected && convs.get(selected);
        if (!e || e.state !== 'assigned' || e.closing || ui.closeDialog.open) return;
        var codes = desk.resolutions.length ? desk.resolutions.slice() : ['resolved'];
        desk.unresolved.forEach(function (c) { if (codes.indexOf(c) < 0) codes.push(c); });
        ui.closeResolution.replaceChildren.apply(ui.closeResolution, codes.map(function (c) {
            var l = codeLabel('res_', c);
            return el('option', { value: c, text: l === c ? c : l });
        }));
        ui.closeResolution.value = codes[0];
        ui.closeWho.textContent = customerName(e) + ' · ' + t('sub_conv', { v: e.conv.slice(0, 8) });
        ui.closeDialog.dataset.conv = e.conv;
        renderCloseHint();
        ui.closeDialog.showModal();
        ui.closeResolution.focus();
    }

    function renderCloseHint() {
        ui.closeHint.textContent = t(desk.unresolved.indexOf(ui.closeResolution.value) >= 0 ? 'close_unresolved_hint' : 'close_hint');
    }

    function confirmClose() {
        var conv = ui.closeDialog.dataset.conv;
        var code = ui.closeResolution.value;
        ui.closeDialog.close();
        var e = conv && convs.get(conv);
        if (!e || e.state !== 'assigned' || e.closing || !code) return;
        if (!command({ type: 'close', conv: e.conv, code: code })) return;
        e.closing = setTimeout(function () { e.closing = null; if (e.conv === selected) renderHeader(); }, 10000);
        renderHeader();
    }

    function renderTyping() {
        var e = selected && convs.get(selected);
        var on = !!e && e.typingUntil > Date.now();
        ui.typing.hidden = !on;
        ui.typing.textContent = on ? t('is_typing', { name: e.customer || t('the_customer') }) : '';
    }

    /* ------------------------------------------------------------------ alerts and receipts */
    /* A new offer or customer message: sound, desktop notification and (via unread) the title,
     * unless the agent is looking at that conversation. Replayed frames (older ones) stay quiet. */
    function alertAgent(e, kind, f) {
        if (f && f.ts && Date.now() - f.ts > ALERT_AGE_MS) return;
        var looking = e.conv === selected && !document.hidden && document.hasFocus();
        if (looking) return;
        A.beep();
        var title = kind === 'offer' ? t('notify_offer') : t('notify_message', { name: customerName(e) });
        A.notify(title, (f && f.text) || customerName(e), 'chatgw-' + e.conv, function () { select(e.conv); });
        document.body.dataset.alerts = String(Number(document.body.dataset.alerts || 0) + 1);
    }

    function renderNotifyBtn() {
        var p = A.permission();
        ui.notifyBtn.hidden = p === 'unsupported';
        ui.notifyBtn.disabled = p !== 'default';
        ui.notifyBtn.dataset.permission = p;
        ui.notifyBtn.textContent = t(p === 'granted' ? 'notify_enabled' : p === 'denied' ? 'notify_blocked' : 'notify_on');
    }

    /* The customer read up to seq: the agent's messages up to it show "Read". */
    function markRead(e) {
        e.container.querySelectorAll('.msg-mine[data-seq]').forEach(function (n) {
            if (Number(n.dataset.seq) <= e.readSeq && n.dataset.read !== '1' && n.dataset.state !== 'failed') {
                n.dataset.read = '1';
                renderStatus(n);
            }
        });
    }

    /* Tell the customer the agent has seen the open conversation up to its last message. */
    function sendRead(e) {
        if (!welcomed || e.conv !== selected || document.hidden || e.state !== 'assigned') return;
        if (e.log.contig <= e.readSent) return;
        if (conn.send({ type: 'read', conv: e.conv, last_seq: e.log.contig })) e.readSent = e.log.contig;
    }

    function applyEvent(e, f, live) {
        switch (f.type) {
        case 'assigned':
            e.state = f.agent_id && view.me && f.agent_id !== view.me ? 'away' : 'assigned';
            if (f.queue) e.queue = f.queue;
            if (e.state === 'away') toolDone(e, 'transfer'); /* handed over: a transfer is done */
            break;
        case 'transferred':
            if (!(f.agent_id && f.agent_id === view.me)) e.state = 'away';
            toolDone(e, 'transfer');
            if (live) loadDesk(true); /* loads changed */
            break;
        case 'classified':
            if (f.code) e.category = f.code;
            toolDone(e, 'classify');
            break;
        case 'closed':
            e.state = 'closed';
            if (e.closing) { clearTimeout(e.closing); e.closing = null; }
            if (live) { panels.delete(e.conv); if (e.conv === selected) loadPanel(e, true); }
            break;
        case 'rating':
            if (live) { panels.delete(e.conv); if (e.conv === selected) loadPanel(e, true); }
            break;
        case 'text': case 'attachment':
            if (f.role === 'customer') {
                if (f.sender_name) e.customer = f.sender_name;
                else if (!e.customer && f.sender_id) e.customerId = String(f.sender_id).slice(0, 6);
                if (f.channel) e.channel = f.channel;
                if (f.identity && typeof f.identity === 'object') e.identity = f.identity;
                e.typingUntil = 0;
            }
            if (f.role === 'customer' || f.role === 'agent' || f.role === 'bridge' || !e.preview) {
                e.preview = (f.role === 'agent' ? t('you_prefix') : '') + (f.text || t('attachment'));
            }
            if (live && f.role !== 'agent' && (e.conv !== selected || document.hidden)) e.unread++;
            if (live && f.role === 'customer') alertAgent(e, 'message', f);
            break;
        }
        renderConvItem(e);
        if (e.conv === selected) { renderHeader(); renderTyping(); }
    }

    function onAssigned(f) {
        if (!f.conv) return;
        var mine = !f.agent_id || !view.me || f.agent_id === view.me;
        if (!mine && !convs.has(f.conv)) return;
        var isNew = !convs.has(f.conv) || convs.get(f.conv).state !== 'assigned';
        var e = ensureConv(f.conv);
        if (f.queue && f.queue !== e.queue) e.queue = f.queue;
        if (f.seq > 0) onLogged(f);
        else if (mine && e.state !== 'closed') { e.state = 'assigned'; renderConvItem(e); }
        if (mine && isNew && welcomed && !picking.has(f.conv)) alertAgent(e, 'offer', f);
        if (mine && picking.has(f.conv)) { donePicking(f.conv); select(f.conv); }
        else if (mine && !selected) select(f.conv);
        else if (e.conv === selected) renderHeader();
    }

    function onLogged(f) {
        if (!f.conv) return;
        var e = ensureConv(f.conv);
        var stick = e.conv === selected && nearBottom();
        var p = f.cmid && f.role === 'agent' ? e.pending.get(f.cmid) : null;
        if (p) {
            resolvePending(e, p, f.seq, f);
        } else if (e.log.has(f.seq)) {
            var old = e.log.get(f.seq);
            if (old && old._local) {
                e.log.msgs.set(f.seq, f);
                var tm = e.container.querySelector('.msg[data-seq="' + f.seq + '"] .msg-time');
                if (tm) tm.textContent = C.fmtTime(f.ts);
            }
            return;
        } else {
            e.log.add(f);
            C.insertBySeq(e.container, renderFrame(f), f.seq);
        }
        applyEvent(e, f, welcomed);
        scheduleAck(e);
        if (e.readSeq) markRead(e);
        if (e.conv === selected) { scrollDown(stick || f.role === 'agent'); if (f.role === 'customer') sendRead(e); }
    }

    function scheduleAck(e) {
        if (e.ackTimer) return;
        e.ackTimer = setTimeout(function () {
            e.ackTimer = null;
            if (!welcomed || e.log.contig <= e.log.acked) return;
            if (conn.send({ type: 'ack', conv: e.conv, last_seq: e.log.contig })) e.log.acked = e.log.contig;
        }, 250);
    }

    /* ------------------------------------------------------------------ replies */
    function submit() {
        var e = selected && convs.get(selected);
        if (!e || e.state !== 'assigned') return;
        var text = ui.input.value.replace(/\s+$/, '');
        if (!text.trim()) return;
        if (new TextEncoder().encode(text).length > MAX_TEXT) { showError(t('too_long')); return; }
        ui.input.value = '';
        closeSuggest();
        var p = { cmid: C.uuid(), text: text, cts: Date.now(), conv: e.conv };
        p.node = C.renderPending(p, view);
        p.node.appendChild(el('button', { type: 'button', className: 'retry-btn', text: t('retry'),
            on: { click: function () { transmit(p); } } }));
        localize(p.node, { type: 'text', role: 'agent', sender_id: view.me });
        e.container.appendChild(p.node);
        e.pending.set(p.cmid, p);
        transmit(p);
        scrollDown(true);
    }

    function transmit(p) {
        clearTimeout(p.timer);
        setPendingState(p.node, 'pending');
        if (welcomed) conn.send({ type: 'text', conv: p.conv, cmid: p.cmid, text: p.text, cts: p.cts });
    }

    function resolvePending(e, p, seq, frame) {
        clearTimeout(p.timer);
        e.pending.delete(p.cmid);
        var r = p.node.querySelector('.retry-btn');
        if (r) r.remove();
        if (e.log.has(seq)) { p.node.remove(); return; }
        var f = frame || { type: 'text', role: 'agent', cmid: p.cmid, text: p.text, cts: p.cts, seq: seq,
            conv: e.conv, sender_id: view.me, _local: true };
        e.log.add(f);
        p.node.dataset.seq = String(seq);
        setPendingState(p.node, 'sent');
        if (frame && frame.ts) { var tm = p.node.querySelector('.msg-time'); if (tm) tm.textContent = C.fmtTime(frame.ts); }
        C.insertBySeq(e.container, p.node, seq);
        applyEvent(e, f, false);
        if (e.readSeq) markRead(e);
    }

    function findPending(cmid, conv) {
        var e = conv && convs.get(conv);
        if (e && e.pending.has(cmid)) return { e: e, p: e.pending.get(cmid) };
        var hit = null;
        convs.forEach(function (x) { if (!hit && x.pending.has(cmid)) hit = { e: x, p: x.pending.get(cmid) }; });
        return hit;
    }

    function typing() {
        var now = Date.now();
        if (!welcomed || !selected || now - lastTypingSent < 3000 || !ui.input.value) return;
        lastTypingSent = now;
        conn.send({ type: 'typing', conv: selected });
    }

    /* pick and close are decided by a router: an error arrives later with the command's cmid */
    function command(frame) {
        frame.cmid = C.uuid();
        if (!welcomed || !conn.send(frame)) { showError(t('not_connected')); return false; }
        commands.set(frame.cmid, { type: frame.type, conv: frame.conv });
        setTimeout(function () { commands.delete(frame.cmid); }, 60000);
        return true;
    }

    /* ------------------------------------------------------------------ frames */
    function onFrame(f) {
        switch (f.type) {
        case 'welcome':
            clearTimeout(helloTimer);
            welcomed = true;
            conn.healthy();
            if (f.sender_id) view.me = f.sender_id;
            if (f.sender_name) ui.name.textContent = f.sender_name;
            setConn('online', 'conn_online');
            ui.error.hidden = true;
            /* the hello said the status; changed since (clicked while connecting): say it now */
            if (desired !== helloCode) sendPresence();
            /* the gateway now re-sends every assigned conversation from seq 1: de-duplicated by seq */
            convs.forEach(function (e) { e.pending.forEach(transmit); e.readSent = 0; });
            loadDesk(true);
            return;
        case 'queue':
            var qname = typeof f.queue === 'string' && f.queue ? f.queue : 'default';
            /* snapshots may arrive out of order (stored one after a live one): keep the newest */
            if (f.ts > 0 && (queueTs.get(qname) || 0) > f.ts) return;
            if (f.ts > 0) queueTs.set(qname, f.ts);
            queues.set(qname, Array.isArray(f.items) ? f.items : []);
            renderQueues();
            return;
        case 'assigned':
            return onAssigned(f);
        case 'typing':
            if (f.conv && f.role !== 'agent' && convs.has(f.conv)) {
                var e = convs.get(f.conv);
                e.typingUntil = Date.now() + 6000;
                renderConvItem(e);
                if (f.conv === selected) renderTyping();
                setTimeout(function () { renderConvItem(e); if (e.conv === selected) renderTyping(); }, 6100);
            }
            return;
        case 'read':
            /* the customer's read receipt (ephemeral): our messages up to last_seq are read */
            if (f.conv && f.role !== 'agent' && convs.has(f.conv) && f.last_seq > 0) {
                var re = convs.get(f.conv);
                if (f.last_seq > re.readSeq) { re.readSeq = f.last_seq; markRead(re); }
            }
            return;
        case 'presence':
            /* the desk changed our status (away after unanswered offers): show it, keep it */
            if (f.code === 'online' || f.code === 'away') setStatus(f.code);
            return;
        case 'ack':
            if (f.cmid && f.seq > 0) {
                var hit = findPending(f.cmid, f.conv);
                if (hit) { resolvePending(hit.e, hit.p, f.seq, null); scheduleAck(hit.e); }
            }
            return;
        case 'error':
            return onError(f);
        case 'text':
            if (!(f.seq > 0)) return onNotice(f);
            return onLogged(f);
        default:
            if (C.isLogged(f)) onLogged(f);
        }
    }

    /* A system text for this agent only, outside any transcript (no seq): a conversation taken back
     * after the offer timeout, the status set to away, an SLA breach. The logged events that go
     * with it (a new assignment, closed) update the conversation itself. */
    function onNotice(f) {
        if (typeof f.text !== 'string' || !f.text) return;
        showError(f.text, 'notice');
    }

    function onError(f) {
        if (f.code === 'bad_token' || f.code === 'expired_token') {
            sess.del(K.token);
            conn.stop();
            showTokenPanel(t('token_refused') + (f.text ? ' (' + f.text + ')' : '') + '. ' + t('paste_valid'));
            return;
        }
        var hit = f.cmid ? findPending(f.cmid, f.conv) : null;
        if (hit) {
            if (f.retry) hit.p.timer = setTimeout(function () { transmit(hit.p); }, 2000 + Math.random() * 1000);
            else setPendingState(hit.p.node, 'failed', errText(f));
            return;
        }
        /* a refused pick or close: let the agent try again */
        var cmd = f.cmid ? commands.get(f.cmid) : null;
        if (cmd) commands.delete(f.cmid);
        var te = cmd && (cmd.type === 'transfer' || cmd.type === 'classify') && convs.get(cmd.conv);
        if (te) {
            /* shown next to the control, until the next attempt or its success */
            var st = te[cmd.type];
            clearTimeout(st.timer);
            st.timer = null;
            st.error = t(cmd.type === 'transfer' ? 'transfer_refused' : 'category_refused') + (f.text || errText(f));
            if (te.conv === selected) renderTools();
            return;
        }
        var conv = (cmd && cmd.conv) || f.conv;
        if (conv && picking.has(conv) && (!cmd || cmd.type === 'pick')) donePicking(conv);
        var e = conv && convs.get(conv);
        if (e && e.closing && (!cmd || cmd.type === 'close')) { clearTimeout(e.closing); e.closing = null; }
        if (selected) renderHeader();
        showError(cmd ? ({ pick: t('err_pick'), close: t('err_close') }[cmd.type] || '') +
            (f.text || errText(f)) : errText(f));
    }

    var conn = new C.Connection({
        path: '/ws/agent',
        onState: function (s, info) {
            if (s === 'connecting' || s === 'open') setConn('connecting', 'conn_connecting');
            else if (s === 'waiting') setConn('offline', 'conn_retry', { s: Math.ceil(info.delay / 1000) });
            else if (s === 'stopped') setConn('offline', 'conn_offline');
        },
        onOpen: function () {
            welcomed = false;
            helloCode = desired;
            conn.send({ type: 'hello', token: token, code: helloCode });
            clearTimeout(helloTimer);
            helloTimer = setTimeout(function () { if (!welcomed) conn.drop(4000, 'no welcome'); }, 10000);
        },
        onFrame: onFrame,
        onClose: function (ev) {
            welcomed = false;
            clearTimeout(helloTimer);
            convs.forEach(function (e) { clearTimeout(e.ackTimer); e.ackTimer = null; e.log.acked = 0; });
            if (ev.code === 1008) {
                sess.del(K.token);
                showTokenPanel(t('token_refused') + (ev.reason ? ' (' + ev.reason + ')' : '') + '.');
                return false;
            }
            return true;
        }
    });

    /* ------------------------------------------------------------------ language */
    /* Every text on screen again in the current language (static ones, lists, transcripts). */
    function relocalize() {
        I.apply(document);
        ui.lang.value = I.locale();
        setConn(connState.state, connState.key, connState.vars);
        renderToggle();
        renderNotifyBtn();
        renderQueues();
        renderPickers();
        convs.forEach(function (e) {
            e.container.querySelectorAll('.msg').forEach(function (n) {
                var seq = Number(n.dataset.seq || 0);
                var f = seq ? e.log.get(seq) : null;
                if (f) localize(n, f);
                else if (n.dataset.state) localize(n, { type: 'text', role: 'agent', sender_id: view.me });
            });
            renderConvItem(e);
        });
        if (selected && convs.has(selected)) { renderHeader(); renderTyping(); } else renderNothingSelected();
        if (ui.closeDialog.open) {
            Array.from(ui.closeResolution.options).forEach(function (o) { o.textContent = codeLabel('res_', o.value); });
            renderCloseHint();
        }
        if (suggest.open) renderSuggest();
        updateTitle();
    }

    /* ------------------------------------------------------------------ keyboard */
    function typingTarget(ev) {
        var n = ev.target;
        return n && (n.tagName === 'INPUT' || n.tagName === 'TEXTAREA' || n.tagName === 'SELECT' || n.isContentEditable);
    }

    function onShortcut(ev) {
        if (document.body.dataset.auth !== 'in' || ev.defaultPrevented) return;
        if (ui.closeDialog.open || ui.shortcutsDialog.open) return; /* the dialog has the keys (Esc) */
        if (ev.altKey && !ev.ctrlKey && !ev.metaKey) {
            var act = { ArrowDown: function () { selectStep(1); }, ArrowUp: function () { selectStep(-1); },
                KeyR: function () { if (!ui.input.disabled) ui.input.focus(); }, KeyE: openClose,
                KeyT: function () { if (!ui.transferFields.disabled) ui.transferTarget.focus(); } }[ev.key.indexOf('Arrow') === 0 ? ev.key : ev.code];
            if (act) { ev.preventDefault(); act(); }
            return;
        }
        if (ev.key === '?' && !ev.ctrlKey && !ev.metaKey && !typingTarget(ev)) {
            ev.preventDefault();
            ui.shortcutsDialog.showModal();
        }
    }

    /* ------------------------------------------------------------------ wiring */
    ui.toggle.addEventListener('click', function () {
        setStatus(desired === 'online' ? 'away' : 'online');
        sendPresence();
    });
    /* another tab of this agent changed the status (its presence is the agent's): show it */
    window.addEventListener('storage', function (ev) {
        if (ev.key === statusKey() && (ev.newValue === 'online' || ev.newValue === 'away')) {
            desired = ev.newValue;
            renderToggle();
        }
    });
    ui.logout.addEventListener('click', function () {
        conn.stop();
        sess.del(K.token);
        local.del(statusKey());
        location.hash = '';
        location.reload();
    });
    ui.tokenForm.addEventListener('submit', function (ev) {
        ev.preventDefault();
        var tk = ui.tokenInput.value.trim();
        if (!tk) { showTokenPanel(t('paste_first')); return; }
        sess.set(K.token, tk);
        ui.tokenInput.value = '';
        useToken(tk);
    });
    ui.form.addEventListener('submit', function (ev) { ev.preventDefault(); submit(); });
    ui.input.addEventListener('keydown', function (ev) {
        if (ev.isComposing) return;
        if (suggestKey(ev)) { ev.preventDefault(); ev.stopPropagation(); return; }
        if (ev.key === 'Enter' && !ev.shiftKey) { ev.preventDefault(); submit(); }
    });
    ui.input.addEventListener('input', function () { typing(); renderSuggest(); });
    ui.input.addEventListener('blur', function () { closeSuggest(); });
    ui.closeBtn.addEventListener('click', openClose);
    ui.closeForm.addEventListener('submit', function (ev) { ev.preventDefault(); confirmClose(); });
    ui.closeCancel.addEventListener('click', function () { ui.closeDialog.close(); });
    ui.closeResolution.addEventListener('change', renderCloseHint);
    ui.transferForm.addEventListener('submit', function (ev) { ev.preventDefault(); submitTransfer(); });
    ui.classifyForm.addEventListener('submit', function (ev) { ev.preventDefault(); submitClassify(); });
    ui.transferTarget.addEventListener('focus', function () { loadDesk(false); });
    ui.cannedSelect.addEventListener('change', insertCanned);
    ui.kindAgent.addEventListener('change', renderPickers);
    ui.kindQueue.addEventListener('change', renderPickers);
    ui.shortcutsBtn.addEventListener('click', function () { ui.shortcutsDialog.showModal(); });
    ui.notifyBtn.addEventListener('click', function () { A.request(function () { renderNotifyBtn(); }); });
    ui.lang.addEventListener('change', function () { if (I.setLocale(ui.lang.value)) relocalize(); });
    document.addEventListener('keydown', onShortcut);
    document.addEventListener('visibilitychange', function () {
        var e = selected && convs.get(selected);
        if (!document.hidden && e) { e.unread = 0; renderConvItem(e); sendRead(e); }
    });
    window.addEventListener('focus', function () {
        var e = selected && convs.get(selected);
        if (e && e.unread) { e.unread = 0; renderConvItem(e); }
    });
    setInterval(tick, 1000);
    /* loads and who is online change all day: read the lists again every 15 s while connected */
    setInterval(function () { if (welcomed && !document.hidden) loadDesk(false); }, 15000);

    I.apply(document);
    ui.lang.value = I.locale();
    setConn('offline', 'conn_offline');
    renderToggle();
    renderNotifyBtn();
    renderPickers();
    renderQueues();
    renderNothingSelected();
    updateTitle();
    var t0 = readToken();
    if (t0) useToken(t0); else showTokenPanel('');
    window.addEventListener('hashchange', function () {
        var tk = readToken();
        if (tk && tk !== token) { conn.stop(); location.reload(); }
    });
})();
