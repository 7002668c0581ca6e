/*
 * Cascade LL-HLS player.
 *
 * Streams come from the page address: /watch/{stream} or /watch?streams=a,b,c (at most 6).
 * Each stream plays /live/{stream}.m3u8 with hls.js in low-latency mode (native HLS only where
 * hls.js is unsupported). Everything is loaded from the same origin.
 *
 * For tests, window.cascadeStats.streams[name] holds:
 *   latencies: number[]  live latency samples in seconds, one every 250 ms while playing
 *                        (the newest MAX_SAMPLES; latencyTotal counts all ever pushed)
 *   currentTime, buffered (s ahead of the playhead), fatalErrors: string[], nonFatalErrors,
 *   playing: boolean, level: string, status: string, mode: "hls.js" | "native",
 *   startingRetries: manifest 503s waited out (an on-demand stream starting)
 * Manifest 404 (no such stream yet) is retried every 2 s and 503 (starting: an on-demand
 * stream whose transcoder the edge just asked for, or one with no part yet) after its
 * Retry-After; neither is a fatal error.
 */
(function () {
  'use strict';

  // 12 random bytes, base64url: the shape the edge accepts as an hls_ctx (16 characters).
  var VIEWER_ID = (function () {
    var bytes = new Uint8Array(12);
    window.crypto.getRandomValues(bytes);
    var text = '';
    for (var i = 0; i < bytes.length; i++) text += String.fromCharCode(bytes[i]);
    return window.btoa(text).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  })();
  // A signed playback link (exp, kid, sig) opened on the player page applies to its streams.
  var PAGE_TOKEN = (function () {
    var q = new URLSearchParams(window.location.search);
    if (!q.get('sig')) return '';
    return '&exp=' + encodeURIComponent(q.get('exp') || '') + '&kid=' +
      encodeURIComponent(q.get('kid') || '') + '&sig=' + encodeURIComponent(q.get('sig'));
  })();

  // Same rule as a LiveStream's metadata.name (RFC 1123 label), see core/cascade/contract/spec.py.
  var NAME_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
  var MAX_NAME_LEN = 63;
  var MAX_STREAMS = 6;
  var RETRY_MS = 2000;
  var MAX_RETRY_AFTER_MS = 30000;
  var SAMPLE_MS = 250;
  var MAX_SAMPLES = 14400; // one hour at 4 samples a second
  var RECONNECT_SHOW_MS = 10000;
  var HLS_MIME = 'application/vnd.apple.mpegurl';

  var stats = { streams: {} };
  window.cascadeStats = stats;

  function parseStreams(loc) {
    var raw = [];
    var params = new URLSearchParams(loc.search);
    var q = params.get('streams') || params.get('stream');
    if (q) {
      raw = q.split(',');
    } else {
      var m = /\/watch\/([^/]+)\/?$/.exec(loc.pathname);
      if (m) {
        try {
          raw = [decodeURIComponent(m[1])];
        } catch (e) {
          raw = [m[1]];
        }
      }
    }
    var valid = [];
    var invalid = [];
    raw.forEach(function (s) {
      var name = s.trim();
      if (!name) return;
      if (name.length <= MAX_NAME_LEN && NAME_RE.test(name)) {
        if (valid.indexOf(name) < 0) valid.push(name);
      } else {
        invalid.push(name);
      }
    });
    return { valid: valid.slice(0, MAX_STREAMS), extra: Math.max(0, valid.length - MAX_STREAMS), invalid: invalid };
  }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function stat(label) {
    var s = el('span', 'stat', label + ' ');
    var b = el('b', null, '–');
    s.appendChild(b);
    return { root: s, value: b };
  }

  function fmtBitrate(bps) {
    if (!bps) return '';
    return bps >= 1e6 ? (bps / 1e6).toFixed(1) + ' Mbps' : Math.round(bps / 1e3) + ' kbps';
  }

  // A response header from hls.js's networkDetails (an XMLHttpRequest, or a fetch
  // Response with the fetch loader), or from a fetch Response; null when absent.
  function responseHeader(details, name) {
    try {
      if (details && typeof details.getResponseHeader === 'function') {
        return details.getResponseHeader(name);
      }
      if (details && details.headers && typeof details.headers.get === 'function') {
        return details.headers.get(name);
      }
    } catch (e) { /* not readable */ }
    return null;
  }

  // Retry-After in seconds (the edge sends "2" for a starting stream), as milliseconds.
  function retryAfterMs(details) {
    var seconds = parseFloat(responseHeader(details, 'Retry-After') || '');
    if (!isFinite(seconds) || seconds < 0) return RETRY_MS;
    return Math.min(MAX_RETRY_AFTER_MS, Math.max(500, seconds * 1000));
  }

  function hlsJsUsable() {
    return typeof window.Hls !== 'undefined' && window.Hls.isSupported();
  }

  function Player(name, container) {
    this.name = name;
    // One anonymous viewer id for every stream of this page (the multi-view limit counts
    // streams per viewer); the signed-URL query of the page, if any, rides along.
    // The same id as CMCD sid, written here too: hls.js sends no CMCD with its very first
    // manifest request, and behind a cache that is the request that decides whether the
    // playlist URLs carry an hls_ctx (none when the edge sees a CMCD sid).
    this.url = '/live/' + encodeURIComponent(name) + '.m3u8?hls_ctx=' + VIEWER_ID + PAGE_TOKEN +
      '&CMCD=' + encodeURIComponent('sid="' + VIEWER_ID + '"');
    this.hls = null;
    this.retryTimer = null;
    this.phase = 'starting'; // starting | waiting | running | error
    this.errorText = '';
    this.everPlayed = false;
    this.lastTime = -1;
    this.lastNonFatalAt = 0;
    this.lastMediaErrorAt = 0;
    this.networkFatals = [];
    this.s = {
      latencies: [],
      latencyTotal: 0,
      currentTime: 0,
      buffered: 0,
      fatalErrors: [],
      nonFatalErrors: 0,
      startingRetries: 0,
      playing: false,
      level: '',
      status: 'starting…',
      mode: hlsJsUsable() ? 'hls.js' : 'native'
    };
    stats.streams[name] = this.s;

    var tile = el('section', 'tile');
    var video = document.createElement('video');
    video.muted = true;
    video.defaultMuted = true;
    video.autoplay = true;
    video.playsInline = true;
    video.controls = true;
    video.preload = 'auto';
    video.setAttribute('muted', '');
    video.setAttribute('playsinline', '');
    video.setAttribute('aria-label', 'live stream ' + name);
    this.video = video;

    var info = el('div', 'info');
    info.appendChild(el('span', 'name', name));
    this.latencyEl = stat('latency');
    this.bufferEl = stat('buffer');
    this.levelEl = stat('level');
    info.appendChild(this.latencyEl.root);
    info.appendChild(this.bufferEl.root);
    info.appendChild(this.levelEl.root);
    this.statusEl = el('span', 'status', 'starting…');
    info.appendChild(this.statusEl);

    tile.appendChild(video);
    tile.appendChild(info);
    container.appendChild(tile);

    var self = this;
    video.addEventListener('click', function () {
      if (video.paused) self.play();
    });
    this.timer = window.setInterval(function () { self.tick(); }, SAMPLE_MS);
  }

  Player.prototype.play = function () {
    var p = this.video.play();
    if (p && p.catch) p.catch(function () { /* autoplay refused: the viewer can click */ });
  };

  Player.prototype.schedule = function (fn, ms) {
    var self = this;
    window.clearTimeout(this.retryTimer);
    this.retryTimer = window.setTimeout(function () {
      self.retryTimer = null;
      fn.call(self);
    }, ms);
  };

  Player.prototype.fatal = function (text) {
    this.s.fatalErrors.push(text);
    if (this.s.fatalErrors.length > 100) this.s.fatalErrors.shift();
    this.phase = 'error';
    this.errorText = text;
  };

  Player.prototype.start = function () {
    if (hlsJsUsable()) {
      this.s.mode = 'hls.js';
      this.startHls();
    } else if (this.video.canPlayType(HLS_MIME)) {
      this.s.mode = 'native';
      this.startNative();
    } else {
      this.s.mode = 'none';
      this.fatal('this browser cannot play HLS');
    }
  };

  Player.prototype.teardown = function () {
    window.clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (this.hls) {
      this.hls.destroy();
      this.hls = null;
    }
    this.video.removeAttribute('src');
    this.video.load();
  };

  Player.prototype.restart = function () {
    this.teardown();
    this.networkFatals = [];
    this.start();
  };

  // 404: no such stream (yet); 503: the stream is starting. Either way try again later,
  // from a new hls.js instance (its own manifest retries are spent by then).
  Player.prototype.waitForStream = function (status, retryMs) {
    this.teardown();
    if (status === 503) {
      this.phase = 'starting';
      this.s.startingRetries += 1;
    } else {
      this.phase = 'waiting';
    }
    this.schedule(this.start, retryMs || RETRY_MS);
  };

  // ---- hls.js ----

  Player.prototype.startHls = function () {
    var Hls = window.Hls;
    var self = this;
    if (this.phase !== 'waiting') this.phase = 'starting';
    var hls = new Hls({
      lowLatencyMode: true,
      // CMCD (CTA-5004) on every request, in the query (hls.js's default: headers would
      // be preflighted). Behind a cache the edge and the shield count viewers by this sid
      // (the page's viewer id, one for all its streams), not by hls_ctx in playlist URLs.
      cmcd: { sessionId: VIEWER_ID, contentId: this.name },
      // Target latency comes from the playlist's PART-HOLD-BACK in low-latency mode, so neither
      // liveSyncDuration(Count) nor liveMaxLatencyDuration(Count) is set here.
      maxLiveSyncPlaybackRate: 1.5,
      backBufferLength: 10,
      enableWorker: true,
      // A manifest 404/503 means "not started yet": fail fast and let waitForStream() poll
      // (hls.js's own retries are few and ignore Retry-After).
      manifestLoadPolicy: {
        default: {
          maxTimeToFirstByteMs: 10000,
          maxLoadTimeMs: 10000,
          timeoutRetry: { maxNumRetry: 1, retryDelayMs: 0, maxRetryDelayMs: 0 },
          errorRetry: null
        }
      }
    });
    this.hls = hls;

    hls.on(Hls.Events.MANIFEST_PARSED, function () {
      if (self.hls !== hls) return;
      self.phase = 'running';
      self.play();
    });
    hls.on(Hls.Events.ERROR, function (event, data) {
      if (self.hls !== hls) return;
      self.onHlsError(data);
    });

    hls.attachMedia(this.video);
    hls.loadSource(this.url);
  };

  Player.prototype.onHlsError = function (data) {
    var Hls = window.Hls;
    var code = data.response && data.response.code;
    var isManifest = data.details === Hls.ErrorDetails.MANIFEST_LOAD_ERROR ||
      data.details === Hls.ErrorDetails.MANIFEST_LOAD_TIMEOUT;

    if (isManifest && (code === 404 || code === 503)) {
      // The stream has not started (yet): not an error for the viewer. A 503 carries
      // Retry-After (and X-Cascade-Stream-State: starting for an on-demand stream).
      this.waitForStream(code, code === 503 ? retryAfterMs(data.networkDetails) : RETRY_MS);
      return;
    }
    if (isManifest && (code === 403 || code === 429)) {
      // Refused: a signed stream without a valid link, or more streams than a viewer may
      // watch at once. The edge says why; show it, and try again later for 429.
      var why = (data.response && data.response.text) || '';
      this.fatal((code === 403 ? 'not allowed: ' : 'limit reached: ') + String(why).trim());
      if (this.hls) { this.hls.destroy(); this.hls = null; }
      if (code === 429) this.schedule(this.startHls, 10000);
      return;
    }
    if (!data.fatal) {
      this.s.nonFatalErrors += 1;
      this.lastNonFatalAt = Date.now();
      return;
    }

    var why = data.reason || (data.error && data.error.message) || '';
    var text = data.type + ': ' + data.details + (code ? ' (HTTP ' + code + ')' : '') +
      (why ? ' – ' + why : '');
    this.fatal(text);
    var now = Date.now();

    if (data.type === Hls.ErrorTypes.NETWORK_ERROR && !isManifest &&
        data.details !== Hls.ErrorDetails.MANIFEST_PARSING_ERROR) {
      this.networkFatals = this.networkFatals.filter(function (t) { return now - t < 60000; });
      this.networkFatals.push(now);
      if (this.networkFatals.length <= 3) {
        this.schedule(function () {
          if (!this.hls) return;
          this.phase = 'running';
          this.hls.startLoad();
        }, RETRY_MS);
        return;
      }
      // Loading keeps failing: start over from the manifest.
    } else if (data.type === Hls.ErrorTypes.MEDIA_ERROR) {
      var again = now - this.lastMediaErrorAt < 5000;
      this.lastMediaErrorAt = now;
      if (!again) {
        this.phase = 'running';
        this.hls.recoverMediaError();
        this.play();
        return;
      }
      // A second media error right after recovering: start over.
    }
    var hls = this.hls;
    if (hls) {
      hls.destroy();
      this.hls = null;
    }
    this.schedule(this.restart, RETRY_MS);
  };

  // ---- native HLS (Safari, iOS) ----

  Player.prototype.startNative = function () {
    var self = this;
    var video = this.video;
    if (this.phase !== 'waiting') this.phase = 'starting';
    // A native <video> cannot tell a 404 from a decode error, so ask the edge first.
    fetch(this.url, { cache: 'no-store' }).then(function (r) {
      if (r.status === 404 || r.status === 503) {
        self.waitForStream(r.status, r.status === 503 ? retryAfterMs(r) : RETRY_MS);
        return;
      }
      if (!r.ok) throw new Error('HTTP ' + r.status);
      video.onerror = function () {
        var err = video.error;
        self.fatal('native: ' + (err ? 'MediaError ' + err.code + (err.message ? ' ' + err.message : '') : 'error'));
        video.onerror = null;
        self.schedule(self.restart, RETRY_MS);
      };
      video.src = self.url;
      self.phase = 'running';
      self.play();
    }).catch(function (e) {
      self.fatal('native: manifest ' + (e && e.message ? e.message : 'unreachable'));
      self.schedule(self.restart, RETRY_MS);
    });
  };

  Player.prototype.playingDateMs = function () {
    if (this.hls) {
      var d = this.hls.playingDate;
      return d ? d.getTime() : NaN;
    }
    var video = this.video;
    if (typeof video.getStartDate === 'function') {
      var start = video.getStartDate().getTime();
      if (!isNaN(start)) return start + video.currentTime * 1000;
    }
    return NaN;
  };

  // ---- stats and UI, 4 times a second ----

  Player.prototype.tick = function () {
    var video = this.video;
    var s = this.s;
    var t = video.currentTime;
    var advanced = this.lastTime >= 0 && t > this.lastTime;
    this.lastTime = t;
    s.currentTime = t;
    s.playing = advanced && !video.paused && !video.ended && this.phase === 'running';
    if (s.playing) this.everPlayed = true;

    var ahead = 0;
    var b = video.buffered;
    for (var i = 0; i < b.length; i++) {
      if (b.start(i) <= t + 0.1 && b.end(i) > t) {
        ahead = b.end(i) - t;
        break;
      }
    }
    s.buffered = ahead;

    // Keep to the live edge. hls.js speeds playback up (maxLiveSyncPlaybackRate) only while
    // it is less than a target duration behind its target latency; after a slow start or a
    // stall it would stay seconds behind for good, so jump forward to its live sync point.
    var hls = this.hls;
    if (s.playing && hls && hls.targetLatency && ahead > hls.targetLatency + 0.7 &&
        Date.now() - (this.lastJumpAt || 0) > 3000) {
      var sync = hls.liveSyncPosition;
      if (sync && sync > video.currentTime + 0.2) {
        video.currentTime = sync;
        this.lastJumpAt = Date.now();
        s.jumps = (s.jumps || 0) + 1;
      }
    }

    var level = '';
    if (this.hls && this.hls.levels && this.hls.currentLevel >= 0) {
      var l = this.hls.levels[this.hls.currentLevel];
      if (l) {
        level = (l.height ? l.width + '×' + l.height : (l.name || 'level ' + this.hls.currentLevel)) +
          (l.bitrate ? ' · ' + fmtBitrate(l.bitrate) : '');
      }
    } else if (!this.hls && video.videoHeight) {
      level = video.videoWidth + '×' + video.videoHeight;
    }
    s.level = level;

    var latency = NaN;
    if (s.playing) {
      var pd = this.playingDateMs();
      if (!isNaN(pd)) {
        latency = (Date.now() - pd) / 1000;
        s.latencies.push(latency);
        s.latencyTotal += 1;
        if (s.latencies.length > MAX_SAMPLES) s.latencies.shift();
      }
    }

    var status;
    var cls;
    if (this.phase === 'waiting') {
      status = 'waiting for stream…';
      cls = 'waiting';
    } else if (this.phase === 'error') {
      status = 'error: ' + this.errorText;
      cls = 'error';
    } else if (s.playing) {
      status = 'playing';
      cls = 'playing';
    } else if (Date.now() - this.lastNonFatalAt < RECONNECT_SHOW_MS || this.everPlayed) {
      status = 'reconnecting…';
      cls = 'reconnecting';
    } else {
      status = 'starting…';
      cls = 'starting';
    }
    s.status = status;

    this.latencyEl.value.textContent = isNaN(latency) ? '–' : latency.toFixed(2) + ' s';
    this.bufferEl.value.textContent = ahead.toFixed(2) + ' s';
    this.levelEl.value.textContent = level || '–';
    if (this.statusEl.textContent !== status) this.statusEl.textContent = status;
    var fullCls = 'status ' + cls;
    if (this.statusEl.className !== fullCls) this.statusEl.className = fullCls;
  };

  function main() {
    var grid = document.getElementById('grid');
    var parsed = parseStreams(window.location);
    var names = parsed.valid;

    parsed.invalid.forEach(function (bad) {
      grid.appendChild(el('p', 'notice', 'Not a valid stream name: ' + bad));
    });
    if (!names.length) {
      if (!parsed.invalid.length) {
        grid.appendChild(el('p', 'notice', 'No stream given. Open /watch/{stream} or /watch?streams=a,b,c'));
      }
      return;
    }
    if (parsed.extra) {
      grid.appendChild(el('p', 'notice', 'Showing the first ' + MAX_STREAMS + ' streams only.'));
    }
    document.title = names.join(', ') + ' · Cascade live';
    grid.classList.add(names.length === 1 ? 'cols-1' : names.length <= 4 ? 'cols-2' : 'cols-3');
    names.forEach(function (name) {
      new Player(name, grid).start();
    });
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', main);
  } else {
    main();
  }
})();
