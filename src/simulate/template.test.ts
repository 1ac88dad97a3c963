import { describe, expect, it } from 'vitest';
import { compileTemplate, DEFAULT_PAYLOAD, DeviceState, deviceName, render } from './template.js';

function device(text: string, random = () => 0.9, name = 'dev-0001') {
  const { template, problems } = compileTemplate(text, '--payload');
  expect(problems).toEqual([]);
  return { template, state: new DeviceState(name, template.walks, random) };
}

describe('simulate templates', () => {
  it('renders {device}, {seq} and {ts}, leaving JSON braces as text', () => {
    const { template, state } = device('{"d":"{device}","seq":{seq},"ts":{ts},"x":{}}');
    state.advance();
    expect(render(template, state, 1700000000123)).toBe('{"d":"dev-0001","seq":1,"ts":1700000000123,"x":{}}');
    state.advance();
    expect(JSON.parse(render(template, state, 5))).toEqual({ d: 'dev-0001', seq: 2, ts: 5, x: {} });
  });

  it('starts a walk at START and moves it by exactly ±STEP per message, rounded to the decimals given', () => {
    const steps = [0.9, 0.9, 0.1, 0.9, 0.1, 0.1];
    const { template, state } = device('{walk:p:100:0.5}', () => steps.shift()!);
    const seen: string[] = [];
    for (let i = 0; i < 7; i++) {
      state.advance();
      seen.push(render(template, state, 0));
    }
    expect(seen).toEqual(['100', '100.5', '101', '100.5', '101', '100.5', '100']);
  });

  it('keeps one value per walk name and device, the same wherever the name appears', () => {
    const { template } = compileTemplate('{walk:t:20.0:0.1}|{walk:t:20.0:0.1}|{walk:h:50:1}', '--payload');
    const a = new DeviceState('dev-0001', template.walks, () => 0.9);
    const b = new DeviceState('dev-0002', template.walks, () => 0.1);
    for (let i = 0; i < 4; i++) {
      a.advance();
      b.advance();
    }
    expect(render(template, a, 0)).toBe('20.3|20.3|53');
    expect(render(template, b, 0)).toBe('19.7|19.7|47');
  });

  it('lists every malformed walk', () => {
    const { problems } = compileTemplate('{walk:p:abc:1} {walk:9x:1:1} {walk:q:1:-1} {walk:r:1} {walk:s:1:2} {walk:s:1:3}', '--payload');
    expect(problems).toHaveLength(5);
    expect(problems[0]).toMatch(/^--payload: \{walk:p:abc:1\} is not \{walk:NAME:START:STEP\}/);
    expect(problems[4]).toMatch(/walk "s" is given twice/);
  });

  it('the default payload renders to JSON with seq, ts and a walk', () => {
    const { template, state } = device(DEFAULT_PAYLOAD);
    state.advance();
    expect(JSON.parse(render(template, state, 42))).toEqual({ device: 'dev-0001', seq: 1, ts: 42, pressure: 100 });
  });

  it('names devices from dev-0001, padded to the widest index', () => {
    expect(deviceName(0, 10)).toBe('dev-0001');
    expect(deviceName(9, 10)).toBe('dev-0010');
    expect(deviceName(0, 20000)).toBe('dev-00001');
    expect(deviceName(19999, 20000)).toBe('dev-20000');
  });
});
