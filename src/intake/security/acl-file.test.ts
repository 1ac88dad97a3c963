import { describe, expect, it } from 'vitest';
import { Acl, topicMatches } from './acl-file.js';

function acl(text: string): Acl {
  const { acl: parsed, problems } = Acl.parse(text);
  expect(problems).toEqual([]);
  return parsed;
}

const alice = { username: 'alice', clientId: 'dev-1' };
const anon = { username: undefined, clientId: 'anon-1' };

describe('ACL files, with Mosquitto 2.0.11 semantics', () => {
  it('gives topic lines before the first user line to anonymous clients, the rest to that user', () => {
    const a = acl(['topic read public/#', 'user alice', 'topic write sensors/alice/#', 'topic readwrite alice/inbox'].join('\n'));
    expect(a.allows(anon, 'public/x', 'read')).toBe(true);
    expect(a.allows(anon, 'public/x', 'write')).toBe(false);
    expect(a.allows(anon, 'sensors/alice/t', 'write')).toBe(false);
    expect(a.allows(alice, 'sensors/alice/t', 'write')).toBe(true);
    expect(a.allows(alice, 'sensors/alice', 'write')).toBe(true); // "a/#" also matches "a" (MQTT-4.7.1-2)
    expect(a.allows(alice, 'sensors/bob/t', 'write')).toBe(false);
    expect(a.allows(alice, 'sensors/alice/t', 'read')).toBe(false);
    expect(a.allows(alice, 'alice/inbox', 'read')).toBe(true);
    expect(a.allows(alice, 'public/x', 'read')).toBe(false); // a user does not get the anonymous lines
    expect(a.allows({ username: 'bob', clientId: 'b' }, 'public/x', 'read')).toBe(false);
  });

  it('means readwrite without an access word, and lets deny win wherever it is written', () => {
    const a = acl(['user alice', 'topic sensors/#', 'topic deny sensors/secret/#'].join('\n'));
    expect(a.allows(alice, 'sensors/a', 'read')).toBe(true);
    expect(a.allows(alice, 'sensors/a', 'write')).toBe(true);
    expect(a.allows(alice, 'sensors/secret/x', 'write')).toBe(false);
  });

  it('substitutes %u and %c in patterns, skips %u patterns for anonymous clients, and refuses + or # in names', () => {
    const a = acl(['pattern write devices/%u/#', 'pattern read commands/%c'].join('\n'));
    expect(a.allows(alice, 'devices/alice/temp', 'write')).toBe(true);
    expect(a.allows(alice, 'devices/bob/temp', 'write')).toBe(false);
    expect(a.allows(alice, 'commands/dev-1', 'read')).toBe(true);
    expect(a.allows(anon, 'devices/%u/temp', 'write')).toBe(false);
    expect(a.allows(anon, 'commands/anon-1', 'read')).toBe(true);
    // A user or client id with a wildcard would widen a pattern: denied outright.
    expect(a.allows({ username: '#', clientId: 'x' }, 'devices/a/b', 'write')).toBe(false);
    expect(a.allows({ username: 'alice', clientId: '+' }, 'commands/x', 'read')).toBe(false);
  });

  it('keeps $SYS out of reach of filters that do not start with $ (MQTT-4.7.2-1)', () => {
    const a = acl(['user alice', 'topic read #', 'user ops', 'topic read $SYS/#'].join('\n'));
    expect(a.allows(alice, '$SYS/broker/clients/connected', 'read')).toBe(false);
    expect(a.allows({ username: 'ops', clientId: 'o' }, '$SYS/broker/clients/connected', 'read')).toBe(true);
  });

  it('denies everything to a user the file does not name when there are no patterns', () => {
    const a = acl('user alice\ntopic read #\n');
    expect(a.allows({ username: 'mallory', clientId: 'm' }, 'a', 'read')).toBe(false);
    expect(a.allows(anon, 'a', 'read')).toBe(false);
  });

  it('reads the file as Mosquitto does: comments, blank lines, user names and filters with spaces', () => {
    const a = acl(['# comment', '', 'user site operator', 'topic read  plant floor/+/temp   ', '   topic write x'].join('\n'));
    const op = { username: 'site operator', clientId: 'c' };
    expect(a.allows(op, 'plant floor/3/temp', 'read')).toBe(true);
    expect(a.allows(op, 'x', 'write')).toBe(true);
  });

  it('reports every line Mosquitto refuses, with its number', () => {
    const { problems } = Acl.parse(['  # indented comment', 'topic sideways a/b', 'topic read a/#/b', 'user', 'topci read x', 'topic read'].join('\n'));
    expect(problems).toEqual([
      'line 1: unknown keyword "#" (expected topic, pattern or user)',
      'line 2: invalid access "sideways" (expected read, write, readwrite or deny)',
      'line 3: topic "a/#/b" uses "#" other than as the whole last level',
      'line 4: "user" without a user name',
      'line 5: unknown keyword "topci" (expected topic, pattern or user)',
    ]);
  });
});

describe('topicMatches', () => {
  it.each([
    ['#', 'a/b', true],
    ['a/+', 'a/b', true],
    ['a/+', 'a/b/c', false],
    ['a/#', 'a', true],
    ['+/+', '/x', true],
    ['+', '$SYS', false],
    ['$SYS/#', '$SYS/x', true],
    ['a/b', 'a/b/', false],
  ])('%s matches %s: %s', (filter, topic, expected) => {
    expect(topicMatches(filter, topic)).toBe(expected);
  });
});
