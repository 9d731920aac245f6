#!/usr/bin/env node
// two_tabs.mjs -- end-to-end browser test of the customer widget and the agent console.
//
//   node tests/browser/two_tabs.mjs BASE_URL AGENT_TOKEN
//
// BASE_URL is a running gateway (http://127.0.0.1:PORT) with a router behind it; AGENT_TOKEN an
// agent token named Alice with the skill the router sends new web conversations to ("general").
// Uses Debian's chromium (/usr/bin/chromium, or $CHROMIUM) through playwright-core: no browser
// download. Screenshots go to build/browser-*.png. Prints "browser: N passed, 0 failed" and exits
// 0, or names the failed step, dumps the recent WebSocket frames of both pages and exits 1.
import fs from 'node:fs';
import path from 'node:path';
import {
    OUT, StepError, check, checkComplete, counts, describe, dumpTraces, launch, newPage, pageErrors,
    same, shot, step, takeConversation, transcript, until,
    runScenario,
    widgetFrame,
} from './lib.mjs';

const HELLO = 'Hello, where is my order 12345?';
const MARKUP = '<b>bold?</b> <img src=x onerror="window.__xss=1">';
const REPLY = 'It ships today';
const FOLLOW_UP = 'Anything else I can help with?';
const ONE_MORE = 'One more thing: can I change the address?';

const [BASE_ARG, TOKEN] = process.argv.slice(2);
if (!BASE_ARG || !TOKEN) {
    console.error('usage: node two_tabs.mjs BASE_URL AGENT_TOKEN');
    process.exit(2);
}
const BASE = BASE_ARG.replace(/\/+$/, '');

async function main() {
    const browser = await launch();
    for (const f of fs.readdirSync(OUT)) if (/^browser-fail-.*\.png$/.test(f)) fs.rmSync(path.join(OUT, f));
    const customer = await newPage(browser, 'customer', { width: 1200, height: 800 });
    let cw; // the widget's iframe in the customer page (widget.js): again after each goto/reload
    const agent = await newPage(browser, 'agent', { width: 1280, height: 800 });
    const chat = (sel) => cw.locator(`#chat-log ${sel}`);
    const alog = (sel) => agent.locator(`#agent-log ${sel}`);
    let conv = '';
    let before = [];

    try {
        await step('agent console loads and connects with the token from #token=', async () => {
            const resp = await agent.goto(`${BASE}/agent#token=${encodeURIComponent(TOKEN)}`);
            check(resp && resp.ok(), `GET /agent: HTTP ${resp && resp.status()}`);
            await agent.locator('#conn-status[data-state="online"]').waitFor();
            check(!agent.url().includes(TOKEN), 'the token is still in the address bar');
            await agent.locator('#queue-list').waitFor();
        });

        await step('agent status toggle: away, then online', async () => {
            const toggle = agent.locator('#status-toggle');
            if ((await toggle.getAttribute('data-status')) === 'online') {
                await toggle.click();
                await agent.locator('#status-toggle[data-status="away"]').waitFor();
            }
            await toggle.click();
            await agent.locator('#status-toggle[data-status="online"]').waitFor();
        });

        await step('customer opens the widget and connects', async () => {
            const resp = await customer.goto(`${BASE}/`);
            cw = await widgetFrame(customer);
            check(resp && resp.ok(), `GET /: HTTP ${resp && resp.status()}`);
            await cw.locator('#chat-launcher').click();
            await cw.locator('#chat-input').waitFor({ state: 'visible' });
            await cw.locator('#chat-status[data-state="online"]').waitFor();
            const tok = await cw.evaluate(() => localStorage.getItem('chatgw_token'));
            check(tok && tok.split('.').length === 3, `no session token stored from welcome (got ${tok})`);
        });

        await step('customer message is acknowledged (seq) and shown once', async () => {
            await cw.locator('#chat-input').fill(HELLO);
            await cw.locator('#chat-input').press('Enter');
            await chat(`.msg[data-role="customer"][data-seq]`).filter({ hasText: HELLO }).waitFor();
            check((await cw.locator('#chat-input').inputValue()) === '', 'the input was not cleared');
            conv = await cw.locator('#chat-log').getAttribute('data-conv');
            check(conv, 'the widget has no conversation id after the ack');
        });

        await step('customer sees the greeting, an auto-reply or the assignment', async () => {
            await chat('.msg[data-role="system"], .msg[data-role="bot"], .msg[data-type="assigned"]').first().waitFor();
        });

        await step('agent gets the conversation (assigned, or picked from the queue)', async () => {
            await takeConversation(agent, conv);
        });

        await step("agent sees the customer's message", async () => {
            await alog('.msg[data-role="customer"]').filter({ hasText: HELLO }).waitFor();
            await agent.locator('#agent-input:enabled').waitFor();
            await agent.locator('#close-btn:enabled').waitFor();
        });

        await step('markup typed by the customer is shown as text on both sides', async () => {
            await cw.locator('#chat-input').fill(MARKUP);
            await cw.locator('#chat-send').click();
            await chat('.msg[data-role="customer"][data-seq]').filter({ hasText: MARKUP }).waitFor();
            await alog('.msg[data-role="customer"]').filter({ hasText: MARKUP }).waitFor();
            for (const [page, root] of [[cw, '#chat-log'], [agent, '#agent-log']]) {
                check(await page.evaluate(() => window.__xss === undefined), 'injected markup ran');
                check((await page.locator(`${root} .msg img, ${root} .msg b`).count()) === 0, `markup became elements in ${root}`);
            }
        });

        await step('agent replies and the customer sees it', async () => {
            await agent.locator('#agent-input').fill(REPLY);
            await agent.locator('#agent-send').click();
            await alog('.msg[data-role="agent"][data-seq]').filter({ hasText: REPLY }).waitFor();
            await chat('.msg[data-role="agent"]').filter({ hasText: REPLY }).waitFor();
            await shot(customer, 'customer-chat');
            await shot(agent, 'agent-chat');
        });

        await step('customer transcript is complete: seq 1..n, no duplicate, own messages once', async () => {
            before = await until(async () => {
                const t = await transcript(cw, '#chat-log');
                return t.every((m) => m.seq > 0) ? t : null;
            }, 'every customer message to be acknowledged');
            checkComplete(before, 'customer');
            check(before.filter((m) => m.text === HELLO).length === 1, `the first message is not shown exactly once:\n      ${describe(before)}`);
        });

        await step('reloading the customer tab brings back the same transcript', async () => {
            await customer.reload();
            cw = await widgetFrame(customer);
            await cw.locator('#chat-status[data-state="online"]').waitFor();
            // the agent's next message is sent after the resume: once it is shown, anything the
            // gateway re-sent on resume has arrived before it
            await agent.locator('#agent-input').fill(FOLLOW_UP);
            await agent.locator('#agent-input').press('Enter');
            await chat('.msg[data-role="agent"]').filter({ hasText: FOLLOW_UP }).waitFor();
            const after = await transcript(cw, '#chat-log');
            checkComplete(after, 'customer after reload');
            check(same(after.slice(0, before.length), before),
                `transcript changed across the reload:\n   before ${describe(before)}\n   after  ${describe(after)}`);
            check(after.filter((m) => m.text === FOLLOW_UP).length === 1, 'the follow-up is not shown exactly once');
            before = after;
            await shot(customer, 'customer-reload');
        });

        await step('with its cache cleared, the widget rebuilds the transcript from the server', async () => {
            await cw.evaluate(() => localStorage.removeItem('chatgw_log'));
            await customer.reload();
            cw = await widgetFrame(customer);
            await cw.locator('#chat-status[data-state="online"]').waitFor();
            const want = before[before.length - 1].seq;
            const after = await until(async () => {
                const t = await transcript(cw, '#chat-log');
                return t.some((m) => m.seq === want) ? t : null;
            }, `the replay to reach seq ${want}`);
            checkComplete(after, 'customer after replay');
            check(same(after.slice(0, before.length), before),
                `replayed transcript differs:\n   before ${describe(before)}\n   after  ${describe(after)}`);
            before = after;
        });

        await step('agent closes the conversation and the customer sees it closed', async () => {
            await agent.locator('#close-btn').click();
            // End chat asks first: the configured first resolution is preselected
            await agent.locator('#close-dialog[open]').waitFor();
            check((await agent.locator('#close-resolution').inputValue()) === 'resolved', 'resolved is not preselected');
            await agent.locator('#close-confirm').click();
            await chat('.msg[data-type="closed"]').filter({ hasText: 'Conversation closed' }).waitFor();
            await agent.locator(`.conv-item[data-conv="${conv}"][data-state="closed"]`).waitFor();
            await agent.locator('#agent-input:disabled').waitFor();
            await shot(customer, 'customer-closed');
            await shot(agent, 'agent-closed');
        });

        await step('both transcripts end complete and without duplicates', async () => {
            const c = await transcript(cw, '#chat-log');
            checkComplete(c, 'customer');
            const a = await transcript(agent, '#agent-log');
            const seqs = a.map((m) => m.seq);
            check(seqs.every((s) => s > 0) && new Set(seqs).size === seqs.length, `agent: pending or duplicate:\n      ${describe(a)}`);
            for (const t of [HELLO, MARKUP, REPLY, FOLLOW_UP]) {
                check(a.filter((m) => m.text === t).length === 1, `agent: ${JSON.stringify(t)} not shown exactly once:\n      ${describe(a)}`);
                check(c.filter((m) => m.text === t).length === 1, `customer: ${JSON.stringify(t)} not shown exactly once:\n      ${describe(c)}`);
            }
            const last = c[c.length - 1].seq;
            check(a.some((m) => m.seq === last), `agent transcript lacks seq ${last}:\n      ${describe(a)}`);
        });

        await step('after the close, a new message starts a new conversation', async () => {
            // away: the router should queue the new conversation instead of assigning it, so that
            // the agent picks it from the queue
            await agent.locator('#status-toggle').click();
            await agent.locator('#status-toggle[data-status="away"]').waitFor();
            await cw.locator('#chat-input').fill(ONE_MORE);
            await cw.locator('#chat-input').press('Enter');
            await chat('.msg[data-role="customer"][data-seq]').filter({ hasText: ONE_MORE }).waitFor();
            const conv2 = await cw.locator('#chat-log').getAttribute('data-conv');
            check(conv2 && conv2 !== conv, `the widget still uses the closed conversation ${conv}`);
            await cw.locator(`#chat-log .conv-section[data-conv="${conv2}"] .conv-divider`).waitFor();
            const t = await transcript(cw, `#chat-log .conv-section[data-conv="${conv2}"]`);
            check(t.length >= 1 && t[0].seq === 1 && t[0].text === ONE_MORE, `new conversation does not start with seq 1:\n      ${describe(t)}`);
            await shot(customer, 'customer-new-conversation');
            conv = conv2;
        });

        await step('the away agent sees it waiting in the queue and picks it', async () => {
            const item = agent.locator(`.conv-item[data-conv="${conv}"]`);
            const queued = agent.locator(`.queue-item[data-conv="${conv}"]`);
            await item.or(queued).first().waitFor();
            if (await item.count()) {
                console.log('     (the router assigned it before it saw the agent go away: nothing to pick)');
            } else {
                await queued.filter({ hasText: ONE_MORE }).waitFor();
                await until(async () => /^\d+:\d\d$/.test((await queued.locator('.wait').textContent()) || ''),
                    'the waiting time to be shown');
                await shot(agent, 'agent-queue');
                await queued.locator('.pick-btn').click();
                const refused = agent.locator('#agent-error:visible');
                await item.or(refused).first().waitFor();
                if (!(await item.count())) throw new StepError(`pick refused: ${await refused.textContent()}`);
                await queued.waitFor({ state: 'detached' });
            }
            await agent.locator(`.conv-item.active[data-conv="${conv}"]`).waitFor();
            await alog('.msg[data-role="customer"]').filter({ hasText: ONE_MORE }).waitFor();
            await chat('.msg[data-type="assigned"]').filter({ hasText: 'Alice joined' }).last().waitFor();
        });

        await step('no JavaScript error on either page', async () => {
            check(pageErrors.length === 0, pageErrors.join('\n'));
        });
    } catch (e) {
        await shot(customer, 'fail-customer');
        await shot(agent, 'fail-agent');
        dumpTraces();
    } finally {
        await browser.close();
    }
}

runScenario(main);
