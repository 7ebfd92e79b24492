/**
 * The in-browser demo: this page becomes a roamlink client of the relay that serves it (over
 * WebSocket and HTTP, with @roamlink/browser), opens a stream to an echo service through the
 * tunnel and keeps a ping going on it, and a button cuts the transport carrying it, so a person
 * watches the session move (here, and on the relay's side in the sections above) while the echoes
 * keep coming back.
 *
 * The relay admits only the client keys it allows. The page's key is, in order: `key=<64 hex>` in
 * the address's fragment (never sent to the server), else one made once and kept in this browser.
 * The echo target is `echo=host:port` in the fragment, else what was typed last time.
 */
import type { BrowserStream, RoamlinkSession } from './demo-client.ts';
import { fill, h } from './dom.ts';
import { encLabel, fmtClock, fmtMs, shortKey } from './format.ts';

type Lib = typeof import('./demo-client.ts');

export interface DemoHooks {
  /** The page's own public key is known (the session list marks it). */
  onKey: (publicHex: string) => void;
  /** Connected: the session's routing id (a relay that shows one session per page shows it). */
  onSession?: (sid: string) => void;
}

const ECHO_KEY = 'roamlink.status.echo';

export class Demo {
  readonly el: HTMLElement;
  readonly #hooks: DemoHooks;
  #lib: Lib | undefined;
  #session: RoamlinkSession | undefined;
  #stream: BrowserStream | undefined;
  #writer: WritableStreamDefaultWriter<Uint8Array> | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;
  #publicHex: string | null = null;
  #secret: string | Uint8Array | undefined;
  #keyFromUrl = false;
  #state: 'idle' | 'connecting' | 'connected' | 'closed' = 'idle';
  #error = '';
  #echo = { sent: 0, back: 0, lastMs: null as number | null, sentAt: new Map<number, number>() };
  #log: { t: number; text: string }[] = [];

  readonly #target: HTMLInputElement;
  readonly #status: HTMLElement;
  readonly #keyLine: HTMLElement;
  readonly #buttons: {
    connect: HTMLButtonElement;
    echo: HTMLButtonElement;
    drop: HTMLButtonElement;
    close: HTMLButtonElement;
  };
  readonly #logEl: HTMLElement;

  constructor(hooks: DemoHooks) {
    this.#hooks = hooks;
    const params = new URLSearchParams(location.hash.slice(1));
    const keyParam = params.get('key');
    if (keyParam && /^[0-9a-f]{64}$/i.test(keyParam)) {
      this.#secret = keyParam;
      this.#keyFromUrl = true;
    }
    this.#target = h('input', {
      id: 'echo-target',
      type: 'text',
      spellcheck: 'false',
      autocomplete: 'off',
      placeholder: 'host:port',
      value: params.get('echo') ?? localStorage.getItem(ECHO_KEY) ?? '',
      'aria-label': 'Echo service, host:port',
    });
    const button = (label: string, cls: string, on: () => void): HTMLButtonElement =>
      h('button', { type: 'button', class: `btn ${cls}`, on: { click: on } }, label);
    this.#buttons = {
      connect: button('Connect this browser', 'btn-primary', () => void this.#connect()),
      echo: button('Open echo stream', '', () => void this.#openEcho()),
      drop: button('Drop current transport', 'btn-warn', () => this.#drop()),
      close: button('Disconnect', 'btn-quiet', () => this.#close()),
    };
    this.#buttons.connect.dataset.testid = 'demo-connect';
    this.#buttons.echo.dataset.testid = 'demo-echo';
    this.#buttons.drop.dataset.testid = 'demo-drop';
    this.#status = h('div', { class: 'demo-status', 'data-testid': 'demo-status', role: 'status' });
    this.#keyLine = h('div', { class: 'demo-key' });
    this.#logEl = h('ol', { class: 'demo-log' });
    this.el = h(
      'section',
      { class: 'card demo', 'aria-labelledby': 'demo-title' },
      h('h2', { id: 'demo-title' }, 'Try it from this browser'),
      h(
        'p',
        { class: 'hint' },
        'This page can be a client of this relay itself. Connect, open a stream to an echo service through the tunnel, then drop the transport it rides on: the session moves, the echoes keep coming back, and the move shows up above.',
      ),
      this.#keyLine,
      h(
        'div',
        { class: 'demo-row' },
        h('label', { for: 'echo-target' }, 'Echo service'),
        this.#target,
      ),
      h(
        'div',
        { class: 'demo-actions' },
        this.#buttons.connect,
        this.#buttons.echo,
        this.#buttons.drop,
        this.#buttons.close,
      ),
      this.#status,
      this.#logEl,
    );
    this.#render();
    void this.#loadKey();
  }

  async #load(): Promise<Lib> {
    this.#lib ??= await import('./demo-client.ts');
    return this.#lib;
  }

  async #loadKey(): Promise<void> {
    try {
      const lib = await this.#load();
      if (this.#secret !== undefined) {
        const kp = lib.keypairFromSecret(lib.fromHex(this.#secret as string));
        this.#publicHex = lib.toHex(kp.publicKey);
      } else {
        const stored = await lib.loadOrCreateClientKey();
        this.#secret = stored.keypair.secretKey;
        this.#publicHex = lib.toHex(stored.keypair.publicKey);
      }
      this.#hooks.onKey(this.#publicHex);
    } catch (e) {
      this.#error = `The browser client did not load: ${(e as Error).message}`;
    }
    this.#render();
  }

  #note(text: string): void {
    this.#log.unshift({ t: Date.now(), text });
    this.#log.length = Math.min(this.#log.length, 6);
    this.#render();
  }

  async #connect(): Promise<void> {
    if (this.#state === 'connecting' || this.#state === 'connected') return;
    const relayKey = document.documentElement.dataset.relayKey;
    if (!relayKey) {
      this.#error = 'The relay’s key is not known yet.';
      this.#render();
      return;
    }
    this.#state = 'connecting';
    this.#error = '';
    this.#render();
    try {
      const lib = await this.#load();
      const s = await lib.connect({
        relay: location.origin,
        relayKey,
        ...(this.#secret === undefined ? {} : { clientKey: this.#secret }),
        connectTimeoutMs: 8000,
      });
      this.#session = s;
      this.#state = 'connected';
      const st = s.status();
      this.#hooks.onSession?.(st.sid);
      this.#note(`Connected over ${encLabel(st.encapsulation)} (verdict ${st.verdict ?? '—'})`);
      let on = st.encapsulation;
      s.addEventListener('handover', (e) => {
        this.#note(`Moved ${encLabel(on)} → ${encLabel(e.detail.encapsulation)}`);
        on = e.detail.encapsulation;
      });
      s.addEventListener('verdict', (e) => this.#note(`Verdict: ${e.detail.verdict}`));
      s.addEventListener('rekey', (e) => this.#note(`Rekeyed (${e.detail.suite})`));
      s.addEventListener('path', () => this.#render());
      s.addEventListener('closed', (e) => {
        this.#state = 'closed';
        this.#stopEcho();
        this.#note(`Closed: ${e.detail.reason}`);
      });
    } catch (e) {
      this.#state = 'idle';
      const msg = (e as Error).message;
      this.#error = `Could not connect: ${msg}. The relay admits only the keys it allows: start it with --allow ${this.#publicHex ?? '<this browser’s key>'}.`;
    }
    this.#render();
  }

  async #openEcho(): Promise<void> {
    const s = this.#session;
    if (!s || this.#stream) return;
    const m = /^\s*\[?([^\]\s]+?)\]?:(\d{1,5})\s*$/.exec(this.#target.value);
    if (!m) {
      this.#error = 'Give the echo service as host:port.';
      this.#render();
      return;
    }
    localStorage.setItem(ECHO_KEY, this.#target.value.trim());
    this.#error = '';
    try {
      const stream = await s.openStream(m[1]!, Number(m[2]));
      this.#stream = stream;
      this.#writer = stream.writable.getWriter();
      this.#echo = { sent: 0, back: 0, lastMs: null, sentAt: new Map() };
      this.#note(`Stream open to ${m[1]}:${m[2]}`);
      void this.#readEchoes(stream);
      this.#timer = setInterval(() => this.#ping(), 250);
    } catch (e) {
      this.#error = `The stream was refused: ${(e as Error).message}`;
    }
    this.#render();
  }

  #ping(): void {
    const w = this.#writer;
    if (!w) return;
    const n = ++this.#echo.sent;
    this.#echo.sentAt.set(n, performance.now());
    w.write(new TextEncoder().encode(`ping ${n}\n`)).catch(() => this.#stopEcho());
    this.#render();
  }

  async #readEchoes(stream: BrowserStream): Promise<void> {
    const reader = stream.readable.getReader();
    const dec = new TextDecoder();
    let buf = '';
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let nl = buf.indexOf('\n');
        while (nl >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          const n = Number(/^ping (\d+)$/.exec(line)?.[1]);
          const at = this.#echo.sentAt.get(n);
          if (at !== undefined) {
            this.#echo.sentAt.delete(n);
            this.#echo.back++;
            this.#echo.lastMs = performance.now() - at;
          }
          nl = buf.indexOf('\n');
        }
        this.#render();
      }
    } catch {
      // The stream ended with an error: shown as stopped.
    }
    this.#stopEcho();
  }

  #stopEcho(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#writer?.close().catch(() => {});
    this.#writer = undefined;
    this.#stream = undefined;
    this.#render();
  }

  #drop(): void {
    const s = this.#session;
    if (!s) return;
    const before = s.status().encapsulation;
    const n = s.dropTransport();
    this.#note(n > 0 ? `Dropped the ${encLabel(before)} transport` : 'Nothing to drop right now');
  }

  #close(): void {
    this.#stopEcho();
    this.#session?.close();
    this.#session = undefined;
    this.#state = 'idle';
    this.#render();
  }

  #render(): void {
    const s = this.#session;
    const st = s?.status();
    const b = this.#buttons;
    b.connect.disabled = this.#state === 'connecting' || this.#state === 'connected';
    b.connect.textContent = this.#state === 'connecting' ? 'Connecting…' : 'Connect this browser';
    b.echo.disabled = this.#state !== 'connected' || this.#stream !== undefined;
    b.drop.disabled = this.#state !== 'connected';
    b.close.disabled = this.#state !== 'connected';
    fill(
      this.#keyLine,
      h('span', { class: 'meta-k' }, 'This browser’s key'),
      this.#publicHex
        ? h('code', { title: this.#publicHex }, shortKey(this.#publicHex))
        : h('span', { class: 'na' }, 'loading…'),
      this.#publicHex &&
        h(
          'span',
          { class: 'demo-keysrc' },
          this.#keyFromUrl ? 'from the page address' : 'kept in this browser',
        ),
    );
    const e = this.#echo;
    const inFlight = this.#stream ? e.sentAt.size : 0;
    fill(
      this.#status,
      st &&
        h(
          'div',
          { class: 'demo-line' },
          h(
            'span',
            { class: `state st-${st.state === 'connected' ? 'connected' : 'connecting'}` },
            st.state,
          ),
          ' over ',
          h('strong', { 'data-testid': 'demo-encapsulation' }, encLabel(st.encapsulation)),
          ` · verdict ${st.verdict ?? '—'} · round ${st.round} · ${st.handshakes} handshake${st.handshakes === 1 ? '' : 's'}`,
        ),
      (this.#stream || e.sent > 0) &&
        h(
          'div',
          { class: 'demo-line' },
          h('strong', null, 'Echo '),
          h('span', { 'data-testid': 'demo-echoes' }, `${e.back}/${e.sent} back`),
          ` · last ${fmtMs(e.lastMs)}`,
          inFlight > 1 ? ` · ${inFlight} in flight` : '',
          this.#stream ? '' : ' · stopped',
        ),
      this.#error && h('div', { class: 'demo-error' }, this.#error),
    );
    fill(
      this.#logEl,
      this.#log.map((l) => h('li', null, h('time', null, fmtClock(l.t)), ' ', l.text)),
    );
  }
}
