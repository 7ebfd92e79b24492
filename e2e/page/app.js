/**
 * The e2e test page: loads the browser bundle, and offers the tests (through `window.e2e`) a
 * session, an echo transfer that checks every byte, and a live view of the session in the DOM
 * (what the screenshots show).
 */
import * as roamlink from './roamlink-browser.js';

const $ = (id) => document.getElementById(id);
const t0 = performance.now();

/** Byte i of a transfer: a keyed mix of its 32-bit word's index, so that any lost, repeated or reordered run shows. */
function word(w) {
  let x = Math.imul(w ^ 0x9e3779b9, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x >>> 0;
}
function fill(buf, offset) {
  for (let i = 0; i < buf.length; i++) {
    const at = offset + i;
    buf[i] = (word(at >>> 2) >>> ((at & 3) * 8)) & 255;
  }
}

const state = { session: undefined, events: [], transfer: undefined };

function log(type, detail) {
  const line = `${((performance.now() - t0) / 1000).toFixed(3)}s ${type} ${JSON.stringify(detail)}`;
  state.events.push({ type, detail, at: performance.now() });
  const li = document.createElement('li');
  li.textContent = line;
  $('events').append(li);
}

function render() {
  const s = state.session;
  if (s) {
    const st = s.status();
    $('state').textContent = st.state;
    $('state').dataset.state = st.state;
    $('encapsulation').textContent = `${st.encapsulation ?? '-'} (${st.path ?? '-'})`;
    $('verdict').textContent = st.verdict ?? '-';
    $('spi').textContent =
      st.localSpi === null ? '-' : `${st.localSpi} / ${st.remoteSpi} (${st.suite})`;
    $('counts').textContent = `${st.handshakes} / ${st.handovers} / ${st.moves}`;
  }
  $('online').textContent = String(navigator.onLine);
  const t = state.transfer;
  if (t) {
    $('progress').value = t.total === 0 ? 0 : t.received / t.total;
    $('bytes').textContent =
      `${t.received} of ${t.total} bytes back${t.error ? `: ${t.error}` : ''}`;
  }
}
setInterval(render, 100);

window.e2e = {
  /** Connects; resolves with how long it took (ms) and the status. */
  async connect(options) {
    const started = performance.now();
    const s = await roamlink.connect({
      ...options,
      onLog: (msg, fields) => log(`log:${msg}`, fields),
    });
    const ms = performance.now() - started;
    state.session = s;
    for (const type of ['path', 'verdict', 'handover', 'rekey', 'closed']) {
      s.addEventListener(type, (e) => log(type, e.detail));
    }
    window.addEventListener('online', () => log('online', {}));
    window.addEventListener('offline', () => log('offline', {}));
    render();
    return { ms, status: s.status() };
  },

  status() {
    return state.session.status();
  },

  events() {
    return state.events.map((e) => ({ type: e.type, detail: e.detail }));
  },

  /**
   * Starts an echo transfer of `total` bytes through a stream to host:port (at most `rate` bytes
   * per second when given); every byte that comes back is checked against what was sent.
   */
  startEcho({ host, port, total, rate, chunk = 64 * 1024 }) {
    const t = { total, sent: 0, received: 0, done: false, error: undefined, ms: 0, firstBad: -1 };
    state.transfer = t;
    const started = performance.now();
    t.promise = (async () => {
      const stream = await state.session.openStream(host, port);
      const writer = stream.writable.getWriter();
      const writing = (async () => {
        while (t.sent < total) {
          if (rate) {
            const due = started + (t.sent / rate) * 1000;
            const wait = due - performance.now();
            if (wait > 0) await new Promise((r) => setTimeout(r, wait));
          }
          const n = Math.min(chunk, total - t.sent);
          const buf = new Uint8Array(n);
          fill(buf, t.sent);
          await writer.ready;
          await writer.write(buf);
          t.sent += n;
        }
        await writer.close();
      })();
      const reader = stream.readable.getReader();
      const want = new Uint8Array(256 * 1024);
      while (t.received < total) {
        const { done, value } = await reader.read();
        if (done) break;
        // Compare against the pattern in pieces.
        let off = 0;
        while (off < value.length) {
          const n = Math.min(want.length, value.length - off);
          const w = want.subarray(0, n);
          fill(w, t.received + off);
          for (let i = 0; i < n; i++) {
            if (value[off + i] !== w[i]) {
              t.firstBad = t.received + off + i;
              throw new Error(`byte ${t.firstBad} differs`);
            }
          }
          off += n;
        }
        t.received += value.length;
      }
      await writing;
      const end = await reader.read();
      if (!end.done) throw new Error('more bytes than were sent');
      t.ms = performance.now() - started;
      t.done = true;
    })().catch((e) => {
      t.error = String(e?.message ?? e);
      t.done = true;
    });
    return true;
  },

  progress() {
    const t = state.transfer;
    return (
      t && {
        total: t.total,
        sent: t.sent,
        received: t.received,
        done: t.done,
        error: t.error,
        ms: t.ms,
        firstBad: t.firstBad,
      }
    );
  },

  async finish() {
    await state.transfer.promise;
    render();
    return this.progress();
  },

  /**
   * Latency: `count` sequential round trips of `size` bytes on one stream through the echo
   * server, after one warm-up; resolves with each round trip's time (ms).
   */
  async pingPong({ host, port, count, size = 100 }) {
    const stream = await state.session.openStream(host, port);
    const writer = stream.writable.getWriter();
    const reader = stream.readable.getReader();
    const msg = new Uint8Array(size);
    const times = [];
    for (let i = 0; i <= count; i++) {
      msg.fill(i & 255);
      const t = performance.now();
      await writer.write(msg);
      let got = 0;
      while (got < size) {
        const { done, value } = await reader.read();
        if (done) throw new Error('stream ended');
        got += value.length;
      }
      if (i > 0) times.push(performance.now() - t);
    }
    await writer.close();
    return times;
  },

  /**
   * The ceiling: the same echo transfer and round trips over a plain WebSocket to an echo server
   * (no roamlink), in this browser.
   */
  async wsEcho({ url, total, count, chunk = 64 * 1024, size = 100 }) {
    const ws = new WebSocket(url);
    ws.binaryType = 'arraybuffer';
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = () => reject(new Error('websocket failed'));
    });
    let waiting;
    let got = 0;
    ws.onmessage = (m) => {
      got += m.data.byteLength;
      waiting?.();
    };
    const until = (n) =>
      new Promise((resolve) => {
        waiting = () => {
          if (got >= n) resolve();
        };
        waiting();
      });
    const started = performance.now();
    const buf = new Uint8Array(chunk);
    for (let sent = 0; sent < total; sent += chunk) {
      fill(buf, sent);
      // Keep at most 4 MiB in the socket's buffer, as a stream's window would.
      while (ws.bufferedAmount > 4 * 1024 * 1024) await new Promise((r) => setTimeout(r, 1));
      ws.send(buf);
    }
    await until(total);
    const ms = performance.now() - started;
    const times = [];
    const msg = new Uint8Array(size);
    for (let i = 0; i <= count; i++) {
      const base = got;
      const t = performance.now();
      ws.send(msg);
      await until(base + size);
      if (i > 0) times.push(performance.now() - t);
    }
    ws.close();
    return { ms, times };
  },

  close() {
    state.session?.close('test done');
    render();
  },
};
window.e2eReady = true;
