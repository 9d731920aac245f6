#!/usr/bin/env node
// restart.mjs -- the widget and the agent console across a gateway restart.
//
//   node tests/browser/restart.mjs BASE_URL AGENT_TOKEN
//
// Driven by tests/integration/test_browser.py over stdin/stdout: the script prints "@@STOP" when
// the gateway should be stopped and waits for the line "stopped" on its input, then prints
// "@@START" and waits for "started" (a gateway on the same address again). Meanwhile both pages
// must show they are offline, keep what is typed as pending, reconnect on their own (backoff), re-send
// the pending messages with the same cmid, resume, and end with complete transcripts in which every
// message appears once. Prints "restart: N passed, 0 failed" and exits 0, else exits 1.
import readline from 'node:readline';
import {
    check, checkComplete, counts, describe, dumpTraces, launch, newPage, pageErrors, shot, step,
    takeConversation, transcript,
    runScenario,
    widgetFrame,
} from './lib.mjs';

const [BASE_ARG, TOKEN] = process.argv.slice(2);
if (!BASE_ARG || !TOKEN) {
    console.error('usage: node restart.mjs BASE_URL AGENT_TOKEN   (then answer @@STOP / @@START on stdin)');
    process.exit(2);
}
const BASE = BASE_ARG.replace(/\/+$/, '');
const BEFORE = 'Before the restart';
const REPLY_BEFORE = 'Reply before the restart';
const DOWN = 'Sent while the gateway was down';
const AGENT_DOWN = 'Agent reply while the gateway was down';

const input = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();

async function driver(request, answer) {
    console.log(request);
    for (;;) {
        const { value, done } = await input.next();
        if (done) throw new Error(`stdin closed while waiting for "${answer}" after ${request}`);
        if (value.trim() === answer) return;
    }
}

async function main() {
    const browser = await launch();
    // CUSTOMER_LOCALE: the customer's browser language (the widget then speaks it: zh-CN or en)
    const LOCALE = process.env.CUSTOMER_LOCALE || 'en-US';
    const customer = await newPage(browser, 'customer', { width: 1200, height: 800 }, { locale: LOCALE });
    let S; // the widget's strings in its language (widget-i18n.js)
    let cw; // the widget's iframe in the customer page (widget.js): again after each goto/reload
    const agent = await newPage(browser, 'agent', { width: 1280, height: 800 });
    const chat = (sel) => cw.locator(`#chat-log ${sel}`);
    const alog = (sel) => agent.locator(`#agent-log ${sel}`);

    try {
        await step('customer and agent are talking', async () => {
            await agent.goto(`${BASE}/agent#token=${encodeURIComponent(TOKEN)}`);
            await agent.locator('#conn-status[data-state="online"]').waitFor();
            await customer.goto(`${BASE}/`);
            cw = await widgetFrame(customer);
            const lang = await cw.evaluate(() => document.documentElement.lang);
            check(lang === (/^en/.test(LOCALE) ? 'en' : 'zh-CN'), `the widget speaks ${lang} in a ${LOCALE} browser`);
            S = await cw.evaluate((l) => window.ChatGWi18n.strings[l], lang);
            await cw.locator('#chat-launcher').click();
            await cw.locator('#chat-input').fill(BEFORE);
            await cw.locator('#chat-input').press('Enter');
            await chat('.msg[data-role="customer"][data-seq]').filter({ hasText: BEFORE }).waitFor();
            await takeConversation(agent, await cw.locator('#chat-log').getAttribute('data-conv'));
            await agent.locator('#agent-input').fill(REPLY_BEFORE);
            await agent.locator('#agent-input').press('Enter');
            await chat('.msg[data-role="agent"]').filter({ hasText: REPLY_BEFORE }).waitFor();
        });

        await driver('@@STOP', 'stopped');

        await step('both pages notice the gateway is gone and keep new messages pending', async () => {
            await cw.locator('#chat-status[data-state="offline"]').waitFor();
            const offline = await cw.locator('#chat-status').innerText();
            const waiting = new RegExp('^' + S.reconnecting.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace('{s}', '\\d+') + '$');
            check(offline === S.offline || waiting.test(offline), `the offline status says ${JSON.stringify(offline)}`);
            await agent.locator('#conn-status[data-state="offline"]').waitFor();
            await cw.locator('#chat-input').fill(DOWN);
            await cw.locator('#chat-input').press('Enter');
            await agent.locator('#agent-input').fill(AGENT_DOWN);
            await agent.locator('#agent-input').press('Enter');
            await chat('.msg[data-state="pending"]').filter({ hasText: DOWN }).waitFor();
            await agent.locator('#agent-log .msg[data-state="pending"]').filter({ hasText: AGENT_DOWN }).waitFor();
            await shot(customer, 'customer-offline');
        });

        await driver('@@START', 'started');

        await step('both reconnect, re-send what was pending and receive the other side', async () => {
            await cw.locator('#chat-status[data-state="online"]').waitFor();
            check((await cw.locator('#chat-status').innerText()) === S.online, 'the status does not say ' + S.online);
            await agent.locator('#conn-status[data-state="online"]').waitFor();
            await chat('.msg[data-role="customer"][data-seq]').filter({ hasText: DOWN }).waitFor();
            await alog('.msg[data-role="agent"][data-seq]').filter({ hasText: AGENT_DOWN }).waitFor();
            await chat('.msg[data-role="agent"]').filter({ hasText: AGENT_DOWN }).waitFor();
            await alog('.msg[data-role="customer"]').filter({ hasText: DOWN }).waitFor();
        });

        await step('transcripts are complete and every message is shown once', async () => {
            const c = await transcript(cw, '#chat-log');
            checkComplete(c, 'customer');
            const a = await transcript(agent, '#agent-log');
            checkComplete(a, 'agent');
            for (const t of [BEFORE, REPLY_BEFORE, DOWN, AGENT_DOWN]) {
                check(c.filter((m) => m.text === t).length === 1, `customer: ${JSON.stringify(t)} not shown exactly once:\n      ${describe(c)}`);
                check(a.filter((m) => m.text === t).length === 1, `agent: ${JSON.stringify(t)} not shown exactly once:\n      ${describe(a)}`);
            }
            await shot(customer, 'customer-after-restart');
        });

        await step('no JavaScript error on either page', async () => {
            check(pageErrors.length === 0, pageErrors.join('\n'));
        });
    } catch (e) {
        if (counts.failed === 0) {
            counts.failed++;
            console.log(`FAIL ${e.message}`);
        }
        await shot(customer, 'fail-restart-customer');
        await shot(agent, 'fail-restart-agent');
        dumpTraces();
    } finally {
        await browser.close();
    }
}

runScenario(main, 'restart');
