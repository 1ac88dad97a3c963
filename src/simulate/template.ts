/**
 * Topic and payload templates of `mqtt-ingest simulate`. A template is text with placeholders: `{device}` (the
 * device name, dev-0001), `{seq}` (the device's message number, from 1), `{ts}` (epoch milliseconds) and
 * `{walk:NAME:START:STEP}` (a per-device random walk that moves by ±STEP per message). Any other braces are text,
 * so a JSON payload template needs no escaping. Templates are compiled once; rendering is string concatenation.
 */

export const DEFAULT_TOPIC = 'sim/{device}/telemetry';
export const DEFAULT_PAYLOAD = '{"device":"{device}","seq":{seq},"ts":{ts},"pressure":{walk:pressure:100:0.5}}';

type Part = { text: string } | { field: 'device' | 'seq' | 'ts' } | { walk: string };

export interface WalkSpec {
  name: string;
  start: number;
  step: number;
  /** Decimals of START and STEP: values are rounded to them, so 100 ± 0.5 prints 100.5, never 100.49999999. */
  decimals: number;
}

export interface Template {
  parts: Part[];
  walks: Map<string, WalkSpec>;
}

const PLACEHOLDER = /\{(device|seq|ts|walk:[^{}]*)\}/g;
const NUMBER = /^-?\d+(\.\d+)?$/;

function decimals(text: string): number {
  const dot = text.indexOf('.');
  return dot < 0 ? 0 : text.length - dot - 1;
}

/** Compiles `text`; returns the problems instead when a walk is malformed (every one, for one report). */
export function compileTemplate(text: string, what: string): { template: Template; problems: string[] } {
  const parts: Part[] = [];
  const walks = new Map<string, WalkSpec>();
  const problems: string[] = [];
  let last = 0;
  for (const m of text.matchAll(PLACEHOLDER)) {
    if (m.index > last) parts.push({ text: text.slice(last, m.index) });
    last = m.index + m[0].length;
    const body = m[1]!;
    if (!body.startsWith('walk:')) {
      parts.push({ field: body as 'device' | 'seq' | 'ts' });
      continue;
    }
    const [, name = '', start = '', step = '', ...rest] = body.split(':');
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name) || !NUMBER.test(start) || !NUMBER.test(step) || Number(step) < 0 || rest.length > 0) {
      problems.push(`${what}: ${m[0]} is not {walk:NAME:START:STEP} (NAME a word, START a number, STEP a number >= 0)`);
      continue;
    }
    const spec: WalkSpec = { name, start: Number(start), step: Number(step), decimals: Math.max(decimals(start), decimals(step)) };
    const earlier = walks.get(name);
    if (earlier && (earlier.start !== spec.start || earlier.step !== spec.step)) {
      problems.push(`${what}: walk ${JSON.stringify(name)} is given twice with different START or STEP`);
    }
    if (!earlier) walks.set(name, spec);
    parts.push({ walk: name });
  }
  if (last < text.length) parts.push({ text: text.slice(last) });
  return { template: { parts, walks }, problems };
}

/** One device's template state: its name, its sequence number and the current value of each walk. */
export class DeviceState {
  seq = 0;
  private readonly values = new Map<string, number>();

  constructor(
    readonly name: string,
    private readonly walks: Map<string, WalkSpec>,
    private readonly random: () => number = Math.random,
  ) {}

  /** Moves to the next message: seq + 1 and every walk one step (the first message shows START). */
  advance(): void {
    this.seq += 1;
    for (const spec of this.walks.values()) {
      const current = this.values.get(spec.name);
      if (current === undefined) {
        this.values.set(spec.name, spec.start);
        continue;
      }
      const next = current + (this.random() < 0.5 ? -spec.step : spec.step);
      this.values.set(spec.name, Number(next.toFixed(spec.decimals)));
    }
  }

  walk(name: string): number {
    return this.values.get(name) ?? this.walks.get(name)!.start;
  }
}

export function render(template: Template, device: DeviceState, now: number): string {
  let out = '';
  for (const part of template.parts) {
    if ('text' in part) out += part.text;
    else if ('walk' in part) out += String(device.walk(part.walk));
    else if (part.field === 'device') out += device.name;
    else if (part.field === 'seq') out += String(device.seq);
    else out += String(now);
  }
  return out;
}

/** dev-0001 … dev-N, zero-padded to at least four digits and to the width of the largest index. */
export function deviceName(index: number, devices: number): string {
  return `dev-${String(index + 1).padStart(Math.max(4, String(devices).length), '0')}`;
}
