// widget_tenant.mjs -- the widget's data-tenant attribute (driven by
// tests/integration/test_browser_widget.py, which serves the shop pages):
//
//   node widget_tenant.mjs GATEWAY SERVED_URL OTHER_URL MALFORMED_URL AGENT_TOKEN LOCALE
//
// Three shop pages of another origin embed the widget with one tag: SERVED_URL with
// data-tenant="default" (the tenant the gateway serves), OTHER_URL with data-tenant="acme",
// MALFORMED_URL with data-tenant="Acme Shop". LOCALE (zh-CN or en) is the widget's language.
// The first chats as without the attribute (its hello names the tenant; the agent, a bare
// WebSocket, gets the message and answers); the other two say, in LOCALE, that the chat cannot
// start, instead of connecting again and again: one hello, refused, the connection stopped, the
// composer disabled. Expected strings are read from the widget's own table (widget-i18n.js).
import {
    agentSees, check, counts, dumpTraces, launch, newPage, pageErrors, rawAgent, runScenario, shot,
    step, StepError, until, widgetFrame,
} from './lib.mjs';

const [BASE, SERVED, OTHER, MALFORMED, AGENT_TOKEN, LOCALE] = process.argv.slice(2);
if (!BASE || !SERVED || !OTHER || !MALFORMED || !AGENT_TOKEN || !LOCALE) {
    console.error('usage: node widget_tenant.mjs GATEWAY SERVED_URL OTHER_URL MALFORMED_URL AGENT_TOKEN LOCALE');
    process.exit(2);
}
// the browser's own language: English for both; the zh-CN pages say data-locale="zh-CN"
const BROWSER_LOCALE = LOCALE === 'en' ? 'en-GB' : 'en-US';

// A shop page's widget, opened: its frame, its string table and the hellos it sent.
async function openWidget(browser, who, url) {
    const page = await newPage(browser, who, { width: 1000, height: 760 }, { locale: BROWSER_LOCALE });
    const hellos = [];
    const sockets = [];
    page.on('websocket', (ws) => {
        sockets.push(ws);
        ws.on('framesent', (f) => { if (String(f.payload).includes('"hello"')) hellos.push(JSON.parse(f.payload)); });
    });
    await page.goto(url);
    const w = await widgetFrame(page);
    await w.locator('#chat-launcher').click();
    await w.locator('#chat-panel').waitFor();
    check((await w.locator('html').getAttribute('lang')) === LOCALE, 'the widget is not in ' + LOCALE);
    const S = await w.evaluate((l) => window.ChatGWi18n.strings[l], LOCALE);
    return { page, w, S, hellos, sockets };
}

// The widget says it cannot start: the sticky error line, offline, the composer disabled, one
// hello sent and its connection stopped (no reconnecting).
async function refused(x, tenant, code, want, reason) {
    const err = x.w.locator('#chat-error');
    await err.filter({ hasText: want }).waitFor();
    const text = await err.innerText();
    // en adds the gateway's reason (zh-CN shows the widget's words only, like its other errors)
    if (LOCALE === 'en') {
        check(text === `${want}: ${reason}`, `the error line says ${JSON.stringify(text)}`);
    } else {
        check(text === want, `the error line says ${JSON.stringify(text)}, not ${JSON.stringify(want)}`);
    }
    check((await x.w.locator('#chat-panel').getAttribute('data-refused')) === code, `the panel is not marked refused (${code})`);
    await x.w.locator('#chat-status[data-state="offline"]').waitFor();
    check((await x.w.locator('#chat-status').innerText()) === x.S.unavailable, 'the status does not say ' + x.S.unavailable);
    check(await x.w.locator('#chat-input').isDisabled() && await x.w.locator('#chat-send').isDisabled(), 'the composer is still enabled');
    await until(async () => (await x.w.evaluate(() => window.ChatGWWidget.state().connection)) === 'stopped', 'the connection to be stopped');
    await until(() => x.sockets.every((s) => s.isClosed()), 'the WebSocket to be closed');
    check(x.sockets.length === 1 && x.hellos.length === 1, `${x.sockets.length} connections, ${x.hellos.length} hellos`);
    check(x.hellos[0].tenant === tenant, `the hello says tenant ${JSON.stringify(x.hellos[0].tenant)}, not ${tenant}`);
}

async function main() {
    const browser = await launch();
    const agent = await newPage(browser, 'agent', { width: 800, height: 600 });
    let x;
    try {
        await step('the agent connects (online)', () => rawAgent(agent, BASE, AGENT_TOKEN));

        await step('data-tenant="default", the tenant served: the hello names it and the customer chats', async () => {
            x = await openWidget(browser, 'served', SERVED);
            await x.w.locator('#chat-status[data-state="online"]').waitFor();
            check(x.hellos.length === 1 && x.hellos[0].tenant === 'default', `the hello: ${JSON.stringify(x.hellos)}`);
            await x.w.locator('#chat-input').fill('Where is my order?');
            await x.w.locator('#chat-input').press('Enter');
            await x.w.locator('#chat-log .msg[data-role="customer"][data-seq]').filter({ hasText: 'Where is my order?' }).waitFor();
            const conv = await x.w.locator('#chat-log').getAttribute('data-conv');
            await agentSees(agent, (f) => f.type === 'text' && f.conv === conv && f.text === 'Where is my order?', 'the message at the agent');
            await agent.evaluate((c) => window.A.send({ type: 'text', cmid: 'a-1', conv: c, text: 'It ships today.' }), conv);
            await x.w.locator('#chat-log .msg[data-role="agent"][data-seq]').filter({ hasText: 'It ships today.' }).waitFor();
            check(await x.w.locator('#chat-error').isHidden(), 'an error is shown');
            await x.page.close();
        });

        await step('data-tenant="acme", a tenant the gateway does not serve: the widget says it cannot start', async () => {
            x = await openWidget(browser, 'other', OTHER);
            await refused(x, 'acme', 'unknown_tenant', x.S.err_unknown_tenant,
                "unknown tenant 'acme': this gateway serves the tenant 'default'");
            await shot(x.page, `widget-tenant-${LOCALE}-refused`);
            await x.page.close();
        });

        await step('data-tenant="Acme Shop", malformed: the widget says it is not set up correctly', async () => {
            x = await openWidget(browser, 'malformed', MALFORMED);
            await refused(x, 'Acme Shop', 'bad_value', x.S.err_hello.replace('{code}', 'bad_value'),
                "field 'tenant' must be 1-32 of a-z 0-9 _ -");
            await x.page.close();
        });

        check(pageErrors.length === 0, `JavaScript errors: ${pageErrors.join('; ')}`);
    } catch (e) {
        if (!(e instanceof StepError)) console.log(e.stack || e);
        if (x && !x.page.isClosed()) await shot(x.page, `fail-widget-tenant-${LOCALE}`);
        dumpTraces();
        counts.failed += counts.failed ? 0 : 1;
    } finally {
        await browser.close();
    }
}

runScenario(main, 'widget-tenant');
