// widget_embed.mjs -- the one-tag widget on a shop of another origin (driven by
// tests/integration/test_browser_widget.py, which serves the shop pages):
//
//   node widget_embed.mjs GATEWAY SHOP_URL BLOCKED_URL NOBODY_URL AGENT_TOKEN LOCALE [SCREENSHOT]
//
// SHOP_URL embeds <script src="GATEWAY/widget.js" async data-prechat data-customer-token…>
// on an origin in allowed_origins (localhost vs the gateway's 127.0.0.1); BLOCKED_URL embeds the
// same tag on an origin that is not allowed; NOBODY_URL is a shop page whose customers find
// nobody online. LOCALE is the widget's language (zh-CN or en): the browser's language, or
// overridden by data-locale (the pages decide). The agent is a plain WebSocket client in a page
// of the gateway's origin, so that the widget alone is under test. Every expected string is
// read from the widget's own table (widget-i18n.js) in LOCALE.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import {
    agentSees, check, counts, dumpTraces, launch, newPage, pageErrors, rawAgent, runScenario, shot,
    step, StepError, transcript, checkComplete, until, trace, widgetFrame, CHROMIUM, CHROMIUM_ARGS,
    TIMEOUT,
} from './lib.mjs';

const [BASE, SHOP, BLOCKED, NOBODY, AGENT_TOKEN, LOCALE, SCREENSHOT] = process.argv.slice(2);
if (!BASE || !SHOP || !BLOCKED || !NOBODY || !AGENT_TOKEN || !LOCALE) {
    console.error('usage: node widget_embed.mjs GATEWAY SHOP_URL BLOCKED_URL NOBODY_URL AGENT_TOKEN LOCALE [SCREENSHOT]');
    process.exit(2);
}
// the browser's own language: the shop pages for en leave the widget to it; for zh-CN the tag
// overrides an English browser with data-locale
const BROWSER_LOCALE = LOCALE === 'en' ? 'en-GB' : 'en-US';
const WIRE_LOCALE = LOCALE === 'en' ? 'en-GB' : 'zh-CN';
// zh-CN: a long name (48 characters, 144 UTF-8 bytes): the widget cuts it to the 128 bytes the
// gateway takes for a sender_name (42 characters) instead of failing the hello
const TYPED = LOCALE === 'en' ? 'Jane Doe' : '王小姐' + '的'.repeat(45);
const NAME = LOCALE === 'en' ? TYPED : [...TYPED].slice(0, 42).join('');
const EMAIL = 'jane@example.com';
const LINK = 'https://shop.example/orders/A-1001';
const QUESTION = `Where is my order? ${LINK}, and javascript:alert(1) is not a link`;
const AGENT_LINK = 'https://help.example/track?id=42';


async function main() {
    const browser = await launch();
    const agent = await newPage(browser, 'agent', { width: 800, height: 600 });
    // The shop's customer browses in an ordinary profile (newPage's contexts are like private
    // windows, where the browser keeps third-party frames from storage: the widget then keeps
    // its session in memory, see 'private window' below).
    const profileDir = fs.mkdtempSync(path.join(os.tmpdir(), 'chatgw-widget-'));
    fs.mkdirSync(path.join(profileDir, 'Default'));
    fs.writeFileSync(path.join(profileDir, 'Default', 'Preferences'),
        JSON.stringify({ profile: { cookie_controls_mode: 0, block_third_party_cookies: false } }));
    const profile = await chromium.launchPersistentContext(profileDir, { executablePath: CHROMIUM, args: CHROMIUM_ARGS,
        viewport: { width: 1280, height: 800 }, locale: BROWSER_LOCALE, acceptDownloads: true });
    const shop = profile.pages()[0] || await profile.newPage();
    shop.setDefaultTimeout(TIMEOUT);
    trace(shop, 'shop');
    const sent = [];   // frames the widget sent
    shop.on('websocket', (ws) => ws.on('framesent', (f) => sent.push(String(f.payload))));
    // every postMessage the shop page gets, recorded before any script of the page runs
    await shop.addInitScript(() => {
        window.__posted = [];
        window.addEventListener('message', (e) => window.__posted.push({ origin: e.origin, data: JSON.stringify(e.data) }));
    });
    let w, S, conv, token;
    try {
        await step('the agent connects (online)', () => rawAgent(agent, BASE, AGENT_TOKEN));

        await step('the shop page (another origin) gets the widget from one tag, its own page untouched', async () => {
            const resp = await shop.goto(SHOP);
            check(resp.ok(), `shop page: HTTP ${resp.status()}`);
            check(new URL(SHOP).origin !== new URL(BASE).origin, 'the shop must be on another origin than the gateway');
            w = await widgetFrame(shop);
            await w.locator('#chat-launcher').waitFor();
            S = await w.evaluate((l) => window.ChatGWi18n.strings[l], LOCALE);
            const keys = await w.evaluate(() => Object.values(window.ChatGWi18n.strings).map((t) => Object.keys(t).sort().join()));
            check(keys.length === 2 && keys[0] === keys[1], 'the zh-CN and en tables do not have the same keys');
            check((await w.locator('html').getAttribute('lang')) === LOCALE, 'the widget is not in ' + LOCALE);
            check((await w.locator('#chat-launcher').innerText()).includes(S.launcher), 'the launcher is not labelled ' + S.launcher);
            await until(async () => (await (await w.frameElement()).getAttribute('title')) === S.panel, 'the iframe to be named ' + S.panel);
            // the page's own element with the widget's old id and its hostile CSS are as they were
            const page = await shop.evaluate(() => ({
                ids: [...document.querySelectorAll('[id]')].map((e) => e.id).sort().join(),
                added: [...document.body.children].filter((e) => e.hasAttribute('data-chatgw')).length,
                sheets: document.styleSheets.length,
                mine: document.getElementById('chat-launcher').textContent,
            }));
            check(page.ids === 'chat-launcher,chat-log,shop-title', `the widget changed the page's ids: ${page.ids}`);
            check(page.added === 1 && page.sheets === 1, `the widget added ${page.added} hosts and the page has ${page.sheets} style sheets`);
            check(page.mine === 'the shop\'s own button', 'the shop\'s own #chat-launcher was changed');
            const box = await shop.evaluate(() => { const h = document.querySelector('[data-chatgw]'); return !!h && !h.shadowRoot; });
            check(box, 'the widget host is not closed (its shadow root is readable)');
        });

        await step('the pre-chat form asks a name and checks the e-mail', async () => {
            await w.locator('#chat-launcher').click();
            await w.locator('#chat-prechat').waitFor();
            check(!(await w.locator('#chat-form').isVisible()), 'the composer is shown before the pre-chat form is answered');
            await w.locator('#chat-prechat button[type=submit]').click();
            await w.locator('#chat-prechat .form-error').filter({ hasText: S.name_required }).waitFor();
            await w.locator('#prechat-name').fill(TYPED);
            await w.locator('#prechat-email').fill('not-an-address');
            await w.locator('#chat-prechat button[type=submit]').click();
            await w.locator('#chat-prechat .form-error').filter({ hasText: S.bad_email }).waitFor();
            await w.locator('#prechat-email').fill(EMAIL);
            await w.locator('#chat-prechat button[type=submit]').click();
            await w.locator('#chat-status[data-state="online"]').waitFor();
            check((await w.locator('#chat-status').innerText()) === S.online, 'status not ' + S.online);
            const hello = JSON.parse(sent.find((p) => p.includes('"hello"')));
            check(hello.identity && hello.identity.locale === WIRE_LOCALE, `hello says locale ${JSON.stringify(hello.identity)}, not ${WIRE_LOCALE}`);
            check(hello.sender_name === NAME, `hello says name ${hello.sender_name}`);
            check(typeof hello.token === 'string' && hello.token.length > 20, 'the shop-signed customer token was not presented');
        });

        await step('the e-mail is the first message; the signed identity reaches the agent', async () => {
            const mail = S.email_text.replace('{email}', EMAIL);
            await w.locator('#chat-log .msg[data-role="customer"][data-seq]').filter({ hasText: mail }).waitFor();
            conv = await w.locator('#chat-log').getAttribute('data-conv');
            const f = await agentSees(agent, (f) => f.type === 'text' && f.conv === conv && f.text === mail, 'the e-mail message at the agent');
            check(f.sender_id === 'shop-cust-42', `the customer is ${f.sender_id}, not the shop's signed shop-cust-42`);
            check(f.sender_name === NAME, `the agent sees the name ${f.sender_name}`);
        });

        await step('emoji, and a message with a link: http(s) clickable, javascript: plain text', async () => {
            await w.locator('#chat-emoji').click();
            await w.locator('#chat-emoji-grid .emoji').first().waitFor();
            // ❤ (U+2764): a glyph even the test machine's fonts have, for the README's screenshot
            const heart = w.locator('#chat-emoji-grid .emoji').filter({ hasText: '❤' });
            const emoji = await heart.innerText();
            await heart.click();
            check(await w.locator('#chat-emoji-grid').isHidden(), 'the emoji grid stayed open');
            check((await w.locator('#chat-input').inputValue()) === emoji, 'the emoji was not inserted');
            await w.locator('#chat-input').press('End');
            await w.locator('#chat-input').pressSequentially(' ' + QUESTION);
            await w.locator('#chat-input').press('Enter');
            const msg = w.locator('#chat-log .msg[data-role="customer"][data-seq]').filter({ hasText: emoji + ' Where is my order?' });
            await msg.waitFor();
            const a = msg.locator(`a[href="${LINK}"]`);
            check(await a.count() === 1, 'the https link is not clickable');
            check((await a.getAttribute('target')) === '_blank' && /noopener/.test(await a.getAttribute('rel')), 'the link lacks target/rel');
            check(await w.locator('#chat-log a[href^="javascript"]').count() === 0, 'a javascript: link was made');
            await agentSees(agent, (f) => f.type === 'text' && f.conv === conv && (f.text || '').includes(LINK), 'the question at the agent');
        });

        await step('a date separator says today', async () => {
            const sep = w.locator(`#chat-log .conv-section[data-conv="${conv}"] > .date-sep`);
            await sep.first().waitFor();
            check((await sep.first().innerText()) === S.today, `the separator says ${await sep.first().innerText()}`);
            check(await sep.count() === 1, 'more than one separator for one day');
            const labels = await w.evaluate(() => {
                const ctx = { t: window.ChatGWi18n.translator(document.documentElement.lang), locale: document.documentElement.lang };
                return [window.ChatGWRender.dayLabel(Date.now() - 86400000, ctx), window.ChatGWRender.dayLabel(Date.UTC(2024, 0, 15, 12), ctx)];
            });
            check(labels[0] === S.yesterday, `yesterday is labelled ${labels[0]}`);
            check(LOCALE === 'en' ? /January 15, 2024|15 January 2024/.test(labels[1]) : labels[1] === '2024年1月15日', `an older day is labelled ${labels[1]}`);
        });

        await step('typing indicator, the agent\'s reply with a link, read ticks both ways', async () => {
            await agent.evaluate((c) => window.A.send({ type: 'typing', conv: c }), conv);
            await w.locator('#chat-typing').filter({ hasText: S.typing.replace('{name}', 'Alice') }).waitFor();
            const mine = w.locator('#chat-log .msg-mine[data-seq]');
            check(await mine.count() >= 2 && (await mine.evaluateAll((ns) => ns.every((n) => n.dataset.tick === 'sent'))), 'a customer message without its tick');
            await agent.evaluate(([c, l]) => window.A.send({ type: 'text', cmid: 'a-1', conv: c, text: 'Track it here: ' + l }), [conv, AGENT_LINK]);
            const reply = w.locator('#chat-log .msg[data-role="agent"][data-seq]').filter({ hasText: 'Track it here' });
            await reply.waitFor();
            check(await reply.locator(`a[href="${AGENT_LINK}"]`).count() === 1, 'the agent\'s link is not clickable');
            check(await w.locator('#chat-typing').isHidden(), 'the typing line stayed after the message');
            const last = Number(await reply.getAttribute('data-seq'));
            // the customer has the panel open: the widget says it has read the reply
            await agentSees(agent, (f) => f.type === 'read' && f.conv === conv && f.last_seq >= last, 'the customer\'s read receipt');
            await agent.evaluate(([c, l]) => window.A.send({ type: 'read', conv: c, last_seq: l }), [conv, last]);
            await until(async () => (await mine.evaluateAll((ns) => ns.every((n) => n.dataset.tick === 'read'))), 'two ticks on every customer message');
            check((await mine.first().locator('.msg-status').getAttribute('title')) === S.read, 'the read tick is not labelled');
        });

        await step('closed panel: unread badge and a chime; the page\'s ChatGWWidget.open() clears it', async () => {
            await w.locator('#chat-minimize').click();
            await w.locator('#chat-panel').waitFor({ state: 'hidden' });
            const before = Number(await w.locator('#chat-launcher').getAttribute('data-chimes'));
            await agent.evaluate((c) => window.A.send({ type: 'text', cmid: 'a-2', conv: c, text: 'Are you still there?' }), conv);
            await w.locator('#chat-unread:visible').filter({ hasText: '1' }).waitFor();
            const label = await w.locator('#chat-launcher').getAttribute('aria-label');
            check(label === `${S.launcher} · ${S.unread.replace('{n}', '1')}`, `the launcher is labelled ${label}`);
            await until(async () => Number(await w.locator('#chat-launcher').getAttribute('data-chimes')) === before + 1, 'one chime');
            await shot(shop, `widget-${LOCALE}-unread`);
            // the shop's own button may open it: window.ChatGWWidget.open() (and close())
            await shop.evaluate(() => window.ChatGWWidget.open());
            await w.locator('#chat-panel').waitFor();
            await w.locator('#chat-unread').waitFor({ state: 'hidden' });
            await shop.evaluate(() => window.ChatGWWidget.close());
            await w.locator('#chat-panel').waitFor({ state: 'hidden' });
            await shop.evaluate(() => window.ChatGWWidget.open());
            await w.locator('#chat-panel').waitFor();
        });

        await step('the session token is in the gateway origin\'s storage, never in the shop page', async () => {
            token = await w.evaluate(() => localStorage.getItem('chatgw_token'));
            check(token && token.split('.').length === 3, 'the widget has no session token');
            const page = await shop.evaluate(() => JSON.stringify({ l: { ...localStorage }, s: { ...sessionStorage }, c: document.cookie, p: window.__posted }));
            check(!page.includes(token) && !page.includes('chatgw_token'), 'the token reached the shop page');
            const posted = await shop.evaluate(() => window.__posted);
            check(posted.length > 0 && posted.every((m) => m.origin === new URL(BASE).origin && JSON.parse(m.data).type === 'layout'),
                `unexpected messages to the page: ${JSON.stringify(posted).slice(0, 300)}`);
        });

        await step('the transcript downloads as text', async () => {
            const [dl] = await Promise.all([shop.waitForEvent('download'), w.locator('#chat-download').click()]);
            check(/^chat-transcript-\d{8}\.txt$/.test(dl.suggestedFilename()), `file name ${dl.suggestedFilename()}`);
            const text = fs.readFileSync(await dl.path(), 'utf8');
            for (const want of [QUESTION, 'Track it here: ' + AGENT_LINK, 'Are you still there?', `${S.you}: `, 'Alice: ']) {
                check(text.includes(want), `the transcript lacks ${JSON.stringify(want)}:\n${text}`);
            }
        });

        if (SCREENSHOT) {
            await step('a screenshot of the widget on the shop page for the README', async () => {
                await w.locator('#chat-panel').waitFor();
                await w.locator('#chat-input').fill('');
                await shop.screenshot({ path: SCREENSHOT });
                check(fs.statSync(SCREENSHOT).size > 10000, 'the screenshot is empty');
            });
        }

        let phone, pw;
        await step('a second customer, on a phone, waits behind the first (the agent has one slot): its position', async () => {
            phone = await newPage(browser, 'phone', { width: 390, height: 760 }, { locale: BROWSER_LOCALE, isMobile: true, hasTouch: true });
            await phone.goto(NOBODY);
            pw = await widgetFrame(phone);
            await pw.locator('#chat-launcher').click();
            await pw.locator('#chat-status[data-state="online"]').waitFor();
            // the open panel takes the phone's screen, inside it
            await until(async () => (await pw.evaluate(() => window.innerWidth)) === 390, 'the frame to take the phone\'s width');
            const box = await pw.locator('#chat-panel').evaluate((n) => { const r = n.getBoundingClientRect(); return [r.left, r.right, r.top, r.bottom, innerHeight]; });
            check(box[0] >= 0 && box[1] <= 390 && box[2] >= 0 && box[3] <= box[4] && box[1] - box[0] >= 360, `the phone panel is at ${box}`);
            await pw.locator('#chat-input').fill('Is anyone free?');
            await pw.locator('#chat-input').press('Enter');
            const queue = pw.locator('#chat-queue:visible');
            await queue.waitFor();
            check((await queue.innerText()).startsWith(S.queue.replace('{n}', '1')), `the queue line says ${await queue.innerText()}`);
            await shot(phone, `widget-${LOCALE}-phone`);
        });

        await step('the agent closes: a large, keyboard-usable survey', async () => {
            await agent.evaluate((c) => window.A.send({ type: 'close', cmid: 'a-3', conv: c, code: 'resolved' }), conv);
            await w.locator('#chat-log .msg[data-type="closed"]').filter({ hasText: S.closed }).waitFor();
            const stars = w.locator('#chat-log .msg[data-type="survey"] .rate-btn');
            await stars.first().waitFor();
            check(await stars.count() === 5, 'the survey has not five stars');
            const size = await stars.first().evaluate((b) => { const r = b.getBoundingClientRect(); return Math.min(r.width, r.height); });
            check(size >= 40, `the stars are ${size}px: too small to hit`);
            await stars.first().focus();
            for (let i = 0; i < 3; i++) await w.locator('*:focus').press('ArrowRight');
            check((await stars.nth(3).getAttribute('aria-checked')) === 'true', 'arrow keys did not move to the fourth star');
            await w.locator('*:focus').press('Enter');
            const rating = w.locator('#chat-log .msg[data-type="rating"]');
            await rating.filter({ hasText: S.rated.replace('{n}', '4') }).waitFor();
            check(await stars.evaluateAll((bs) => bs.every((b) => b.disabled)), 'the stars stay clickable after rating');
            const t = await transcript(w, `#chat-log .conv-section[data-conv="${conv}"]`);
            checkComplete(t, 'customer');
        });

        await step('the phone customer gets the agent; an unresolved close requeues it (no e-mail form); End chat', async () => {
            await pw.locator('#chat-log .msg[data-type="assigned"]').waitFor();
            check(await pw.locator('#chat-queue').isHidden(), 'the queue line stayed after the assignment');
            const conv2 = await pw.locator('#chat-log').getAttribute('data-conv');
            const bots = pw.locator('#chat-log .msg[data-role="bot"][data-seq], #chat-log .msg[data-role="system"][data-seq]');
            const before = await bots.count();
            await agent.evaluate((c) => window.A.send({ type: 'close', cmid: 'a-u', conv: c, code: 'unresolved' }), conv2);
            await until(async () => (await bots.count()) > before, 'the desk\'s text about the requeue');
            check(await pw.locator('#chat-log .email-capture').count() === 0, 'the e-mail form was offered on a requeue');
            check((await pw.locator('#chat-end').innerText()) === S.end, 'End chat is not labelled ' + S.end);
            await pw.locator('#chat-end').click();
            await pw.locator('#chat-log .msg[data-type="closed"]').filter({ hasText: S.closed }).waitFor();
            await pw.locator('#chat-end').waitFor({ state: 'hidden' });
            check((await pw.locator('#chat-input').getAttribute('placeholder')) === S.placeholder_closed, 'the composer does not offer a new conversation');
            await phone.close();
        });

        await step('another origin not in allowed_origins cannot frame the widget', async () => {
            // not traced: the browser's report of the refused frame is what this step expects
            const other = await (await browser.newContext({ viewport: { width: 800, height: 600 } })).newPage();
            await other.goto(BLOCKED);
            const f = await until(() => other.frames().find((x) => x !== other.mainFrame()), 'the iframe');
            await until(() => f.url().startsWith('chrome-error://'), 'the browser to refuse the frame (frame-ancestors)');
            check(await f.locator('#chat-launcher').count() === 0, 'the chat loaded in a frame of a not allowed origin');
            await other.close();
        });

        await step('opened on its own, the frame page ignores a customer token in its address; a French browser gets zh-CN', async () => {
            const signed = await shop.evaluate(() => document.querySelector('script[data-customer-token]').dataset.customerToken);
            const p = await newPage(browser, 'direct', { width: 900, height: 700 }, { locale: 'fr-FR' });
            const hellos = [];
            p.on('websocket', (ws) => ws.on('framesent', (f) => { if (String(f.payload).includes('"hello"')) hellos.push(JSON.parse(f.payload)); }));
            await p.goto(`${BASE}/widget-frame.html#customer_token=${encodeURIComponent(signed)}`);
            check(!p.url().includes('#'), 'the token stayed in the address bar');
            await p.locator('#chat-launcher').click();
            await p.locator('#chat-status[data-state="online"]').waitFor();
            check(hellos.length === 1 && !hellos[0].token, `the direct page presented a token: ${JSON.stringify(hellos)}`);
            // neither zh nor en: the widget speaks the default, zh-CN, and tells the desk fr-FR
            check((await p.locator('html').getAttribute('lang')) === 'zh-CN', 'a French browser did not get the zh-CN widget');
            check(hellos[0].identity.locale === 'fr-FR', `the hello says ${JSON.stringify(hellos[0].identity)}`);
            await p.close();
        });

        await step('nobody online: the widget asks for an e-mail address and sends it', async () => {
            await agent.evaluate(() => window.A.ws.close());
            const p = await newPage(browser, 'nobody', { width: 1000, height: 760 }, { locale: BROWSER_LOCALE });
            await p.goto(NOBODY);
            const pw = await widgetFrame(p);
            await pw.locator('#chat-launcher').click();
            await pw.locator('#chat-status[data-state="online"]').waitFor();
            await pw.locator('#chat-input').fill('Hello?');
            await pw.locator('#chat-input').press('Enter');
            const card = pw.locator('#chat-log .email-capture');
            await card.waitFor();
            check((await card.innerText()).includes(S.desk_closed), 'the e-mail card does not say the desk is closed');
            await card.locator('input').fill('nope');
            await card.locator('button').click();
            await card.locator('.form-error').filter({ hasText: S.bad_email }).waitFor();
            await card.locator('input').fill(EMAIL);
            await card.locator('button').click();
            await card.locator('.capture-thanks').filter({ hasText: S.email_thanks.replace('{email}', EMAIL) }).waitFor();
            await pw.locator('#chat-log .msg[data-role="customer"][data-seq]').filter({ hasText: S.email_text.replace('{email}', EMAIL) }).waitFor();
            await shot(p, `widget-${LOCALE}-nobody`);
            await p.close();
        });

        check(pageErrors.length === 0, `JavaScript errors: ${pageErrors.join('; ')}`);
    } catch (e) {
        if (!(e instanceof StepError)) console.log(e.stack || e);
        await shot(shop, `fail-widget-${LOCALE}-shop`);
        await shot(agent, `fail-widget-${LOCALE}-agent`);
        dumpTraces();
        counts.failed += counts.failed ? 0 : 1;
    } finally {
        await profile.close();
        await browser.close();
        fs.rmSync(profileDir, { recursive: true, force: true });
    }
}

runScenario(main, 'widget');
