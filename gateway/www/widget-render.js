/* widget-render.js -- how the customer widget shows a conversation: messages and events in the
 * widget's language, links, read ticks, date separators, the survey's stars. Needs chatcore.js.
 *
 * window.ChatGWRender:
 *   frame(f, ctx)         a logged frame as a .msg element (data-seq, data-role, data-type, data-ts)
 *   pending(p, ctx)       an outgoing message not acknowledged yet (data-state="pending")
 *   setState(node, state, reason, ctx)  'pending' | 'failed' | 'sent' | 'read' (the tick)
 *   linkify(text)         a fragment: text nodes, and <a> for http:// and https:// URLs only
 *   dateSeparators(section, ctx)  one .date-sep before the first message of each day
 *   dayLabel(ms, ctx)     "Today", "Yesterday" or the date, in ctx's language
 * ctx: {t: translator (widget-i18n.js), locale, onRate(surveyFrame, n)}.
 * Everything from the network goes in as text (textContent, attribute values), never as HTML. */
(function (global) {
    'use strict';
    var C = global.ChatGW;
    var el = C.el;

    /* http(s) URLs in free text; what a sentence puts after one (.,;:!?) is not part of it */
    var URL_RE = /\bhttps?:\/\/[^\s<>"'\u3000-\u303f\uff01-\uff0f]+/gi;
    var TRAIL_RE = /[.,;:!?)\]}]+$/;

    /* The URL as a link target, or null: only http: and https:, parsed by the browser. */
    function safeHref(u) {
        try {
            var url = new URL(u);
            return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null;
        } catch (e) { return null; }
    }

    function link(href, label) {
        return el('a', { href: href, target: '_blank', rel: 'noopener noreferrer nofollow', text: label });
    }

    function linkify(text) {
        var frag = document.createDocumentFragment();
        var last = 0, m;
        URL_RE.lastIndex = 0;
        while ((m = URL_RE.exec(text)) !== null) {
            var raw = m[0].replace(TRAIL_RE, '');
            var href = safeHref(raw);
            if (!href) continue;
            if (m.index > last) frag.appendChild(document.createTextNode(text.slice(last, m.index)));
            frag.appendChild(link(href, raw));
            last = m.index + raw.length;
            URL_RE.lastIndex = last;
        }
        if (last < text.length) frag.appendChild(document.createTextNode(text.slice(last)));
        return frag;
    }

    function eventText(f, t) {
        switch (f.type) {
        case 'assigned':
        case 'join': return t('joined', { name: f.agent_name || f.sender_name || t('an_agent') });
        case 'leave': return t('left', { name: f.agent_name || f.sender_name || t('someone') });
        case 'transferred':
            return f.agent_name || f.queue ? t('transferred_to', { to: f.agent_name || f.queue }) : t('transferred');
        case 'closed': return t('closed');
        case 'survey': return t('survey');
        case 'rating': return t('rated', { n: f.rating || '?' });
        default: return '';
        }
    }

    /* The survey's five stars: a radio group, large, usable by keyboard (arrows move and choose,
     * Enter or Space sends, 1-5 send at once) and by pointer. */
    function stars(f, ctx) {
        var t = ctx.t;
        var group = el('div', { className: 'rating', role: 'radiogroup', 'aria-label': t('stars') });
        var buttons = [];
        var chosen = 0;
        function mark(n, focus) {
            chosen = n;
            buttons.forEach(function (b, i) {
                b.setAttribute('aria-checked', i + 1 === n ? 'true' : 'false');
                b.tabIndex = i + 1 === (n || 1) ? 0 : -1;
                b.classList.toggle('lit', i < n);
            });
            if (focus && buttons[n - 1]) buttons[n - 1].focus();
        }
        function send(n) { if (!group.dataset.sent) ctx.onRate(f, n); }
        for (var n = 1; n <= 5; n++) {
            buttons.push(el('button', {
                type: 'button', className: 'rate-btn', role: 'radio', 'aria-checked': 'false',
                dataset: { rating: n }, 'aria-label': t('rate_n', { n: n }), text: '★', tabindex: n === 1 ? '0' : '-1',
                on: { click: (function (r) { return function () { mark(r); send(r); }; })(n) }
            }));
        }
        buttons.forEach(function (b) { group.appendChild(b); });
        group.addEventListener('keydown', function (e) {
            if (group.dataset.sent) return;
            var k = e.key;
            /* the star in hand: the chosen one, else the focused one */
            var cur = chosen || Math.max(1, buttons.indexOf(document.activeElement) + 1);
            if (k === 'ArrowRight' || k === 'ArrowUp') mark(Math.min(5, cur + 1), true);
            else if (k === 'ArrowLeft' || k === 'ArrowDown') mark(Math.max(1, cur - 1), true);
            else if (k === 'Home') mark(1, true);
            else if (k === 'End') mark(5, true);
            else if (k === 'Enter' || k === ' ') { mark(cur); send(cur); }
            else if (/^[1-5]$/.test(k)) { mark(Number(k), true); send(Number(k)); }
            else return;
            e.preventDefault();
        });
        return group;
    }

    /* Disable a survey's stars once answered, lighting n of them. */
    function rated(section, n) {
        section.querySelectorAll('.rating').forEach(function (g) {
            g.dataset.sent = '1';
            g.querySelectorAll('.rate-btn').forEach(function (b) {
                b.disabled = true;
                b.classList.toggle('chosen', Number(b.dataset.rating) <= n);
            });
        });
    }

    function frame(f, ctx) {
        var t = ctx.t;
        var role = f.role || 'system';
        var data = { seq: f.seq || undefined, role: role, type: f.type, cmid: f.cmid || undefined,
            conv: f.conv || undefined, ts: f.ts || f.cts || undefined };
        if (f.type === 'classified' || f.type === 'escalated') {
            /* desk-only events: kept in the transcript (by seq) but invisible to the customer */
            return el('div', { className: 'msg event event-' + f.type, dataset: data, hidden: true, 'aria-hidden': 'true' });
        }
        if (f.type !== 'text' && f.type !== 'attachment') {
            var ev = el('div', { className: 'msg event event-' + f.type, dataset: data, role: 'status' },
                el('span', { className: 'event-text', text: eventText(f, t) }),
                f.ts ? el('span', { className: 'msg-time', text: C.fmtTime(f.ts) }) : null);
            if (f.type === 'survey' && ctx.onRate) ev.appendChild(stars(f, ctx));
            return ev;
        }
        var side = role === 'system' || role === 'bot' ? 'center' : role === 'customer' ? 'mine' : 'theirs';
        var name = side === 'mine' ? t('you') : f.sender_name || t(role === 'agent' ? 'agent' : role);
        var bubble = el('div', { className: 'msg-bubble' });
        if (typeof f.text === 'string' && f.text !== '') {
            var body = el('div', { className: 'msg-text' });
            body.appendChild(linkify(f.text));
            bubble.appendChild(body);
        }
        if (Array.isArray(f.attachments) && f.attachments.length) {
            var list = el('ul', { className: 'msg-att' });
            f.attachments.forEach(function (a) {
                if (!a || typeof a !== 'object') return;
                var label = String(a.name || a.url || t('attachment'));
                var href = typeof a.url === 'string' ? safeHref(a.url) : null;
                list.appendChild(el('li', null, href ? link(href, label) : el('span', { text: label })));
            });
            bubble.appendChild(list);
        }
        return el('div', { className: 'msg msg-' + side + ' role-' + role, dataset: data },
            side === 'center' ? null : el('div', { className: 'msg-meta' },
                el('span', { className: 'msg-name', text: name }),
                el('span', { className: 'msg-time', text: C.fmtTime(f.ts || f.cts) })),
            bubble,
            side === 'mine' ? el('div', { className: 'msg-status', 'aria-live': 'off' }) : null);
    }

    function pending(p, ctx) {
        var node = frame({ type: 'text', role: 'customer', text: p.text, cmid: p.cmid, cts: p.cts }, ctx);
        setState(node, 'pending', '', ctx);
        return node;
    }

    /* The delivery state of one of the customer's messages: "Sending…", "Not sent: why", one
     * tick (stored) or two (the agent has read it). */
    function setState(node, state, reason, ctx) {
        var t = ctx.t;
        node.dataset.state = state === 'sent' || state === 'read' ? '' : state;
        if (state === 'sent' || state === 'read') node.dataset.tick = state;
        else delete node.dataset.tick;
        var st = node.querySelector('.msg-status');
        if (!st) return;
        if (state === 'pending') st.textContent = t('sending');
        else if (state === 'failed') st.textContent = t('not_sent') + (reason ? ': ' + reason : '');
        else {
            st.textContent = state === 'read' ? '✓✓' : '✓';
            st.title = t(state);
            st.setAttribute('aria-label', t(state));
        }
    }

    function startOfDay(ms) { var d = new Date(ms); d.setHours(0, 0, 0, 0); return d.getTime(); }

    function dayLabel(ms, ctx) {
        var today = startOfDay(Date.now()), day = startOfDay(ms);
        if (day === today) return ctx.t('today');
        if (today - day <= 26 * 3600 * 1000 && today > day) return ctx.t('yesterday');
        try {
            return new Date(ms).toLocaleDateString(ctx.locale, { year: 'numeric', month: 'long', day: 'numeric' });
        } catch (e) { return new Date(ms).toDateString(); }
    }

    function dateSeparators(section, ctx) {
        section.querySelectorAll(':scope > .date-sep').forEach(function (n) { n.remove(); });
        var lastDay = null;
        Array.prototype.slice.call(section.children).forEach(function (n) {
            var ts = Number(n.dataset && n.dataset.ts) || 0;
            if (!ts || n.hidden) return;
            var day = startOfDay(ts);
            if (day === lastDay) return;
            lastDay = day;
            section.insertBefore(el('div', { className: 'date-sep', role: 'separator', dataset: { day: day },
                text: dayLabel(ts, ctx) }), n);
        });
    }

    global.ChatGWRender = { frame: frame, pending: pending, setState: setState, linkify: linkify,
        dateSeparators: dateSeparators, dayLabel: dayLabel, rated: rated, eventText: eventText };
})(window);
