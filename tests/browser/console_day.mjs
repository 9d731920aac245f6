#!/usr/bin/env node
// console_day.mjs -- the agent console's working-day features, in one language.
//
//   node tests/browser/console_day.mjs BASE_URL AGENT_TOKEN LOCALE
//
// LOCALE is zh-CN or en: the browser's language (the console follows it). BASE_URL is a gateway
// with a router behind it whose configuration has the push queue `general` with a canned reply
// `shipping`, the default resolutions and a [rule complaint] (test_browser.py CONSOLE_DAY_CONFIG);
// the agent serves `general` with room for three conversations. Desktop notifications and sound
// are observed through an init script that stands in for the Notification API and counts Web
// Audio oscillators. Checks: texts in the browser's language; notifications enabled by the agent;
// an offer and a message from a conversation the agent is not looking at alert (notification,
// sound, title badge); the customer panel; "/" searches the canned replies; the customer's read
// receipt shows under the reply, and the console's own read reaches the customer; Alt+↓ moves to
// the next conversation, ? shows the shortcuts; End chat asks with the configured resolutions (a
// cancel keeps the conversation), then ends it with the chosen one; the language can be switched
// and the choice survives a reload; a phone-sized console fits the screen. Screenshots go to
// build/browser-day-<locale>-*.png; with DOC_SCREENSHOT=<path> the desktop console is also
// written there (the README's picture). Prints "browser: N passed, 0 failed" and exits 0.
import fs from 'node:fs';
import path from 'node:path';
import {
    OUT, check, dumpTraces, goOnline, jwtClaims, launch, newPage, pageErrors, runScenario, shot, step, traces, until,
    widgetFrame,
} from './lib.mjs';

const [BASE_ARG, TOKEN, LOCALE] = process.argv.slice(2);
if (!BASE_ARG || !TOKEN || !['zh-CN', 'en'].includes(LOCALE)) {
    console.error('usage: node console_day.mjs BASE_URL AGENT_TOKEN zh-CN|en');
    process.exit(2);
}
const BASE = BASE_ARG.replace(/\/+$/, '');
const OTHER = LOCALE === 'en' ? 'zh-CN' : 'en';
const TAG = `day-${LOCALE}`;
const SHIPPING = 'Orders ship within 24 hours; delivery takes 2-4 days.';

// the console's texts this test looks for, per language (gateway/www/agent_i18n.js)
const TX = {
    en: { end: 'End chat', waiting: 'Waiting', notifyOn: 'Notifications on', offer: 'New conversation',
        message: 'New message from', channel: 'Channel', noRating: 'Not rated', none: 'None known',
        read: 'Read', resolved: 'Resolved', duplicate: 'Duplicate', spam: 'Spam', unresolvedHint: 'goes back to its queue',
        shortcuts: 'Keyboard shortcuts', closed: 'Conversation closed (spam)', title: 'Agent console — chatgw',
        search: 'Canned replies matching', category: 'category default' },
    'zh-CN': { end: '结束会话', waiting: '排队中', notifyOn: '通知已开启', offer: '新会话',
        message: '发来新消息', channel: '渠道', noRating: '未评分', none: '暂无',
        read: '已读', resolved: '已解决', duplicate: '重复会话', spam: '垃圾信息', unresolvedHint: '退回队列',
        shortcuts: '快捷键', closed: '会话已结束（spam）', title: '客服工作台 — chatgw',
        search: '匹配', category: '分类 default' },
};
const T = TX[LOCALE];

// stands in for the Notification API (permission "default" until requested) and counts sounds
const SPY = () => {
    window.__alerts = { notes: [], beeps: 0 };
    class FakeNotification {
        constructor(title, opts) { window.__alerts.notes.push({ title, body: opts && opts.body, tag: opts && opts.tag }); }
        close() {}
    }
    FakeNotification.permission = 'default';
    FakeNotification.requestPermission = () => { FakeNotification.permission = 'granted'; return Promise.resolve('granted'); };
    window.Notification = FakeNotification;
    const AC = window.AudioContext;
    if (AC) {
        const orig = AC.prototype.createOscillator;
        AC.prototype.createOscillator = function () { window.__alerts.beeps++; return orig.call(this); };
    }
};

async function openWidget(page, text) {
    const resp = await page.goto(`${BASE}/`);
    check(resp && resp.ok(), `GET /: HTTP ${resp && resp.status()}`);
    const cw = await widgetFrame(page); // the demo page's chat lives in the widget's iframe
    await cw.locator('#chat-launcher').click();
    await cw.locator('#chat-status[data-state="online"]').waitFor();
    await cw.locator('#chat-input').fill(text);
    await cw.locator('#chat-input').press('Enter');
    await cw.locator('#chat-log .msg[data-role="customer"][data-seq]').filter({ hasText: text }).waitFor();
    const conv = await cw.locator('#chat-log').getAttribute('data-conv');
    check(conv, 'the widget has no conversation id after the ack');
    return conv;
}

const alerts = (page) => page.evaluate(() => window.__alerts);

async function main() {
    const browser = await launch();
    for (const f of fs.readdirSync(OUT)) if (f.startsWith(`browser-fail-${TAG}-`)) fs.rmSync(path.join(OUT, f));
    const ctx = { locale: LOCALE };
    const agent = await newPage(browser, 'agent', { width: 1360, height: 860 }, ctx);
    await agent.context().addInitScript(SPY);
    const custA = await newPage(browser, 'customerA', { width: 1000, height: 760 }, ctx);
    const custB = await newPage(browser, 'customerB', { width: 1000, height: 760 }, ctx);
    let phone = null;
    const me = jwtClaims(TOKEN);
    let convA = '';
    let convB = '';

    try {
        await step(`the console speaks the browser's language (${LOCALE})`, async () => {
            const resp = await agent.goto(`${BASE}/agent#token=${encodeURIComponent(TOKEN)}`);
            check(resp && resp.ok(), `GET /agent: HTTP ${resp && resp.status()}`);
            await goOnline(agent);
            check((await agent.getAttribute('html', 'lang')) === LOCALE, 'html lang is not the browser language');
            check((await agent.locator('#close-btn').textContent()) === T.end, 'End chat is not in the browser language');
            await agent.locator('.side-section h2').first().filter({ hasText: T.waiting }).waitFor();
            check((await agent.title()) === T.title, `title: ${await agent.title()}`);
            check((await agent.locator('#lang-select').inputValue()) === LOCALE, 'the language picker shows another language');
        });

        await step('the agent enables desktop notifications', async () => {
            await agent.locator('#notify-btn').click();
            await agent.locator('#notify-btn[data-permission="granted"]').filter({ hasText: T.notifyOn }).waitFor();
        });

        await step('an offer alerts: notification and sound', async () => {
            convA = await openWidget(custA, 'Hello, where is my parcel?');
            await agent.locator(`.conv-item.active[data-conv="${convA}"]`).waitFor();
            const a = await until(async () => {
                const x = await alerts(agent);
                return x.notes.some((n) => n.title === T.offer && n.tag === `chatgw-${convA}`) && x.beeps > 0 ? x : null;
            }, 'a notification and a sound for the offer');
            check(a.notes.every((n) => !/undefined/.test(n.title)), JSON.stringify(a.notes));
        });

        await step('a message of a conversation the agent is not looking at: notification and title badge', async () => {
            convB = await openWidget(custB, 'Second customer here');
            const item = agent.locator(`.conv-item[data-conv="${convB}"]`);
            await item.waitFor();
            // convA stays the open one
            await agent.locator(`.conv-item.active[data-conv="${convA}"]`).waitFor();
            await item.locator('.badge').waitFor();
            await until(async () => /^\(\d+\) /.test(await agent.title()), 'the unread count in the title');
            await until(async () => (await alerts(agent)).notes.some((n) => n.title.includes(T.message) && n.tag === `chatgw-${convB}`),
                'a notification for the message');
        });

        await step('the customer panel shows who the customer is', async () => {
            await agent.locator(`.conv-item[data-conv="${convA}"]`).click();
            const panel = agent.locator('#cust-panel:visible');
            await panel.waitFor();
            await panel.locator('dd[data-fact="panel_channel"]').filter({ hasText: 'web' }).waitFor();
            await panel.locator('dt').filter({ hasText: T.channel }).waitFor();
            await panel.locator('dd[data-fact="panel_rating"]').filter({ hasText: T.noRating }).waitFor();
            await panel.locator('dd[data-fact="panel_locale"]').waitFor();
            await agent.locator('#cust-earlier li').filter({ hasText: T.none }).waitFor();
            // the category the router gave it comes with the panel (no rule matched: default)
            await agent.locator('#conv-sub').filter({ hasText: T.category }).waitFor();
            check(await agent.locator('#cust-error').isHidden(), await agent.locator('#cust-error').textContent());
        });

        let replySeq = 0;
        await step('"/" searches the canned replies; Enter inserts one, which is sent', async () => {
            const input = agent.locator('#agent-input');
            await input.click();
            await input.pressSequentially('/ship');
            const box = agent.locator('#canned-suggest:visible');
            await box.waitFor();
            await box.locator('.cs-title').filter({ hasText: T.search }).waitFor();
            await box.locator('.cs-item[data-name="shipping"]').waitFor();
            await input.press('Enter');
            await box.waitFor({ state: 'hidden' });
            check((await input.inputValue()) === SHIPPING, `composer: ${JSON.stringify(await input.inputValue())}`);
            // a query without a match says so
            await input.fill('');
            await input.pressSequentially('/zzz');
            await agent.locator('#canned-suggest .cs-title').filter({ hasText: 'zzz' }).waitFor();
            check((await agent.locator('#canned-suggest .cs-item').count()) === 0, 'items for a query that matches nothing');
            await input.press('Escape');
            await agent.locator('#canned-suggest').waitFor({ state: 'hidden' });
            await input.fill(SHIPPING);
            await input.press('Enter');
            const mine = agent.locator('#agent-log .msg-mine[data-seq]').filter({ hasText: SHIPPING });
            await mine.waitFor();
            replySeq = Number(await mine.getAttribute('data-seq'));
            await (await widgetFrame(custA)).locator('#chat-log .msg[data-role="agent"]').filter({ hasText: SHIPPING }).waitFor();
        });

        await step('read receipts: the customer\'s read shows under the reply; the console\'s reaches the customer', async () => {
            // the console said it read the customer's messages of the open conversation
            await until(async () => (traces.customerA || []).some((l) => l.startsWith('<- ') && l.includes('"type":"read"')),
                'a read frame from the console at the customer');
            // a widget that sends read receipts: the customer's session says it read the reply
            await (await widgetFrame(custA)).evaluate(({ conv, seq }) => new Promise((resolve, reject) => {
                const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws/customer`, ['chatgw.json.v1']);
                ws.onopen = () => ws.send(JSON.stringify({ type: 'hello', token: localStorage.getItem('chatgw_token'), conv }));
                ws.onmessage = (ev) => {
                    const f = JSON.parse(ev.data);
                    if (f.type === 'welcome') { ws.send(JSON.stringify({ type: 'read', conv, last_seq: seq })); resolve(); }
                    if (f.type === 'error') reject(new Error(ev.data));
                };
                ws.onerror = () => reject(new Error('websocket error'));
            }), { conv: convA, seq: replySeq });
            await agent.locator(`#agent-log .msg-mine[data-seq="${replySeq}"][data-read="1"] .msg-status`).filter({ hasText: T.read }).waitFor();
        });

        await step('keyboard: Alt+↓ opens the next conversation, ? lists the shortcuts', async () => {
            await agent.locator('#agent-log').click();
            await agent.keyboard.press('Alt+ArrowDown');
            await agent.locator(`.conv-item.active[data-conv="${convB}"]`).waitFor();
            await agent.keyboard.press('Alt+ArrowUp');
            await agent.locator(`.conv-item.active[data-conv="${convA}"]`).waitFor();
            await agent.locator('#agent-log').click();
            await agent.keyboard.press('?');
            await agent.locator('#shortcuts-dialog[open]').filter({ hasText: T.shortcuts }).waitFor();
            await agent.keyboard.press('Escape');
            await agent.locator('#shortcuts-dialog').waitFor({ state: 'hidden' });
        });

        await step('End chat asks first: the configured resolutions, resolved preselected; Cancel keeps the chat', async () => {
            await agent.keyboard.press('Alt+KeyE');
            const dlg = agent.locator('#close-dialog[open]');
            await dlg.waitFor();
            const opts = await agent.$$eval('#close-resolution option', (os) => os.map((o) => [o.value, o.textContent]));
            const values = opts.map((o) => o[0]);
            check(JSON.stringify(values) === JSON.stringify(['resolved', 'resolved_workaround', 'duplicate', 'spam', 'no_response', 'unresolved']),
                `resolutions: ${JSON.stringify(values)}`);
            check(opts[0][1] === T.resolved && opts[2][1] === T.duplicate, `labels: ${JSON.stringify(opts)}`);
            check((await agent.locator('#close-resolution').inputValue()) === 'resolved', 'resolved is not preselected');
            await agent.locator('#close-resolution').selectOption('unresolved');
            await agent.locator('#close-hint').filter({ hasText: T.unresolvedHint }).waitFor();
            await shot(agent, `${TAG}-close-dialog`);
            await agent.locator('#close-cancel').click();
            await agent.locator('#close-dialog').waitFor({ state: 'hidden' });
            await agent.locator(`.conv-item[data-conv="${convA}"][data-state="assigned"]`).waitFor();
            check(await agent.locator('#agent-input').isEnabled(), 'the composer is disabled after Cancel');
        });

        await step('End chat with the resolution spam: closed with that code on both sides', async () => {
            await agent.locator('#close-btn').click();
            await agent.locator('#close-dialog[open]').waitFor();
            await agent.locator('#close-resolution').selectOption('spam');
            await agent.locator('#close-confirm').click();
            await agent.locator('#agent-log .msg[data-type="closed"]').filter({ hasText: T.closed }).waitFor();
            await agent.locator(`.conv-item[data-conv="${convA}"][data-state="closed"]`).waitFor();
            await (await widgetFrame(custA)).locator('#chat-log .msg[data-type="closed"]').waitFor();
        });

        await step('the desktop console (screenshot)', async () => {
            await agent.locator(`.conv-item[data-conv="${convB}"]`).click();
            await agent.locator('#agent-input').fill('/');
            await agent.locator('#agent-input').press('End');
            await agent.locator('#canned-suggest .cs-item').first().waitFor();
            await shot(agent, `${TAG}-console`);
            if (process.env.DOC_SCREENSHOT) {
                await agent.screenshot({ path: process.env.DOC_SCREENSHOT });
                console.log(`     (written ${process.env.DOC_SCREENSHOT})`);
            }
            await agent.locator('#agent-input').fill('');
        });

        await step(`the agent switches to ${OTHER}; the choice survives a reload`, async () => {
            await agent.locator('#lang-select').selectOption(OTHER);
            await agent.locator('#close-btn').filter({ hasText: TX[OTHER].end }).waitFor();
            check((await agent.getAttribute('html', 'lang')) === OTHER, 'html lang did not follow');
            await agent.locator('.side-section h2').first().filter({ hasText: TX[OTHER].waiting }).waitFor();
            // transcript lines follow too
            await agent.locator(`.conv-item[data-conv="${convA}"]`).click();
            await agent.locator('#agent-log .msg[data-type="closed"]').filter({ hasText: TX[OTHER].closed }).waitFor();
            await agent.reload();
            await agent.locator('#conn-status[data-state="online"]').waitFor();
            await agent.locator('#close-btn').filter({ hasText: TX[OTHER].end }).waitFor();
            await agent.locator('#lang-select').selectOption(LOCALE);
            await agent.locator('#close-btn').filter({ hasText: T.end }).waitFor();
        });

        await step('a phone-sized console fits the screen', async () => {
            phone = await newPage(browser, 'phone', { width: 390, height: 844 }, { ...ctx, isMobile: true, hasTouch: true });
            const resp = await phone.goto(`${BASE}/agent#token=${encodeURIComponent(TOKEN)}`);
            check(resp && resp.ok(), `GET /agent: HTTP ${resp && resp.status()}`);
            await phone.locator('#conn-status[data-state="online"]').waitFor();
            await phone.locator(`.conv-item[data-conv="${convB}"]`).click();
            await phone.locator(`.conv-item.active[data-conv="${convB}"]`).waitFor();
            const m = await phone.evaluate(() => {
                const box = (s) => { const r = document.querySelector(s).getBoundingClientRect(); return { left: r.left, right: r.right }; };
                return { width: window.innerWidth, scroll: document.documentElement.scrollWidth,
                    pane: box('.conv-pane'), form: box('#agent-form'), header: box('.conv-header'),
                    log: document.getElementById('agent-log').getBoundingClientRect().height };
            });
            check(m.scroll <= m.width, `the page is wider than the phone: ${JSON.stringify(m)}`);
            check(m.log >= 250, `the transcript is squeezed to ${m.log} px: ${JSON.stringify(m)}`);
            for (const k of ['pane', 'form', 'header']) {
                check(Math.abs(m[k].left) <= 1 && Math.abs(m.width - m[k].right) <= 1, `${k} is not the screen's width: ${JSON.stringify(m)}`);
            }
            await phone.locator('#agent-log').scrollIntoViewIfNeeded();
            await shot(phone, `${TAG}-phone`);
        });

        await step('no JavaScript error on any page', async () => {
            check(pageErrors.length === 0, pageErrors.join('\n'));
            check(me.sub, 'token without sub');
        });
    } catch (e) {
        await shot(agent, `fail-${TAG}-agent`);
        await shot(custA, `fail-${TAG}-customerA`);
        if (phone) await shot(phone, `fail-${TAG}-phone`);
        dumpTraces();
    } finally {
        await browser.close();
    }
}

runScenario(main);
