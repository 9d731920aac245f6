/* agent.js -- the chatgw agent console (agent.html). Needs chatcore.js (window.ChatGW).
 *
 * The agent token comes from the address (#token=…, removed from the address bar at once) or from
 * the paste box, and is kept in sessionStorage (this tab only). The console connects to /ws/agent,
 * keeps every assigned conversation's transcript by seq (de-duplicated: after `welcome` the gateway
 * sends each assigned conversation from seq 1), acknowledges what it received, and re-sends
 * unacknowledged replies with the same cmid after a reconnect. pick, close, transfer and classify
 * carry a cmid: the router's refusal comes back later as an error naming it (transfer and classify
 * refusals are shown next to their controls; their success is the logged `transferred` /
 * `classified` event). System texts without seq are notices for this agent (offer timeout, SLA).
 * The canned replies of the open conversation's queue are fetched once per queue from
 * GET /canned?queue=… with the same token (Authorization: Bearer); choosing one inserts its text
 * into the composer at the cursor, to be edited and sent as an ordinary reply.
 * The agent's status (online / away) is the agent's choice: a console the agent has not set yet
 * connects away. The choice is kept in localStorage per agent id (so a reload, a reconnect or a
 * new tab of this browser keeps it; signing out forgets it) and said in every hello (its code),
 * so that connecting never makes the agent online by itself; an away set by the desk (missed
 * offers) is kept the same way. */
(function () {
    'use strict';
    var C = window.ChatGW;
    var el = C.el;
    var sess = C.storage('sessionStorage');
    var local = C.storage('localStorage');
    var K = { token: 'chatgw_agent_token', status: 'chatgw_agent_status:' };
    var MAX_TEXT = 32768;

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
        classifyBtn: $('classify-btn'), classifyError: $('classify-error'),
        agentOptions: $('agent-options'), queueOptions: $('queue-options'),
        cannedFields: $('canned-fields'), cannedSelect: $('canned-select'), cannedStatus: $('canned-status')
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
    var agents = new Map();      /* other agents seen in assignments: id -> name (transfer suggestions) */
    var canned = new Map();      /* queue -> {state: 'loading' | 'ok' | 'error', replies: [{name, text}], error} */
    var selected = null;
    var welcomed = false, helloTimer = null, errTimer = null, lastTypingSent = 0;
    var baseTitle = document.title;

    /* ------------------------------------------------------------------ token */
    function readToken() {
        var m = /(?:^#|&)token=([^&]+)/.exec(location.hash || '');
        if (m) {
            var t = '';
            try { t = decodeURIComponent(m[1]); } catch (e) { t = m[1]; }
            sess.set(K.token, t.trim());
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

    function useToken(t) {
        token = t;
        var claims = C.jwtPayload(t) || {};
        ui.name.textContent = (claims.name || claims.sub || 'Agent') +
            (Array.isArray(claims.skills) && claims.skills.length ? ' · ' + claims.skills.join(', ') : '');
        view.me = claims.sub || view.me;
        loadStatus();
        document.body.dataset.auth = 'in';
        ui.tokenPanel.hidden = true;
        ui.console.hidden = false;
        conn.start();
    }

    /* ------------------------------------------------------------------ small UI helpers */
    function setConn(state, text) {
        ui.conn.dataset.state = state;
        ui.conn.textContent = text;
    }

    function showError(text, kind) {
        ui.error.textContent = text;
        ui.error.dataset.kind = kind || 'error';
        ui.error.hidden = false;
        clearTimeout(errTimer);
        errTimer = setTimeout(function () { ui.error.hidden = true; }, 10000);
    }

    function renderToggle() {
        ui.toggle.dataset.status = desired;
        ui.toggle.setAttribute('aria-pressed', desired === 'online' ? 'true' : 'false');
        ui.toggle.textContent = desired === 'online' ? 'Online' : 'Away · Go online';
        ui.toggle.title = desired === 'online' ? 'You receive new conversations. Click to go away.'
            : 'You receive no new conversations. Click to go online.';
    }

    function sendPresence() {
        if (welcomed) conn.send({ type: 'presence', code: desired });
    }

    function updateTitle() {
        var n = 0;
        convs.forEach(function (e) { n += e.unread; });
        document.title = (n ? '(' + n + ') ' : '') + baseTitle;
    }

    function nearBottom() { return ui.log.scrollHeight - ui.log.scrollTop - ui.log.clientHeight < 80; }
    function scrollDown(force) { if (force || nearBottom()) ui.log.scrollTop = ui.log.scrollHeight; }

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
                el('h3', null, el('span', { text: q }), el('span', { className: 'count', text: String(items.length) })));
            if (!items.length) group.appendChild(el('p', { className: 'empty', text: 'No one waiting' }));
            items.forEach(function (it) {
                if (!it || typeof it.conv !== 'string') return;
                used.add(it.conv);
                group.appendChild(queueItem(it));
            });
            frag.appendChild(group);
        });
        if (!names.length) frag.appendChild(el('p', { className: 'empty', text: 'No queue information yet.' }));
        queueNodes.forEach(function (n, conv) { if (!used.has(conv)) queueNodes.delete(conv); });
        ui.queueList.replaceChildren(frag);
        ui.queueCount.textContent = String(total);
        tick();
        renderOptions();
    }

    /* Suggestions for the transfer target: the queues of this agent's skills (from the queue
     * snapshots) and of its conversations, and the other agents seen in assignments. */
    function renderOptions() {
        var qs = new Set(queues.keys());
        convs.forEach(function (e) { if (e.queue) qs.add(e.queue); });
        qs.delete('default');
        ui.queueOptions.replaceChildren.apply(ui.queueOptions, Array.from(qs).sort().map(function (q) {
            return el('option', { value: q });
        }));
        ui.agentOptions.replaceChildren.apply(ui.agentOptions, Array.from(agents.keys()).sort().map(function (id) {
            return el('option', { value: id, label: agents.get(id) || id });
        }));
    }

    function noteAgent(f) {
        if (!f.agent_id || f.agent_id === view.me) return;
        var name = f.agent_name || f.agent_id;
        if (agents.get(f.agent_id) === name) return;
        agents.set(f.agent_id, name);
        renderOptions();
    }

    function queueItem(it) {
        var n = queueNodes.get(it.conv);
        if (!n) {
            n = el('div', { className: 'queue-item', dataset: { conv: it.conv } });
            n.pick = el('button', { type: 'button', className: 'pick-btn', dataset: { conv: it.conv },
                text: 'Pick', on: { click: function () { pick(it.conv); } } });
            queueNodes.set(it.conv, n);
        }
        n.replaceChildren(
            el('div', { className: 'qi-top' },
                el('span', { className: 'qi-pos', text: '#' + (it.position || '?') }),
                el('span', { className: 'chip', text: it.channel || 'web' }),
                it.priority > 0 ? el('span', { className: 'chip' + (it.priority >= 7 ? ' prio' : ''),
                    title: 'Priority (0-9, higher is served first)', text: 'prio ' + it.priority }) : null,
                el('span', { className: 'wait', dataset: { since: sinceMs(it.since) || '' }, title: 'Waiting time' })),
            el('div', { className: 'qi-preview', text: it.preview || '(no text yet)' }),
            n.pick);
        var busy = picking.has(it.conv);
        n.pick.disabled = busy;
        n.pick.textContent = busy ? 'Picking…' : 'Pick';
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
        if (n) { n.pick.disabled = true; n.pick.textContent = 'Picking…'; }
    }

    function donePicking(conv) {
        clearTimeout(picking.get(conv));
        picking.delete(conv);
        var n = queueNodes.get(conv);
        if (n) { n.pick.disabled = false; n.pick.textContent = 'Pick'; }
    }

    /* ------------------------------------------------------------------ conversations */
    function ensureConv(conv) {
        var e = convs.get(conv);
        if (e) return e;
        e = { conv: conv, log: new C.ConvLog(conv, 0), pending: new Map(), state: 'assigned',
            customer: '', channel: '', queue: '', category: '', preview: '', unread: 0, typingUntil: 0,
            closing: null, transfer: { timer: null, error: '' }, classify: { timer: null, error: '' },
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
                el('span', { className: 'ci-name', text: e.customer || 'Customer ' + e.conv.slice(0, 6) }),
                e.state !== 'assigned' ? el('span', { className: 'chip state', text: e.state === 'closed' ? 'closed' : 'transferred' }) : null,
                e.unread ? el('span', { className: 'badge', text: String(e.unread) }) : null,
                e.state !== 'assigned' ? el('button', { type: 'button', className: 'dismiss-btn',
                    title: 'Remove from the list', 'aria-label': 'Remove from the list', text: '×',
                    on: { click: function (ev) { ev.stopPropagation(); dismiss(e.conv); } } }) : null),
            el('div', { className: 'ci-preview' + (typing ? ' typing' : ''), text: typing ? 'typing…' : (e.preview || ' ') }));
        var open = 0;
        convs.forEach(function (x) { if (x.state === 'assigned') open++; });
        ui.convCount.textContent = String(open);
        updateTitle();
    }

    /* Forget a closed (or transferred) conversation: it leaves the list until it comes back. */
    function dismiss(conv) {
        var e = convs.get(conv);
        if (!e || e.state === 'assigned') return;
        convs.delete(conv);
        e.item.remove();
        if (selected === conv) {
            selected = null;
            ui.log.replaceChildren(el('p', { className: 'empty', text: 'Pick a waiting customer or select one of your conversations.' }));
            ui.title.textContent = 'No conversation selected';
            ui.sub.textContent = '';
            ui.closeBtn.disabled = true;
            ui.input.disabled = true;
            ui.send.disabled = true;
            ui.typing.hidden = true;
            renderTools();
        }
        ui.convEmpty.hidden = convs.size > 0;
        updateTitle();
    }

    function select(conv) {
        var e = convs.get(conv);
        if (!e) return;
        var prev = selected && convs.get(selected);
        if (selected !== conv) {
            /* what was typed into the transfer / category controls was for the other conversation */
            ui.transferTarget.value = '';
            ui.transferNote.value = '';
            ui.classifyCode.value = '';
        }
        selected = conv;
        if (prev) renderConvItem(prev);
        e.unread = 0;
        renderConvItem(e);
        ui.log.replaceChildren(e.container);
        renderHeader();
        renderTyping();
        scrollDown(true);
        if (!ui.input.disabled) ui.input.focus();
    }

    function renderHeader() {
        var e = selected && convs.get(selected);
        if (!e) return;
        ui.title.textContent = e.customer || 'Customer ' + e.conv.slice(0, 6);
        var id = e.identity || {};
        ui.sub.textContent = [e.channel || 'web', e.queue ? 'queue ' + e.queue : '',
            id.order_no ? 'order ' + id.order_no : '', id.account ? 'account ' + id.account : '',
            id.tier ? 'tier ' + id.tier : '', id.locale || '', e.category ? 'category ' + e.category : '',
            'conv ' + e.conv,
            e.state === 'closed' ? 'closed' : e.state === 'away' ? 'transferred' : 'assigned to you'].filter(Boolean).join(' · ');
        var open = e.state === 'assigned';
        ui.closeBtn.disabled = !open || !!e.closing;
        ui.closeBtn.textContent = e.closing ? 'Closing…' : 'Close conversation';
        ui.input.disabled = !open;
        ui.send.disabled = !open;
        ui.input.placeholder = open ? 'Write a reply… (Enter sends, Shift+Enter for a new line)'
            : 'This conversation is ' + (e.state === 'closed' ? 'closed' : 'no longer yours') + '.';
        renderTools();
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
        ui.transferBtn.textContent = e.transfer.timer ? 'Transferring…' : 'Transfer';
        ui.classifyBtn.disabled = !!e.classify.timer;
        ui.classifyBtn.textContent = e.classify.timer ? 'Saving…' : 'Re-classify';
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
        canned.set(q, { state: 'loading', replies: [], error: '' });
        var done = function (state, replies, error) {
            canned.set(q, { state: state, replies: replies, error: error });
            var e = selected && convs.get(selected);
            if (e && e.queue === q) renderCanned();
        };
        fetch('/canned?queue=' + encodeURIComponent(q), {
            headers: { Authorization: 'Bearer ' + token }, cache: 'no-store', credentials: 'omit'
        }).then(function (r) {
            if (!r.ok) {
                var why = { 401: 'the token was refused', 403: 'this queue is not among your skills',
                    503: 'the desk is unavailable' }[r.status] || 'HTTP ' + r.status;
                done('error', [], 'Canned replies could not be loaded: ' + why + '.');
                return null;
            }
            return r.json().then(function (j) {
                var list = j && Array.isArray(j.replies) ? j.replies.filter(function (x) {
                    return x && typeof x.name === 'string' && typeof x.text === 'string';
                }) : [];
                done('ok', list, '');
            });
        }).catch(function () { done('error', [], 'Canned replies could not be loaded: network error.'); });
    }

    /* The picker for the open conversation: its queue's replies (loaded on first use). */
    function renderCanned() {
        var e = selected && convs.get(selected);
        var q = e && e.queue;
        var c = q ? canned.get(q) : null;
        if (q && (!c || c.state === 'error') && ui.cannedSelect.dataset.queue !== q) loadCanned(q);
        c = q ? canned.get(q) : null;
        var key = q ? q + ':' + (c ? c.state : '') : '';
        if (ui.cannedSelect.dataset.key !== key) {
            ui.cannedSelect.dataset.key = key;
            ui.cannedSelect.dataset.queue = q || '';
            var opts = [el('option', { text: 'Choose a reply…' })];
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
        var status = !q ? 'No queue known for this conversation.'
            : !c || c.state === 'loading' ? 'Loading…'
            : c.state === 'error' ? c.error
            : c.replies.length ? '' : 'No canned replies for queue ' + q + '.';
        ui.cannedStatus.textContent = status;
        ui.cannedStatus.hidden = !status;
    }

    /* Put the chosen reply's text into the composer at the cursor (replacing a selection). */
    function insertCanned() {
        var e = selected && convs.get(selected);
        var c = e && e.queue ? canned.get(e.queue) : null;
        var r = c && c.state === 'ok' ? c.replies[Number(ui.cannedSelect.value)] : null;
        ui.cannedSelect.value = '';
        if (!r || ui.input.disabled) return;
        var v = ui.input.value;
        var start = ui.input.selectionStart == null ? v.length : ui.input.selectionStart;
        var end = ui.input.selectionEnd == null ? v.length : ui.input.selectionEnd;
        var next = (v.slice(0, start) + r.text + v.slice(end)).slice(0, MAX_TEXT);
        ui.input.value = next;
        ui.input.focus();
        var at = Math.min(start + r.text.length, next.length);
        ui.input.setSelectionRange(at, at);
    }

    function renderTransferKind() {
        var q = ui.kindQueue.checked;
        ui.transferTargetLabel.textContent = q ? 'Queue' : 'Agent id';
        ui.transferTarget.setAttribute('list', q ? 'queue-options' : 'agent-options');
        ui.transferTarget.placeholder = q ? 'e.g. tech_support' : 'e.g. bob';
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
        else if (!welcomed) st.error = 'Not connected: try again in a moment.';
        if (st.error) { renderTools(); return false; }
        frame.conv = e.conv;
        if (!command(frame)) { st.error = 'Not connected: try again in a moment.'; renderTools(); return false; }
        st.timer = setTimeout(function () { st.timer = null; if (e.conv === selected) renderTools(); }, 15000);
        renderTools();
        return true;
    }

    function submitTransfer() {
        var toQueue = ui.kindQueue.checked;
        var target = ui.transferTarget.value.trim();
        var note = ui.transferNote.value.trim();
        var frame = { type: 'transfer' };
        frame[toQueue ? 'queue' : 'agent_id'] = target;
        if (note) frame.text = note;
        toolCommand('transfer', frame, target ? '' : toQueue ? 'Enter the queue to transfer to.'
            : 'Enter the id of the agent to transfer to.');
        if (!target) ui.transferTarget.focus();
    }

    function submitClassify() {
        var code = ui.classifyCode.value.trim();
        toolCommand('classify', { type: 'classify', code: code }, code ? '' : 'Enter the new category.');
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

    function renderTyping() {
        var e = selected && convs.get(selected);
        var on = !!e && e.typingUntil > Date.now();
        ui.typing.hidden = !on;
        ui.typing.textContent = on ? (e.customer || 'The customer') + ' is typing…' : '';
    }

    function applyEvent(e, f, live) {
        switch (f.type) {
        case 'assigned':
            e.state = f.agent_id && view.me && f.agent_id !== view.me ? 'away' : 'assigned';
            if (f.queue) e.queue = f.queue;
            noteAgent(f);
            if (e.state === 'away') toolDone(e, 'transfer'); /* handed over: a transfer is done */
            break;
        case 'transferred':
            if (!(f.agent_id && f.agent_id === view.me)) e.state = 'away';
            noteAgent(f);
            toolDone(e, 'transfer');
            break;
        case 'classified':
            if (f.code) e.category = f.code;
            toolDone(e, 'classify');
            break;
        case 'closed':
            e.state = 'closed';
            if (e.closing) { clearTimeout(e.closing); e.closing = null; }
            break;
        case 'text': case 'attachment':
            if (f.role === 'customer') {
                if (f.sender_name) e.customer = f.sender_name;
                else if (!e.customer && f.sender_id) e.customer = 'Customer ' + String(f.sender_id).slice(0, 6);
                if (f.channel) e.channel = f.channel;
                if (f.identity && typeof f.identity === 'object') e.identity = f.identity;
                e.typingUntil = 0;
            }
            if (f.role === 'customer' || f.role === 'agent' || f.role === 'bridge' || !e.preview) {
                e.preview = (f.role === 'agent' ? 'You: ' : '') + (f.text || '[attachment]');
            }
            if (live && f.role !== 'agent' && (e.conv !== selected || document.hidden)) e.unread++;
            break;
        }
        renderConvItem(e);
        if (e.conv === selected) { renderHeader(); renderTyping(); }
    }

    function onAssigned(f) {
        if (!f.conv) return;
        var mine = !f.agent_id || !view.me || f.agent_id === view.me;
        if (!mine && !convs.has(f.conv)) return;
        var e = ensureConv(f.conv);
        if (f.queue && f.queue !== e.queue) { e.queue = f.queue; renderOptions(); }
        if (f.seq > 0) onLogged(f);
        else if (mine && e.state !== 'closed') { e.state = 'assigned'; renderConvItem(e); }
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
                var t = e.container.querySelector('.msg[data-seq="' + f.seq + '"] .msg-time');
                if (t) t.textContent = C.fmtTime(f.ts);
            }
            return;
        } else {
            e.log.add(f);
            C.insertBySeq(e.container, C.renderFrame(f, view), f.seq);
        }
        applyEvent(e, f, welcomed);
        scheduleAck(e);
        if (e.conv === selected) scrollDown(stick || f.role === 'agent');
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
        if (new TextEncoder().encode(text).length > MAX_TEXT) { showError('The reply is too long (32 KB at most).'); return; }
        ui.input.value = '';
        var p = { cmid: C.uuid(), text: text, cts: Date.now(), conv: e.conv };
        p.node = C.renderPending(p, view);
        p.node.appendChild(el('button', { type: 'button', className: 'retry-btn', text: 'Retry',
            on: { click: function () { transmit(p); } } }));
        e.container.appendChild(p.node);
        e.pending.set(p.cmid, p);
        transmit(p);
        scrollDown(true);
    }

    function transmit(p) {
        clearTimeout(p.timer);
        C.setPendingState(p.node, 'pending');
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
        C.setPendingState(p.node, 'sent');
        if (frame && frame.ts) { var t = p.node.querySelector('.msg-time'); if (t) t.textContent = C.fmtTime(frame.ts); }
        C.insertBySeq(e.container, p.node, seq);
        applyEvent(e, f, false);
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
        if (!welcomed || !conn.send(frame)) { showError('Not connected: try again in a moment.'); return false; }
        commands.set(frame.cmid, { type: frame.type, conv: frame.conv });
        setTimeout(function () { commands.delete(frame.cmid); }, 60000);
        return true;
    }

    function closeSelected() {
        var e = selected && convs.get(selected);
        if (!e || e.state !== 'assigned' || e.closing) return;
        if (!command({ type: 'close', conv: e.conv, code: 'resolved' })) return;
        e.closing = setTimeout(function () { e.closing = null; if (e.conv === selected) renderHeader(); }, 10000);
        renderHeader();
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
            setConn('online', 'Connected');
            ui.error.hidden = true;
            /* the hello said the status; changed since (clicked while connecting): say it now */
            if (desired !== helloCode) sendPresence();
            /* the gateway now re-sends every assigned conversation from seq 1: de-duplicated by seq */
            convs.forEach(function (e) { e.pending.forEach(transmit); });
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
            showTokenPanel('The gateway refused this token' + (f.text ? ' (' + f.text + ')' : '') +
                '. Paste a valid agent token.');
            return;
        }
        var hit = f.cmid ? findPending(f.cmid, f.conv) : null;
        if (hit) {
            if (f.retry) hit.p.timer = setTimeout(function () { transmit(hit.p); }, 2000 + Math.random() * 1000);
            else C.setPendingState(hit.p.node, 'failed', C.errorText(f));
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
            st.error = (cmd.type === 'transfer' ? 'Transfer refused: ' : 'Category not changed: ') +
                (f.text || C.errorText(f));
            if (te.conv === selected) renderTools();
            return;
        }
        var conv = (cmd && cmd.conv) || f.conv;
        if (conv && picking.has(conv) && (!cmd || cmd.type === 'pick')) donePicking(conv);
        var e = conv && convs.get(conv);
        if (e && e.closing && (!cmd || cmd.type === 'close')) { clearTimeout(e.closing); e.closing = null; }
        if (selected) renderHeader();
        showError(cmd ? ({ pick: 'Could not pick this conversation: ', close: 'Could not close it: ',
            transfer: 'Transfer refused: ', classify: 'Category not changed: ' }[cmd.type] || '') +
            (f.text || C.errorText(f)) : C.errorText(f));
    }

    var conn = new C.Connection({
        path: '/ws/agent',
        onState: function (s, info) {
            if (s === 'connecting' || s === 'open') setConn('connecting', 'Connecting…');
            else if (s === 'waiting') setConn('offline', 'Offline · retry in ' + Math.ceil(info.delay / 1000) + ' s');
            else if (s === 'stopped') setConn('offline', 'Offline');
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
                showTokenPanel('The gateway refused this token' + (ev.reason ? ' (' + ev.reason + ')' : '') + '.');
                return false;
            }
            return true;
        }
    });

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
        var t = ui.tokenInput.value.trim();
        if (!t) { showTokenPanel('Paste a token first.'); return; }
        sess.set(K.token, t);
        ui.tokenInput.value = '';
        useToken(t);
    });
    ui.form.addEventListener('submit', function (ev) { ev.preventDefault(); submit(); });
    ui.input.addEventListener('keydown', function (ev) {
        if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); submit(); }
    });
    ui.input.addEventListener('input', typing);
    ui.closeBtn.addEventListener('click', closeSelected);
    ui.transferForm.addEventListener('submit', function (ev) { ev.preventDefault(); submitTransfer(); });
    ui.classifyForm.addEventListener('submit', function (ev) { ev.preventDefault(); submitClassify(); });
    ui.cannedSelect.addEventListener('change', insertCanned);
    ui.kindAgent.addEventListener('change', renderTransferKind);
    ui.kindQueue.addEventListener('change', renderTransferKind);
    document.addEventListener('visibilitychange', function () {
        if (!document.hidden && selected && convs.has(selected)) { convs.get(selected).unread = 0; renderConvItem(convs.get(selected)); }
    });
    setInterval(tick, 1000);

    renderToggle();
    renderTransferKind();
    renderQueues();
    var t0 = readToken();
    if (t0) useToken(t0); else showTokenPanel('');
    window.addEventListener('hashchange', function () {
        var t = readToken();
        if (t && t !== token) { conn.stop(); location.reload(); }
    });
})();
