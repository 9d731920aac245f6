// lib.mjs -- helpers shared by the browser tests (two_tabs.mjs, restart.mjs, transfer.mjs, ...): Debian's chromium
// through playwright-core, steps with a pass/fail count, expect.poll-style waiting, WebSocket frame
// traces for failure reports, and reading the transcript a page shows.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const OUT = path.resolve(HERE, '..', '..', 'build');
export const TIMEOUT = Number(process.env.BROWSER_TIMEOUT_MS || 20000);
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'];

export const counts = { passed: 0, failed: 0 };
export const pageErrors = [];
export const traces = {};

export class StepError extends Error {}

export function check(cond, message) {
    if (!cond) throw new StepError(message);
}

export async function step(name, fn) {
    const t0 = Date.now();
    try {
        await fn();
    } catch (e) {
        counts.failed++;
        console.log(`FAIL ${name} (${Date.now() - t0} ms): ${e instanceof StepError ? e.message : e.stack || e}`);
        throw e;
    }
    counts.passed++;
    console.log(`ok   ${name} (${Date.now() - t0} ms)`);
}

// Poll an async predicate (expect.poll style) until it returns a truthy value.
export async function until(pred, what, timeout = TIMEOUT) {
    const deadline = Date.now() + timeout;
    let last;
    for (let i = 0; ; i++) {
        try {
            const v = await pred();
            if (v) return v;
        } catch (e) {
            last = e;
        }
        if (Date.now() > deadline) {
            throw new StepError(`timed out after ${timeout} ms waiting for ${what}` + (last ? ` (last error: ${last.message})` : ''));
        }
        await new Promise((r) => setTimeout(r, Math.min(50 * (i + 1), 250)));
    }
}

function redact(s) {
    return String(s).replace(/"token"\s*:\s*"[^"]*"/g, '"token":"<redacted>"');
}

// Record the page's errors, console warnings and WebSocket frames under traces[who]; a
// Content-Security-Policy violation counts as a page error.
export function trace(page, who) {
    traces[who] = traces[who] || [];
    page.on('pageerror', (e) => pageErrors.push(`${who}: ${e.message}`));
    page.on('console', (m) => {
        if (m.type() === 'error' || m.type() === 'warning') traces[who].push(`console.${m.type()}: ${m.text()}`);
        // the gateway's Content-Security-Policy must not block anything the pages do
        if (/Content Security Policy/i.test(m.text())) pageErrors.push(`${who}: ${m.text()}`);
    });
    page.on('websocket', (ws) => {
        traces[who].push(`ws open ${ws.url()}`);
        ws.on('framesent', (f) => traces[who].push(`-> ${redact(f.payload)}`));
        ws.on('framereceived', (f) => traces[who].push(`<- ${redact(f.payload)}`));
        ws.on('close', () => traces[who].push('ws closed'));
    });
}

export function dumpTraces() {
    for (const who of Object.keys(traces)) {
        console.log(`--- last WebSocket frames and console messages of the ${who} page:`);
        for (const l of traces[who].slice(-40)) console.log('    ' + l.slice(0, 400));
    }
    if (pageErrors.length) console.log('--- page errors:\n    ' + pageErrors.join('\n    '));
}

// The transcript as the page shows it: every .msg under root, in order.
export async function transcript(page, root) {
    return page.$$eval(`${root} .msg`, (els) => els.map((e) => ({
        seq: Number(e.dataset.seq || 0),
        role: e.dataset.role || '',
        type: e.dataset.type || '',
        state: e.dataset.state || '',
        text: (e.querySelector('.msg-text') || e.querySelector('.event-text') || { textContent: '' }).textContent,
    })));
}

export function describe(list) {
    return list.map((m) => `${m.seq || '-'}:${m.role}/${m.type}${m.state ? '[' + m.state + ']' : ''} ${JSON.stringify(m.text).slice(0, 60)}`).join('\n      ');
}

// Every message has a seq, no seq twice, 1..max without a gap, in order.
export function checkComplete(list, who) {
    const seqs = list.map((m) => m.seq);
    check(seqs.every((s) => s > 0), `${who}: a message without seq (still pending?):\n      ${describe(list)}`);
    check(new Set(seqs).size === seqs.length, `${who}: duplicate seq:\n      ${describe(list)}`);
    for (let i = 0; i < seqs.length; i++) {
        check(seqs[i] === i + 1, `${who}: expected seq ${i + 1} at position ${i + 1}, got ${seqs[i]}:\n      ${describe(list)}`);
    }
}

export function same(a, b) {
    const k = (m) => `${m.seq}|${m.role}|${m.type}|${m.text}`;
    return a.length === b.length && a.every((m, i) => k(m) === k(b[i]));
}

export async function shot(page, name) {
    try {
        await page.screenshot({ path: path.join(OUT, `browser-${name}.png`) });
    } catch (e) {
        console.log(`(screenshot ${name} failed: ${e.message})`);
    }
}

// The claims of a JWT (sub, name, skills), read without checking the signature.
export function jwtClaims(token) {
    try {
        return JSON.parse(Buffer.from(String(token).split('.')[1], 'base64url').toString('utf8'));
    } catch (e) {
        return {};
    }
}

// Launch Debian's chromium (never a downloaded browser); clears old failure screenshots.
export async function launch() {
    fs.mkdirSync(OUT, { recursive: true });
    if (!fs.existsSync(CHROMIUM)) {
        console.error(`browser: ${CHROMIUM} not found (apt-get install chromium)`);
        process.exit(2);
    }
    return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
}

// A page in a context of its own; options: more browser context options (locale, ...).
export async function newPage(browser, who, viewport, options = {}) {
    // BROWSER_IGNORE_HTTPS_ERRORS=1: a gateway serving https with the test's self-signed certificate
    const ignoreHTTPSErrors = process.env.BROWSER_IGNORE_HTTPS_ERRORS === '1';
    const ctx = await browser.newContext({ viewport, ignoreHTTPSErrors, ...options });
    const page = await ctx.newPage();
    page.setDefaultTimeout(TIMEOUT);
    trace(page, who);
    return page;
}

// The customer chat's iframe in page: widget.js puts it in a closed shadow root, so it is found by
// its URL (a reload makes a new one: ask again after page.goto or page.reload).
export async function widgetFrame(page) {
    return until(() => page.frames().find((f) => /\/widget-frame\.html(#|$)/.test(f.url())), 'the widget iframe');
}

// A minimal agent: a WebSocket (online) from a page of the gateway's origin base, so that the
// widget alone is under test; the frames it gets are kept in the page's window.A.frames.
export async function rawAgent(page, base, token) {
    await page.goto(`${base}/healthz`);
    await page.evaluate(([tok]) => new Promise((resolve, reject) => {
        const ws = new WebSocket(location.origin.replace(/^http/, 'ws') + '/ws/agent', ['chatgw.json.v1']);
        window.A = { frames: [], send: (o) => ws.send(JSON.stringify(o)), ws };
        ws.onmessage = (e) => { const f = JSON.parse(e.data); window.A.frames.push(f); if (f.type === 'welcome') resolve(); };
        ws.onopen = () => ws.send(JSON.stringify({ type: 'hello', token: tok, code: 'online' }));
        ws.onerror = () => reject(new Error('agent socket failed'));
    }), [token]);
}

// The first frame rawAgent's page got that pred accepts (waits for it).
export async function agentSees(page, pred, what) {
    return until(async () => (await page.evaluate(() => window.A.frames)).find(pred), what);
}

// A connected agent console chooses Online (a console connects Away until its agent chooses).
export async function goOnline(page) {
    await page.locator('#conn-status[data-state="online"]').waitFor();
    const toggle = page.locator('#status-toggle');
    if ((await toggle.getAttribute('data-status')) !== 'online') await toggle.click();
    await page.locator('#status-toggle[data-status="online"]').waitFor();
}

// The agent console gets conversation conv: assigned to it, or picked from the queue.
export async function takeConversation(agent, conv) {
    const item = agent.locator(`.conv-item[data-conv="${conv}"]`);
    const queued = agent.locator(`.queue-item[data-conv="${conv}"]`);
    await item.or(queued).first().waitFor();
    if (!(await item.count())) {
        console.log('     (the conversation is waiting in the queue: picking it)');
        await queued.locator('.pick-btn').click();
        const refused = agent.locator('#agent-error:visible');
        await item.or(refused).first().waitFor();
        if (!(await item.count())) throw new StepError(`pick refused: ${await refused.textContent()}`);
    }
    await item.click();
    await agent.locator(`.conv-item.active[data-conv="${conv}"]`).waitFor();
}

/* Run a scenario's main(): print the summary line the pytest wrapper reads and exit 0 when every
 * step passed, 1 otherwise (also when the harness itself failed, counted as one failure). */
export function runScenario(main, tag = 'browser') {
    main().then(() => {
        console.log(`${tag}: ${counts.passed} passed, ${counts.failed} failed`);
        process.exit(counts.failed ? 1 : 0);
    }, (e) => {
        console.error(`${tag}: harness error:`, e.stack || e);
        console.log(`${tag}: ${counts.passed} passed, ${counts.failed + 1} failed`);
        process.exit(1);
    });
}
