#!/usr/bin/env node
// canned.mjs -- browser test of the agent console's canned replies picker.
//
//   node tests/browser/canned.mjs BASE_URL AGENT_TOKEN
//
// BASE_URL is a running gateway with a router behind it whose configuration has the push queue
// `general` (the default queue) with the canned replies of CANNED below (a [canned general]
// section); the agent token serves `general`. A customer writes; the agent opens the
// conversation, the picker lists the queue's replies (fetched from GET /canned with the console's
// token), choosing one inserts its text into the composer, the agent adds a word and sends it,
// and the customer page shows it. Screenshots go to build/browser-canned-*.png
// (browser-fail-canned-*.png on failure). Prints "browser: N passed, 0 failed" and exits 0, or
// names the failed step and exits 1.
import fs from 'node:fs';
import path from 'node:path';
import {
    OUT, check, counts, dumpTraces, jwtClaims, launch, newPage, pageErrors, shot, step, until,
    goOnline, runScenario,
    widgetFrame,
} from './lib.mjs';

const HELLO = 'How long does shipping take?';
// what the test configuration holds, sorted by name (test_browser.py CANNED_CONFIG)
const CANNED = [
    { name: 'greeting', text: 'Hello! <b>Thanks</b> for contacting us.' },
    { name: 'shipping', text: '订单付款后 24 小时内发货 — orders ship within 24 hours.' },
];
const EXTRA = ' Anything else?';

const [BASE_ARG, TOKEN] = process.argv.slice(2);
if (!BASE_ARG || !TOKEN) {
    console.error('usage: node canned.mjs BASE_URL AGENT_TOKEN');
    process.exit(2);
}
const BASE = BASE_ARG.replace(/\/+$/, '');

async function main() {
    const browser = await launch();
    for (const f of fs.readdirSync(OUT)) if (/^browser-fail-canned-.*\.png$/.test(f)) fs.rmSync(path.join(OUT, f));
    const customer = await newPage(browser, 'customer', { width: 1200, height: 800 });
    let cw; // the widget's iframe in the customer page (widget.js): again after each goto/reload
    const agent = await newPage(browser, 'agent', { width: 1280, height: 860 });
    const me = jwtClaims(TOKEN);
    const chat = (sel) => cw.locator(`#chat-log ${sel}`);
    let conv = '';

    try {
        await step('the agent console loads, connects and goes online', async () => {
            check(me.sub, `token without sub: ${JSON.stringify(me)}`);
            const resp = await agent.goto(`${BASE}/agent#token=${encodeURIComponent(TOKEN)}`);
            check(resp && resp.ok(), `GET /agent: HTTP ${resp && resp.status()}`);
            await goOnline(agent);
        });

        await step('customer opens the widget and writes', async () => {
            const resp = await customer.goto(`${BASE}/`);
            cw = await widgetFrame(customer);
            check(resp && resp.ok(), `GET /: HTTP ${resp && resp.status()}`);
            await cw.locator('#chat-launcher').click();
            await cw.locator('#chat-status[data-state="online"]').waitFor();
            await cw.locator('#chat-input').fill(HELLO);
            await cw.locator('#chat-input').press('Enter');
            await chat('.msg[data-role="customer"][data-seq]').filter({ hasText: HELLO }).waitFor();
            conv = await cw.locator('#chat-log').getAttribute('data-conv');
            check(conv, 'the widget has no conversation id after the ack');
        });

        await step('the agent opens the conversation; the picker lists the queue\'s replies', async () => {
            const item = agent.locator(`.conv-item[data-conv="${conv}"]`);
            await item.waitFor();
            await item.click();
            await agent.locator(`.conv-item[data-conv="${conv}"].active`).waitFor();
            await agent.locator('#agent-log .msg[data-role="customer"]').filter({ hasText: HELLO }).waitFor();
            await agent.locator('#canned-fields:enabled').waitFor();
            const opts = await until(async () => {
                const o = await agent.$$eval('#canned-select option', (os) => os.map((x) => ({ value: x.value, text: x.textContent, title: x.title })));
                return o.length === CANNED.length + 1 ? o : null;
            }, 'the canned replies in the picker');
            check(opts[0].value === '', `the first option is not the placeholder: ${JSON.stringify(opts[0])}`);
            CANNED.forEach((c, i) => {
                check(opts[i + 1].text.startsWith(`${c.name} — `), `option ${i + 1}: ${JSON.stringify(opts[i + 1])}`);
                check(opts[i + 1].title === c.text, `option ${i + 1} title: ${JSON.stringify(opts[i + 1])}`);
            });
            check(await agent.locator('#canned-status').isHidden(), 'a canned status is shown with replies loaded');
            await shot(agent, 'canned-picker');
        });

        await step('choosing a reply inserts its text into the composer, as text', async () => {
            await agent.locator('#agent-input').fill('');
            await agent.locator('#canned-select').selectOption({ index: 2 });
            await until(async () => (await agent.locator('#agent-input').inputValue()) === CANNED[1].text,
                'the shipping reply in the composer');
            check((await agent.locator('#canned-select').inputValue()) === '', 'the picker was not reset');
            // the agent edits it before sending: the cursor is after the inserted text
            await agent.locator('#agent-input').press('End');
            await agent.locator('#agent-input').type(EXTRA);
            check((await agent.locator('#agent-input').inputValue()) === CANNED[1].text + EXTRA, 'edit failed');
            // markup in a reply stays text: insert the other one at the start, then undo it
            await agent.locator('#agent-input').evaluate((t) => t.setSelectionRange(0, 0));
            await agent.locator('#canned-select').selectOption({ index: 1 });
            await until(async () => (await agent.locator('#agent-input').inputValue()) ===
                CANNED[0].text + CANNED[1].text + EXTRA, 'the greeting inserted at the cursor');
            check((await agent.locator('#canned-select b').count()) === 0, 'markup of a reply was parsed');
            await agent.locator('#agent-input').fill(CANNED[1].text + EXTRA);
            await shot(agent, 'canned-inserted');
        });

        await step('the agent sends it; the customer page shows it', async () => {
            await agent.locator('#agent-send').click();
            const want = CANNED[1].text + EXTRA;
            await agent.locator('#agent-log .msg[data-role="agent"][data-seq]').filter({ hasText: want }).waitFor();
            check((await agent.locator('#agent-input').inputValue()) === '', 'the composer was not emptied');
            await chat('.msg[data-role="agent"]').filter({ hasText: want }).waitFor();
            await shot(customer, 'canned-customer');
        });

        await step('no JavaScript error on any page', async () => {
            check(pageErrors.length === 0, pageErrors.join('\n'));
        });
    } catch (e) {
        await shot(customer, 'fail-canned-customer');
        await shot(agent, 'fail-canned-agent');
        dumpTraces();
    } finally {
        await browser.close();
    }
}

runScenario(main);
