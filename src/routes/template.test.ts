import { describe, expect, it } from 'vitest';
import { covers, matchTopic, parseKeyTemplate, parseTopicTemplate, renderKey, type TopicTemplate } from './template.js';

function t(text: string): TopicTemplate {
  const r = parseTopicTemplate(text);
  if ('problem' in r) throw new Error(r.problem);
  return r.template;
}
const match = (template: string, topic: string) => matchTopic(t(template), topic);

describe('topic templates', () => {
  it('capture {name} levels and match + and a trailing # as MQTT does', () => {
    expect(match('plant/{site}/{line}/pressure/{sensor}', 'plant/s1/l2/pressure/p7')).toEqual({ site: 's1', line: 'l2', sensor: 'p7' });
    expect(match('plant/{site}/pressure', 'plant/s1/flow')).toBeUndefined();
    expect(match('plant/{site}/pressure', 'plant/s1/pressure/x')).toBeUndefined();
    expect(match('plant/+/temp', 'plant/a/temp')).toEqual({});
    expect(match('debug/#', 'debug')).toEqual({});
    expect(match('debug/#', 'debug/a/b')).toEqual({});
    expect(match('a/{x}', 'a/')).toEqual({ x: '' });
    expect(match('#', '$SYS/broker')).toBeUndefined();
    expect(match('{first}/x', '$SYS/x')).toBeUndefined();
    expect(match('$SYS/#', '$SYS/broker')).toEqual({});
    // Levels are whole: no partial match, and text that means something in a regular expression is plain text.
    expect(match('a.b/{x}', 'aXb/1')).toBeUndefined();
    expect(match('a.b/{x}', 'a.b/1')).toEqual({ x: '1' });
    expect(match('a/(b)|c/{x}', 'a/(b)|c/2')).toEqual({ x: '2' });
    expect(match('a/{x}', 'a/b/c')).toBeUndefined();
    expect(match('a/{x}', 'xa/b')).toBeUndefined();
    expect(match('+/{x}', '/b')).toEqual({ x: 'b' });
    expect(match('a/#', 'ab')).toBeUndefined();
    expect(match('#', 'a/b\nc')).toEqual({});
    expect(match('{v}', 'line\nbreak')).toEqual({ v: 'line\nbreak' });
  });
  it('refuse malformed variables, repeated names, misplaced wildcards and shared subscriptions', () => {
    const problem = (text: string) => {
      const r = parseTopicTemplate(text);
      return 'problem' in r ? r.problem : undefined;
    };
    expect(problem('a/{x}y')).toMatch(/whole level/);
    expect(problem('a/{1x}')).toMatch(/not a column name/);
    expect(problem('a/{x}/{x}')).toMatch(/twice/);
    expect(problem('a/#/b')).toMatch(/"#"/);
    expect(problem('a/b+')).toMatch(/"\+"/);
    expect(problem('$share/g/a')).toMatch(/shared subscription/);
    expect(problem('a/{__proto__}')).toMatch(/reserves/);
  });
  it('know when an earlier template takes every topic a later one would', () => {
    expect(covers(t('#'), t('a/{x}/b'))).toBe(true);
    expect(covers(t('a/+/b'), t('a/{x}/b'))).toBe(true);
    expect(covers(t('a/{y}/b'), t('a/c/b'))).toBe(true);
    expect(covers(t('a/#'), t('a'))).toBe(true);
    expect(covers(t('a/b'), t('a/{x}'))).toBe(false);
    expect(covers(t('a/+'), t('a/#'))).toBe(false);
    expect(covers(t('a/+'), t('a/+/b'))).toBe(false);
    expect(covers(t('#'), t('$SYS/x'))).toBe(false);
  });
});

describe('ordering-key templates', () => {
  it('render variables between text', () => {
    const r = parseKeyTemplate('{site}/{sensor}-k');
    if ('problem' in r) throw new Error(r.problem);
    expect(renderKey(r.template, { site: 's1', sensor: 'p7' })).toBe('s1/p7-k');
  });
  it('refuse an unpaired brace', () => {
    expect(parseKeyTemplate('{site')).toHaveProperty('problem');
  });
});
