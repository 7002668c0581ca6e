#!/usr/bin/env node
// Real-browser playback check for the Cascade player page.
//
//   node tests/browser/play.mjs --url http://127.0.0.1:8080/watch/demo --seconds 20 \
//        [--warmup 5] [--start-timeout 20] [--screenshot out.png] [--chromium /usr/bin/chromium] [--verbose]
//
// Launches Debian's Chromium (never a downloaded browser) through playwright-core, opens the page,
// waits until every stream plays (at most --start-timeout s) plus --warmup s, then samples
// window.cascadeStats once a second for --seconds and prints ONE JSON line on stdout:
//   {"streams": {name: {latency_median, latency_p90, latency_samples, played_seconds,
//                       fatal_errors, non_fatal_errors, starting_retries, stalls, ...}},
//    "console_errors": [...], "page_errors": [...],
//    "live": {requests, cmcd, hls_ctx, shield: {hit, miss}}}   (requests under /live/;
//    hls_ctx: those of a rendition carrying one)
// Exit 0 when it ran (the caller judges the figures); non-zero, with a message on stderr, when the
// browser could not start, the page did not load, or the hard timeout hit.
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const CHROMIUM_ARGS = [
  '--headless=new',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--autoplay-policy=no-user-gesture-required',
  '--mute-audio',
];
const MAX_MESSAGES = 200;

function fail(code, message) {
  process.stderr.write(`play.mjs: ${message}\n`);
  process.exitCode = code;
}

function usage() {
  return 'usage: node tests/browser/play.mjs --url URL --seconds N [--warmup N] [--start-timeout N] [--screenshot FILE] [--chromium PATH] [--verbose]';
}

function parse() {
  const { values } = parseArgs({
    options: {
      url: { type: 'string' },
      seconds: { type: 'string', default: '20' },
      warmup: { type: 'string', default: '5' },
      'start-timeout': { type: 'string', default: '20' },
      screenshot: { type: 'string' },
      chromium: { type: 'string', default: process.env.CHROMIUM || '/usr/bin/chromium' },
      verbose: { type: 'boolean', short: 'v' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(usage() + '\n');
    process.exit(0);
  }
  const num = (name) => {
    const v = Number(values[name]);
    if (!Number.isFinite(v) || v < 0) throw new Error(`--${name} must be a number >= 0`);
    return v;
  };
  if (!values.url) throw new Error('--url is required');
  return {
    url: values.url,
    seconds: num('seconds'),
    warmup: num('warmup'),
    startTimeout: num('start-timeout'),
    screenshot: values.screenshot,
    chromium: values.chromium,
    verbose: !!values.verbose,
  };
}

const T0 = Date.now();
let verbose = false;
function log(message) {
  if (verbose) process.stderr.write(`play.mjs: +${((Date.now() - T0) / 1000).toFixed(1)}s ${message}\n`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// A bound on a cleanup step that must not keep the process alive once the step is done.
const grace = (ms) => new Promise((r) => setTimeout(r, ms).unref());

function quantile(sorted, q) {
  if (!sorted.length) return null;
  if (sorted.length === 1) return sorted[0];
  // Linear interpolation between closest ranks (same as numpy's default).
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

const round3 = (x) => (x === null || x === undefined || !Number.isFinite(x) ? null : Math.round(x * 1000) / 1000);

function pushCapped(list, item) {
  if (list.length < MAX_MESSAGES) list.push(item);
}

async function readStats(page) {
  return page.evaluate(() => {
    const st = window.cascadeStats;
    if (!st || !st.streams) return null;
    const out = {};
    for (const [name, s] of Object.entries(st.streams)) {
      out[name] = {
        latencies: s.latencies.slice(-2000),
        latencyTotal: s.latencyTotal ?? s.latencies.length,
        currentTime: s.currentTime,
        buffered: s.buffered,
        fatalErrors: s.fatalErrors.slice(),
        nonFatalErrors: s.nonFatalErrors,
        startingRetries: s.startingRetries || 0,
        playing: s.playing,
        level: s.level,
        status: s.status,
        mode: s.mode,
      };
    }
    return out;
  });
}

async function run(opts, state) {
  verbose = opts.verbose;
  log(`launching ${opts.chromium}`);
  try {
    state.browser = await chromium.launch({
      executablePath: opts.chromium,
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: 30000,
    });
  } catch (e) {
    fail(2, `could not start the browser at ${opts.chromium}: ${e.message.split('\n')[0]}`);
    return;
  }
  log(`browser ${state.browser.version()} up`);
  const context = await state.browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const consoleErrors = [];
  const pageErrors = [];
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const where = msg.location() && msg.location().url;
    pushCapped(consoleErrors, where ? `${msg.text()} [${where}]` : msg.text());
  });
  page.on('pageerror', (err) => pushCapped(pageErrors, String(err && err.message ? err.message : err)));
  // What the player asked for under /live/: with CMCD, with hls_ctx, and how a shield in
  // front answered (its X-Cascade-Shield header: hit or miss; absent without a shield).
  const live = { requests: 0, cmcd: 0, hls_ctx: 0, shield: {} };
  page.on('response', (r) => {
    const url = r.url();
    if (!url.includes('/live/')) return;
    live.requests += 1;
    if (url.includes('CMCD=')) live.cmcd += 1;
    // hls_ctx on a rendition's playlist or media (the page puts one on the multivariant).
    if (url.includes('hls_ctx=') && !/\/live\/[^/?]+\.m3u8/.test(url)) live.hls_ctx += 1;
    const how = r.headers()['x-cascade-shield'];
    if (how) live.shield[how] = (live.shield[how] || 0) + 1;
  });

  let response;
  try {
    response = await page.goto(opts.url, { waitUntil: 'load', timeout: 20000 });
  } catch (e) {
    fail(3, `page did not load: ${opts.url}: ${e.message.split('\n')[0]}`);
    return;
  }
  if (!response || response.status() >= 400) {
    fail(3, `page did not load: ${opts.url}: HTTP ${response ? response.status() : 'no response'}`);
    return;
  }
  try {
    await page.waitForFunction(() => window.cascadeStats && window.cascadeStats.streams, null, { timeout: 10000 });
  } catch {
    fail(3, `page loaded but window.cascadeStats never appeared (player.js not running?): ${opts.url}`);
    return;
  }

  log('page loaded, player running');
  // Until every stream plays (bounded), then the warm-up.
  const startDeadline = Date.now() + opts.startTimeout * 1000;
  let allStarted = false;
  while (Date.now() < startDeadline) {
    const st = await readStats(page);
    const names = st ? Object.keys(st) : [];
    if (names.length && names.every((n) => st[n].playing)) {
      allStarted = true;
      break;
    }
    await sleep(250);
  }
  log(allStarted ? 'all streams playing' : `not all streams playing after ${opts.startTimeout} s`);
  await sleep(opts.warmup * 1000);
  log('measuring');

  // Measuring window: one sample a second.
  const first = await readStats(page) || {};
  const acc = {};
  for (const [name, s] of Object.entries(first)) {
    acc[name] = { total0: s.latencyTotal, lastTime: s.currentTime, played: 0, stalls: 0 };
  }
  const samples = Math.max(1, Math.round(opts.seconds));
  const t0 = Date.now();
  let last = first;
  for (let i = 1; i <= samples; i++) {
    const wait = t0 + i * (opts.seconds * 1000 / samples) - Date.now();
    if (wait > 0) await sleep(wait);
    last = await readStats(page) || {};
    for (const [name, s] of Object.entries(last)) {
      const a = acc[name] || (acc[name] = { total0: 0, lastTime: s.currentTime, played: 0, stalls: 0 });
      const d = s.currentTime - a.lastTime;
      if (d > 0) a.played += d; // a restarted player resets currentTime: count forward motion only
      else a.stalls += 1;
      a.lastTime = s.currentTime;
    }
  }

  const streams = {};
  for (const [name, s] of Object.entries(last)) {
    const a = acc[name];
    const n = Math.min(Math.max(0, s.latencyTotal - a.total0), s.latencies.length);
    const lat = n > 0 ? s.latencies.slice(-n).filter(Number.isFinite).sort((x, y) => x - y) : [];
    streams[name] = {
      latency_median: round3(quantile(lat, 0.5)),
      latency_p90: round3(quantile(lat, 0.9)),
      latency_samples: lat.length,
      played_seconds: round3(a.played),
      fatal_errors: s.fatalErrors,
      non_fatal_errors: s.nonFatalErrors,
      starting_retries: s.startingRetries,
      stalls: a.stalls,
      started: allStarted,
      status: s.status,
      level: s.level,
      buffered: round3(s.buffered),
      mode: s.mode,
    };
  }

  log('measured');
  if (opts.screenshot) {
    try {
      await page.screenshot({ path: opts.screenshot, timeout: 10000 });
    } catch (e) {
      process.stderr.write(`play.mjs: screenshot failed: ${e.message.split('\n')[0]}\n`);
    }
  }

  const result = {
    url: opts.url,
    seconds: opts.seconds,
    warmup: opts.warmup,
    streams,
    console_errors: consoleErrors,
    page_errors: pageErrors,
    live,
  };
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exitCode = 0;
}

async function main() {
  let opts;
  try {
    opts = parse();
  } catch (e) {
    fail(64, `${e.message}\n${usage()}`);
    return;
  }
  const state = { browser: null };
  // seconds + warmup + 30, plus whatever --start-timeout adds beyond its default 20.
  const hardMs = (opts.seconds + opts.warmup + 30 + Math.max(0, opts.startTimeout - 20)) * 1000;
  const hard = setTimeout(async () => {
    process.stderr.write(`play.mjs: hard timeout after ${hardMs / 1000} s\n`);
    // playwright kills the browser's process group on exit as well; close politely first.
    if (state.browser) await Promise.race([state.browser.close().catch(() => {}), grace(5000)]);
    process.exit(4);
  }, hardMs);
  try {
    await run(opts, state);
  } catch (e) {
    fail(5, `unexpected error: ${e && e.stack ? e.stack : e}`);
  } finally {
    if (state.browser) await Promise.race([state.browser.close().catch(() => {}), grace(10000)]);
    log('browser closed');
    clearTimeout(hard);
  }
}

await main();
