#!/usr/bin/env node
// Real-browser check that hls.js plays a VOD playlist to its end.
//
//   node tests/browser/vod.mjs --edge http://127.0.0.1:8080 --playlist /vod/demo/ID/360p.m3u8 \
//        [--timeout 60] [--rate 2] [--chromium /usr/bin/chromium]
//
// Launches Debian's Chromium (never a downloaded browser) through playwright-core, opens the
// edge's /livez (same origin), loads the edge's own hls.js (/static/hls.min.js) into a page with
// one <video>, plays the playlist at --rate and waits for the video's "ended" event (at most
// --timeout s). Prints ONE JSON line: {ended, duration, current_time, played_seconds,
// discontinuities_crossed, fatal_errors, errors, levels}. Exit 0 when it ran (the caller judges);
// non-zero with a message on stderr when the browser or page could not start.
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const { values } = parseArgs({
  options: {
    edge: { type: 'string' },
    playlist: { type: 'string' },
    timeout: { type: 'string', default: '60' },
    rate: { type: 'string', default: '2' },
    chromium: { type: 'string', default: process.env.CHROMIUM || '/usr/bin/chromium' },
  },
});
if (!values.edge || !values.playlist) {
  process.stderr.write('usage: node tests/browser/vod.mjs --edge URL --playlist PATH [--timeout N] [--rate N]\n');
  process.exit(2);
}
const timeout = Number(values.timeout) * 1000;
let browser;
try {
  browser = await chromium.launch({
    executablePath: values.chromium,
    args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--no-first-run', '--mute-audio',
           '--autoplay-policy=no-user-gesture-required', '--disable-background-networking'],
  });
} catch (e) {
  process.stderr.write(`vod.mjs: could not start the browser: ${e.message.split('\n')[0]}\n`);
  process.exit(2);
}
try {
  const page = await browser.newPage();
  await page.goto(`${values.edge}/livez`);
  await page.addScriptTag({ url: '/static/hls.min.js' });
  const result = await page.evaluate(async ({ playlist, timeout, rate }) => {
    const video = document.createElement('video');
    video.muted = true;
    document.body.appendChild(video);
    const out = { ended: false, fatal_errors: 0, errors: [], discontinuities_crossed: 0, levels: 0 };
    const hls = new window.Hls({ enableWorker: true });
    let lastCc = null;
    hls.on(window.Hls.Events.FRAG_CHANGED, (_, d) => {
      if (lastCc !== null && d.frag.cc !== lastCc) out.discontinuities_crossed += 1;
      lastCc = d.frag.cc;
    });
    hls.on(window.Hls.Events.MANIFEST_PARSED, (_, d) => { out.levels = d.levels.length; });
    hls.on(window.Hls.Events.ERROR, (_, d) => {
      if (d.fatal) out.fatal_errors += 1;
      if (out.errors.length < 20) out.errors.push(`${d.fatal ? 'fatal ' : ''}${d.details}`);
    });
    hls.loadSource(playlist);
    hls.attachMedia(video);
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, timeout);
      video.addEventListener('ended', () => { out.ended = true; clearTimeout(timer); resolve(); });
      video.addEventListener('canplay', () => { video.playbackRate = rate; video.play().catch(() => {}); }, { once: true });
    });
    out.duration = video.duration;
    out.current_time = video.currentTime;
    let played = 0;
    for (let i = 0; i < video.played.length; i++) played += video.played.end(i) - video.played.start(i);
    out.played_seconds = played;
    hls.destroy();
    return out;
  }, { playlist: values.playlist, timeout, rate: Number(values.rate) });
  process.stdout.write(JSON.stringify(result) + '\n');
} finally {
  await browser.close();
}
