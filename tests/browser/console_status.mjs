#!/usr/bin/env node
// console_status.mjs -- browser test of the agent console's status: the console never goes online
// by itself, and the agent's choice survives a reload.
//
//   node tests/browser/console_status.mjs BASE_URL AGENT_TOKEN [desk-away]
//
// BASE_URL is a running gateway with one router behind it (push queue `general`, no offer
// timeout); AGENT_TOKEN an agent of `general` with room for three conversations. Steps:
//   - a fresh console shows Away and says so in its hello; a customer who writes waits in the
//     console's queue (the router queued it: nothing was assigned);
//   - clicking the toggle goes Online: that conversation is assigned to the console;
//   - a reload keeps Online (hello says online, no presence is sent, the assignment is not
//     offered again) and a second customer is assigned at once; a new tab of the same browser
//     also starts Online (the choice is in localStorage), and shows Away when the first tab
//     chooses Away (without sending a presence of its own);
//   - after choosing Away, a reload keeps Away (hello says away) and a third customer waits in
//     the queue although the agent has a free slot.
// With `desk-away` (a router with offer_timeout_s = 1 and offer_max_misses = 1) instead: the
// online console does not answer its conversation, the desk takes it back and sets the agent
// away; the console shows Away, and after a reload still Away: the conversation stays in the
// queue (the reload does not get it offered again).
// Screenshots go to build/browser-status-*.png (browser-fail-status-*.png on failure). Prints
// "browser: N passed, 0 failed" and exits 0, or names the failed step and exits 1.
import fs from 'node:fs';
import path from 'node:path';
import {
    OUT, check, dumpTraces, goOnline, launch, newPage, pageErrors, shot, step, trace, TIMEOUT,
    runScenario,
    widgetFrame,
} from './lib.mjs';

const [BASE_ARG, TOKEN, MODE = 'choice'] = process.argv.slice(2);
if (!BASE_ARG || !TOKEN || !['choice', 'desk-away'].includes(MODE)) {
    console.error('usage: node console_status.mjs BASE_URL AGENT_TOKEN [desk-away]');
    process.exit(2);
}
const BASE = BASE_ARG.replace(/\/+$/, '');

// Every WebSocket the page opens, in order, with the JSON frames it sent.
function sockets(page) {
    const list = [];
    page.on('websocket', (ws) => {
        const s = { url: ws.url(), sent: [] };
        list.push(s);
        ws.on('framesent', (f) => {
            try { s.sent.push(JSON.parse(f.payload)); } catch (e) { s.sent.push({ raw: String(f.payload) }); }
        });
    });
    return list;
}

// A frame for a failure message, without the token.
function show(f) {
    return JSON.stringify(f, (k, v) => (k === 'token' ? '<redacted>' : v));
}

function sentOfType(sock, type) {
    return sock.sent.filter((f) => f.type === type);
}

// The console is connected (welcome received) on a new socket: that socket.
async function connected(page, list, before) {
    await page.locator('#conn-status[data-state="online"]').waitFor();
    check(list.length > before, `no new WebSocket was opened (${list.length} so far)`);
    const s = list[list.length - 1];
    const hellos = sentOfType(s, 'hello');
    check(hellos.length === 1, `expected one hello on the new socket, got ${show(hellos)}`);
    return s;
}

async function status(page) {
    return page.locator('#status-toggle').getAttribute('data-status');
}

// A new customer (own browser context) writes text: its conversation id.
async function customerWrites(browser, who, text) {
    const page = await newPage(browser, who, { width: 1000, height: 760 });
    const resp = await page.goto(`${BASE}/`);
    check(resp && resp.ok(), `GET /: HTTP ${resp && resp.status()}`);
    const w = await widgetFrame(page); // the widget's iframe (widget.js)
    await w.locator('#chat-launcher').click();
    await w.locator('#chat-status[data-state="online"]').waitFor();
    await w.locator('#chat-input').fill(text);
    await w.locator('#chat-input').press('Enter');
    await w.locator('#chat-log .msg[data-role="customer"][data-seq]').filter({ hasText: text }).waitFor();
    const conv = await w.locator('#chat-log').getAttribute('data-conv');
    check(conv, `${who}: no conversation id after the ack`);
    return { page, w, conv };
}

// The agent's own choices: Away until it clicks, kept across reloads and in a new tab.
async function choice(browser, agent, socks, customers) {
    let second = null;
    let socks2 = [];
    await step('a fresh console connects Away and says so in its hello', async () => {
        const resp = await agent.goto(`${BASE}/agent#token=${encodeURIComponent(TOKEN)}`);
        check(resp && resp.ok(), `GET /agent: HTTP ${resp && resp.status()}`);
        const s = await connected(agent, socks, 0);
        check(await status(agent) === 'away', `the toggle shows ${await status(agent)}, not away`);
        const text = await agent.locator('#status-toggle').textContent();
        check(/away/i.test(text) && /go online/i.test(text), `the toggle says ${JSON.stringify(text)}`);
        const hello = sentOfType(s, 'hello')[0];
        check(hello.code === 'away', `the hello says ${JSON.stringify(hello.code)}, not away`);
        check(sentOfType(s, 'presence').length === 0, `a presence was sent: ${show(s.sent)}`);
    });

    await step('a customer writes: the away console gets nothing, the conversation waits', async () => {
        customers.push(await customerWrites(browser, 'customer1', 'First customer, anyone there?'));
        const { conv } = customers[0];
        // the router decided: queued (an online agent with a free slot would have got it)
        await agent.locator(`.queue-item[data-conv="${conv}"]`).waitFor();
        check(await agent.locator(`.conv-item[data-conv="${conv}"]`).count() === 0,
            'the conversation is also in the console as assigned');
        check(await agent.locator('.conv-item').count() === 0, 'the away console has conversations');
        check(await customers[0].w.locator('#chat-log .msg[data-type="assigned"]').count() === 0,
            'the customer was told an agent joined');
        await shot(agent, 'status-away-queued');
    });

    await step('clicking the toggle goes Online and the waiting conversation is assigned', async () => {
        const { conv, w: page } = customers[0];
        await agent.locator('#status-toggle').click();
        await agent.locator('#status-toggle[data-status="online"]').waitFor();
        const p = sentOfType(socks[socks.length - 1], 'presence');
        check(p.length === 1 && p[0].code === 'online', `presence sent: ${JSON.stringify(p)}`);
        await agent.locator(`.conv-item[data-conv="${conv}"]`).waitFor();
        await agent.locator(`.queue-item[data-conv="${conv}"]`).waitFor({ state: 'detached' });
        await page.locator('#chat-log .msg[data-type="assigned"]').waitFor();
    });

    await step('a reload keeps Online: hello says online, nothing re-offered, next customer assigned', async () => {
        const before = socks.length;
        await agent.reload();
        const s = await connected(agent, socks, before);
        check(await status(agent) === 'online', `after the reload the toggle shows ${await status(agent)}`);
        const hello = sentOfType(s, 'hello')[0];
        check(hello.code === 'online', `the hello after the reload says ${JSON.stringify(hello.code)}`);
        const { conv, w: page } = customers[0];
        await agent.locator(`.conv-item[data-conv="${conv}"]`).waitFor();
        // an online agent with a free slot gets the next customer at once (no pick)
        customers.push(await customerWrites(browser, 'customer2', 'Second customer here'));
        await agent.locator(`.conv-item[data-conv="${customers[1].conv}"]`).waitFor();
        check(await status(agent) === 'online', `the toggle flipped to ${await status(agent)}`);
        check(sentOfType(s, 'presence').length === 0, `a presence was sent after the reload: ${show(s.sent)}`);
        // the first conversation was assigned once: no second "joined" for its customer
        const joined = await page.locator('#chat-log .msg[data-type="assigned"]').count();
        check(joined === 1, `the first customer saw ${joined} assignments`);
        await shot(agent, 'status-online-reloaded');
    });

    await step('a new tab of the same browser starts Online too', async () => {
        second = await agent.context().newPage();
        second.setDefaultTimeout(TIMEOUT);
        trace(second, 'agent-tab2');
        socks2 = sockets(second);
        const resp = await second.goto(`${BASE}/agent#token=${encodeURIComponent(TOKEN)}`);
        check(resp && resp.ok(), `GET /agent: HTTP ${resp && resp.status()}`);
        const s = await connected(second, socks2, 0);
        check(await status(second) === 'online', `the new tab shows ${await status(second)}`);
        check(sentOfType(s, 'hello')[0].code === 'online', `its hello: ${show(s.sent[0])}`);
    });

    await step('choosing Away in one tab shows Away in the other (the status is the agent\'s)', async () => {
        await agent.locator('#status-toggle').click();
        await agent.locator('#status-toggle[data-status="away"]').waitFor();
        const p = sentOfType(socks[socks.length - 1], 'presence');
        check(p.length === 1 && p[0].code === 'away', `presence sent: ${JSON.stringify(p)}`);
        await second.locator('#status-toggle[data-status="away"]').waitFor();
        const p2 = sentOfType(socks2[socks2.length - 1], 'presence');
        check(p2.length === 0, `the other tab sent a presence: ${JSON.stringify(p2)}`);
        await second.close();
    });

    await step('after choosing Away, a reload keeps Away; the next customer waits', async () => {
        const before = socks.length;
        await agent.reload();
        const s = await connected(agent, socks, before);
        check(await status(agent) === 'away', `after the reload the toggle shows ${await status(agent)}`);
        check(sentOfType(s, 'hello')[0].code === 'away', `the hello after the reload: ${show(s.sent[0])}`);
        // two of three slots used: only the status keeps the third customer waiting
        customers.push(await customerWrites(browser, 'customer3', 'Third customer waiting'));
        const conv = customers[2].conv;
        await agent.locator(`.queue-item[data-conv="${conv}"]`).waitFor();
        check(await agent.locator(`.conv-item[data-conv="${conv}"]`).count() === 0, 'the third conversation was assigned');
        check(await agent.locator('.conv-item').count() === 2, `the console has ${await agent.locator('.conv-item').count()} conversations`);
        check(await status(agent) === 'away', `the toggle flipped to ${await status(agent)}`);
        check(sentOfType(s, 'presence').length === 0, `a presence was sent after the reload: ${show(s.sent)}`);
        await shot(agent, 'status-away-reloaded');
    });
}

// The desk's choice: away after a missed offer, kept across a reload.
async function deskAway(browser, agent, socks, customers) {
    await step('an online console that misses its offer is set Away by the desk', async () => {
        const resp = await agent.goto(`${BASE}/agent#token=${encodeURIComponent(TOKEN)}`);
        check(resp && resp.ok(), `GET /agent: HTTP ${resp && resp.status()}`);
        await connected(agent, socks, 0);
        await goOnline(agent);
        customers.push(await customerWrites(browser, 'customer1', 'Nobody answers me'));
        const { conv } = customers[0];
        await agent.locator(`.conv-item[data-conv="${conv}"]`).waitFor();
        // offer_timeout_s later: taken back, the agent set away (a presence frame)
        await agent.locator('#status-toggle[data-status="away"]').waitFor();
        await agent.locator(`.queue-item[data-conv="${conv}"]`).waitFor();
        await shot(agent, 'status-desk-away');
    });

    await step('a reload keeps the desk\'s Away: the conversation is not offered again', async () => {
        const before = socks.length;
        await agent.reload();
        const s = await connected(agent, socks, before);
        check(await status(agent) === 'away', `after the reload the toggle shows ${await status(agent)}`);
        // the queue as the router left it after a later enqueue: the first conversation still waits
        customers.push(await customerWrites(browser, 'customer2', 'Me too'));
        await agent.locator(`.queue-item[data-conv="${customers[1].conv}"]`).waitFor();
        check(await agent.locator(`.queue-item[data-conv="${customers[0].conv}"]`).count() === 1,
            'the first conversation is no longer waiting: the reload got it offered again');
        check(sentOfType(s, 'hello')[0].code === 'away', `the hello after the reload: ${show(s.sent[0])}`);
        check(sentOfType(s, 'presence').length === 0, `a presence was sent after the reload: ${show(s.sent)}`);
        check(await status(agent) === 'away', `the toggle flipped to ${await status(agent)}`);
    });
}

async function main() {
    const browser = await launch();
    for (const f of fs.readdirSync(OUT)) if (/^browser-fail-status-.*\.png$/.test(f)) fs.rmSync(path.join(OUT, f));
    const agent = await newPage(browser, 'agent', { width: 1280, height: 800 });
    const socks = sockets(agent);
    const customers = [];
    try {
        await (MODE === 'desk-away' ? deskAway : choice)(browser, agent, socks, customers);
        await step('no JavaScript error on any page', async () => {
            check(pageErrors.length === 0, pageErrors.join('\n'));
        });
    } catch (e) {
        await shot(agent, 'fail-status-agent');
        for (const [i, c] of customers.entries()) await shot(c.page, `fail-status-customer${i + 1}`);
        dumpTraces();
    } finally {
        await browser.close();
    }
}

runScenario(main);
