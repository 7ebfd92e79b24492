/**
 * A small time-series line chart on a <canvas>: a shared time axis, one or more series (gaps where
 * a value is null), optional filled area, vertical markers (moves) and a hover read-out. Colours
 * come from CSS custom properties, so the chart follows the page's light or dark theme.
 */

export interface ChartSeries {
  label: string;
  /** A CSS custom property holding the colour, e.g. `--chart-a`. */
  color: string;
  values: readonly (number | null)[];
  fill?: boolean;
}

export interface ChartMarker {
  t: number;
  color: string;
  label: string;
}

export interface ChartData {
  t: readonly number[];
  series: ChartSeries[];
  /** The right edge of the time axis (the relay's now). */
  end: number;
  /** How much time the axis shows at most. */
  spanMs: number;
  /** Smallest top of the y axis (so a quiet series does not fill the chart with noise). */
  minMax: number;
  format: (v: number) => string;
  markers: ChartMarker[];
}

const PAD = { left: 56, right: 12, top: 10, bottom: 22 };

function css(name: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || '#888';
}

/** A "nice" grid step at least `v`: 1, 2, 2.5 or 5 times a power of ten. */
function niceStep(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/** Grid lines on the y axis. */
const Y_LINES = 4;

function fmtAxisTime(ms: number): string {
  if (ms <= 0) return 'now';
  const s = Math.round(ms / 1000);
  if (s < 60) return `−${s}s`;
  const m = s / 60;
  return `−${Number.isInteger(m) ? m : m.toFixed(1)}m`;
}

export class LineChart {
  readonly el: HTMLElement;
  readonly #canvas: HTMLCanvasElement;
  readonly #tip: HTMLElement;
  #data: ChartData | undefined;
  #hoverX: number | undefined;

  constructor(label: string) {
    this.el = document.createElement('div');
    this.el.className = 'chart';
    this.#canvas = document.createElement('canvas');
    this.#canvas.setAttribute('role', 'img');
    this.#canvas.setAttribute('aria-label', label);
    this.#tip = document.createElement('div');
    this.#tip.className = 'chart-tip';
    this.#tip.hidden = true;
    this.el.append(this.#canvas, this.#tip);
    this.#canvas.addEventListener('pointermove', (e) => {
      this.#hoverX = e.offsetX;
      this.draw();
    });
    this.#canvas.addEventListener('pointerleave', () => {
      this.#hoverX = undefined;
      this.draw();
    });
    new ResizeObserver(() => this.draw()).observe(this.el);
  }

  set(data: ChartData): void {
    this.#data = data;
    this.draw();
  }

  draw(): void {
    const d = this.#data;
    const cv = this.#canvas;
    const w = this.el.clientWidth;
    const h = this.el.clientHeight;
    if (w === 0 || h === 0) return;
    const dpr = window.devicePixelRatio || 1;
    if (cv.width !== Math.round(w * dpr) || cv.height !== Math.round(h * dpr)) {
      cv.width = Math.round(w * dpr);
      cv.height = Math.round(h * dpr);
      cv.style.width = `${w}px`;
      cv.style.height = `${h}px`;
    }
    const g = cv.getContext('2d');
    if (!g) return;
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const grid = css('--chart-grid');
    const muted = css('--muted');
    const font = `11px ${getComputedStyle(document.body).fontFamily}`;
    g.font = font;

    const pw = w - PAD.left - PAD.right;
    const ph = h - PAD.top - PAD.bottom;
    const end = d?.end ?? Date.now();
    const first = d && d.t.length > 0 ? d.t[0]! : end;
    // The axis grows with the session up to its span, never below 20 s.
    const span = Math.min(d?.spanMs ?? 600_000, Math.max(20_000, end - first));
    const start = end - span;
    const x = (t: number): number => PAD.left + ((t - start) / span) * pw;

    let top = d?.minMax ?? 1;
    if (d) {
      for (const s of d.series) {
        for (let i = 0; i < s.values.length; i++) {
          const v = s.values[i];
          if (v !== null && v !== undefined && d.t[i]! >= start && v > top) top = v;
        }
      }
    }
    top = niceStep((top * 1.1) / Y_LINES) * Y_LINES;
    const y = (v: number): number => PAD.top + ph - (v / top) * ph;

    // Grid and y labels.
    g.strokeStyle = grid;
    g.lineWidth = 1;
    g.fillStyle = muted;
    g.textAlign = 'right';
    g.textBaseline = 'middle';
    for (let i = 0; i <= Y_LINES; i++) {
      const v = (top * i) / Y_LINES;
      const yy = Math.round(y(v)) + 0.5;
      g.beginPath();
      g.moveTo(PAD.left, yy);
      g.lineTo(w - PAD.right, yy);
      g.stroke();
      g.fillText(d ? (i === 0 ? '0' : d.format(v)) : '', PAD.left - 8, yy);
    }
    // Time labels.
    g.textAlign = 'center';
    g.textBaseline = 'top';
    for (let i = 0; i <= 4; i++) {
      const t = start + (span * i) / 4;
      const label = fmtAxisTime(end - t);
      const xx = x(t);
      g.textAlign = i === 0 ? 'left' : i === 4 ? 'right' : 'center';
      g.fillText(label, i === 0 ? PAD.left : xx, h - PAD.bottom + 6);
    }
    if (!d) return;

    // Markers: a dashed line and a small flag at each move.
    for (const m of d.markers) {
      if (m.t < start || m.t > end) continue;
      const xx = Math.round(x(m.t)) + 0.5;
      g.strokeStyle = css(m.color);
      g.setLineDash([3, 3]);
      g.beginPath();
      g.moveTo(xx, PAD.top);
      g.lineTo(xx, PAD.top + ph);
      g.stroke();
      g.setLineDash([]);
      g.fillStyle = css(m.color);
      g.beginPath();
      g.moveTo(xx, PAD.top);
      g.lineTo(xx + 6, PAD.top + 3);
      g.lineTo(xx, PAD.top + 6);
      g.fill();
    }

    // Series.
    for (const s of d.series) {
      const color = css(s.color);
      const runs: [number, number][][] = [];
      let run: [number, number][] = [];
      for (let i = 0; i < d.t.length; i++) {
        const t = d.t[i]!;
        const v = s.values[i];
        if (t < start - 2000) continue;
        if (v === null || v === undefined) {
          if (run.length) runs.push(run);
          run = [];
          continue;
        }
        run.push([x(t), y(v)]);
      }
      if (run.length) runs.push(run);
      for (const r of runs) {
        if (s.fill && r.length > 1) {
          const grad = g.createLinearGradient(0, PAD.top, 0, PAD.top + ph);
          grad.addColorStop(0, withAlpha(color, 0.22));
          grad.addColorStop(1, withAlpha(color, 0.02));
          g.fillStyle = grad;
          g.beginPath();
          g.moveTo(r[0]![0], PAD.top + ph);
          for (const [px, py] of r) g.lineTo(px, py);
          g.lineTo(r[r.length - 1]![0], PAD.top + ph);
          g.closePath();
          g.fill();
        }
        g.strokeStyle = color;
        g.lineWidth = 1.75;
        g.lineJoin = 'round';
        g.beginPath();
        g.moveTo(r[0]![0], r[0]![1]);
        for (const [px, py] of r) g.lineTo(px, py);
        g.stroke();
        if (r.length === 1) {
          g.fillStyle = color;
          g.beginPath();
          g.arc(r[0]![0], r[0]![1], 2, 0, Math.PI * 2);
          g.fill();
        }
      }
    }

    // Hover: the nearest sample's values.
    const hx = this.#hoverX;
    if (hx === undefined || hx < PAD.left || d.t.length === 0) {
      this.#tip.hidden = true;
      return;
    }
    const tAt = start + ((hx - PAD.left) / pw) * span;
    let best = 0;
    for (let i = 1; i < d.t.length; i++) {
      if (Math.abs(d.t[i]! - tAt) < Math.abs(d.t[best]! - tAt)) best = i;
    }
    const bx = Math.round(x(d.t[best]!)) + 0.5;
    g.strokeStyle = muted;
    g.beginPath();
    g.moveTo(bx, PAD.top);
    g.lineTo(bx, PAD.top + ph);
    g.stroke();
    const lines = [fmtAxisTime(end - d.t[best]!)];
    for (const s of d.series) {
      const v = s.values[best];
      lines.push(`${s.label}: ${v === null || v === undefined ? '—' : d.format(v)}`);
      if (v !== null && v !== undefined) {
        g.fillStyle = css(s.color);
        g.beginPath();
        g.arc(bx, y(v), 3, 0, Math.PI * 2);
        g.fill();
      }
    }
    this.#tip.textContent = lines.join('\n');
    this.#tip.hidden = false;
    const left = bx + 12 + 150 > w ? bx - 12 - 150 : bx + 12;
    this.#tip.style.left = `${Math.max(0, left)}px`;
  }
}

/** A CSS colour (hex or rgb) with an alpha. */
function withAlpha(color: string, a: number): string {
  const hex = /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.exec(color);
  if (hex) {
    let h = hex[1]!;
    if (h.length === 3) h = [...h].map((c) => c + c).join('');
    const n = Number.parseInt(h, 16);
    return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${a})`;
  }
  const rgb = /^rgba?\(([^)]+)\)$/.exec(color);
  if (rgb) {
    const [r, g, b] = rgb[1]!.split(',').map((s) => s.trim());
    return `rgba(${r}, ${g}, ${b}, ${a})`;
  }
  return color;
}
