// widget_welcome.mjs -- what the customer does between a reconnect and its welcome is not lost
// (driven by tests/integration/test_browser_widget.py, which serves the shop page):
//
//   node widget_welcome.mjs GATEWAY SHOP_URL AGENT_TOKEN
//
// The widget on SHOP_URL chats with the agent (a bare WebSocket). Then the page's WebSocket is
// routed through playwright (routeWebSocket): the connection is cut, and when the widget
// connects again its hello is held back from the gateway, as a gateway still checking a token
// would leave it. The customer presses End chat meanwhile. The widget must keep the close until
// it is welcomed (the gateway refuses any frame before the hello is answered: hello_required),
// and send it then: the conversation ends, and no error is shown or sent back.
import {
    agentSees, check, counts, dumpTraces, launch, newPage, pageErrors, rawAgent, runScenario, shot,
    step, StepError, until, widgetFrame,
} from './lib.mjs';

const [BASE, SHOP, AGENT_TOKEN] = process.argv.slice(2);
if (!BASE || !SHOP || !AGENT_TOKEN) {
    console.error('usage: node widget_welcome.mjs GATEWAY SHOP_URL AGENT_TOKEN');
    process.exit(2);
}

// Between the page and the gateway: frames pass both ways as they are, except a hello while
// `holdHello` is set, which waits in `heldHello` until release(); `sent` lists what the page
// sent, in order, and `errors` the error frames the gateway answered.
function gateway(page) {
    const gate = { holdHello: false, heldHello: null, sent: [], errors: [], page: null, server: null };
    gate.release = () => {
        const h = gate.heldHello;
        gate.heldHello = null;
        gate.holdHello = false;
        if (h) gate.server.send(h);
    };
    gate.cut = () => gate.page.close({ code: 4001, reason: 'cut by the test' });
    return page.routeWebSocket(/\/ws\/customer/, (ws) => {
        const server = ws.connectToServer();
        gate.page = ws;
        gate.server = server;
        ws.onMessage((m) => {
            const s = String(m);
            gate.sent.push(s);
            if (gate.holdHello && s.includes('"type":"hello"')) {
                gate.heldHello = s;
                return;
            }
            server.send(m);
        });
        server.onMessage((m) => {
            const s = String(m);
            if (s.includes('"type":"error"')) gate.errors.push(JSON.parse(s));
            ws.send(m);
        });
        ws.onClose(() => server.close());
        server.onClose(() => ws.close());
    }).then(() => gate);
}

const type = (s) => { try { return JSON.parse(s).type; } catch (e) { return '?'; } };

async function main() {
    const browser = await launch();
    const agent = await newPage(browser, 'agent', { width: 800, height: 600 });
    const page = await newPage(browser, 'customer', { width: 1000, height: 760 }, { locale: 'en-GB' });
    let gate, w, conv;
    try {
        await step('the agent connects (online)', () => rawAgent(agent, BASE, AGENT_TOKEN));

        await step('the customer chats through the routed WebSocket', async () => {
            gate = await gateway(page);
            await page.goto(SHOP);
            w = await widgetFrame(page);
            await w.locator('#chat-launcher').click();
            await w.locator('#chat-status[data-state="online"]').waitFor();
            await w.locator('#chat-input').fill('Where is my order?');
            await w.locator('#chat-input').press('Enter');
            await w.locator('#chat-log .msg[data-role="customer"][data-seq]').filter({ hasText: 'Where is my order?' }).waitFor();
            conv = await w.locator('#chat-log').getAttribute('data-conv');
            await agentSees(agent, (f) => f.type === 'assigned' && f.conv === conv, 'the assignment at the agent');
            await w.locator('#chat-end').waitFor();
            check(gate.sent.filter((s) => type(s) === 'hello').length === 1, 'one hello so far');
        });

        await step('cut; the new hello is held back; End chat meanwhile is kept, not sent', async () => {
            gate.holdHello = true;
            gate.cut();
            await until(() => gate.heldHello !== null, 'the widget to say hello again');
            await w.locator('#chat-end').click();
            await until(async () => (await w.evaluate(() => window.ChatGWWidget.state().held)) === 1,
                'End chat to be held until the welcome');
        });

        await step('welcomed: the close goes, the conversation ends, no error', async () => {
            const mark = gate.sent.length; // what the page sent before the hello went on
            gate.release();
            await w.locator('#chat-status[data-state="online"]').waitFor();
            await agentSees(agent, (f) => f.type === 'closed' && f.conv === conv, 'the close at the agent');
            await w.locator('#chat-log .msg[data-seq]').filter({ hasText: /./ }).last().waitFor();
            await until(async () => await w.locator('#chat-end').isHidden(), 'End chat to be hidden');
            const closes = gate.sent.map((s, i) => [type(s), i]).filter(([t]) => t === 'close');
            check(closes.length === 1 && closes[0][1] >= mark,
                `close frames at ${closes.map(([, i]) => i)}, the hello went on after ${mark}`);
            check(gate.errors.length === 0, `errors: ${JSON.stringify(gate.errors)}`);
            check(await w.locator('#chat-error').isHidden(), 'an error is shown');
        });

        check(pageErrors.length === 0, `JavaScript errors: ${pageErrors.join('; ')}`);
    } catch (e) {
        if (!(e instanceof StepError)) console.log(e.stack || e);
        if (!page.isClosed()) await shot(page, 'fail-widget-welcome');
        dumpTraces();
        counts.failed += counts.failed ? 0 : 1;
    } finally {
        await browser.close();
    }
}

runScenario(main, 'widget-welcome');
