/**
 * Building DOM without innerHTML: every string becomes a text node, so what a client or a proxy
 * put in a header can never become markup.
 */

export type Child = Node | string | number | null | undefined | false | Child[];

type Handlers = Record<string, (e: Event) => void>;

/** Attributes by name; `on` holds event listeners by event name. */
export type Props = Record<string, string | number | boolean | null | undefined | Handlers>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props?: Props | null,
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (props) {
    for (const [k, v] of Object.entries(props)) {
      if (typeof v === 'object' && v !== null) {
        for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
      } else if (v === true) el.setAttribute(k, '');
      else if (v !== false && v !== null && v !== undefined) el.setAttribute(k, String(v));
    }
  }
  append(el, children);
  return el;
}

export function append(el: Element, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(typeof c === 'number' ? String(c) : c);
  }
}

/** Replaces an element's children. */
export function fill(el: Element, ...children: Child[]): void {
  el.replaceChildren();
  append(el, children);
}

/** A small inline SVG icon from path data (24×24 viewBox). */
export function icon(d: string, cls = 'icon'): SVGSVGElement {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('class', cls);
  svg.setAttribute('aria-hidden', 'true');
  const p = document.createElementNS(ns, 'path');
  p.setAttribute('d', d);
  svg.append(p);
  return svg;
}
