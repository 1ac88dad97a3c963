import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { findOnPath } from '../mosquitto/process-utils.js';
import { PasswordFile, PasswordFileError, hashPassword, parsePasswordFile, updatePasswordText, userNameProblem, writeFileAtomic } from './passwd-file.js';

const dirs: string[] = [];
function tmp(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'mqtt-ingest-passwd-'));
  dirs.push(d);
  return d;
}
afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

// Written by the real mosquitto_passwd 2.0.11 (`mosquitto_passwd -b pw alice secret1`).
const MOSQUITTO_LINE = 'alice:$7$101$KnRloylSZ/T9uAet$bvSvfZ3SaE/dpdCJNx3QjmpmZ7IehQ/TWELv2yLBbIosSqk2vvWaAzqt4kAVOZD3aoFmWEDfy3QAuB/r0pkqZg==';

describe('password files', () => {
  it('verifies a line mosquitto_passwd wrote, and nothing else', () => {
    const file = PasswordFile.fromText(`${MOSQUITTO_LINE}\n`);
    expect(file.verify('alice', 'secret1')).toBe(true);
    expect(file.verify('alice', Buffer.from('secret1'))).toBe(true);
    expect(file.verify('alice', 'secret2')).toBe(false);
    expect(file.verify('alice', undefined)).toBe(false);
    expect(file.verify('bob', 'secret1')).toBe(false);
    // Mosquitto reads the password as a C string: what follows a NUL is not part of it.
    expect(file.verify('alice', Buffer.from('secret1\0anything'))).toBe(true);
  });

  it("writes mosquitto_passwd 2.0's $7$ format: 101 iterations, a 12-byte salt, a 64-byte hash, standard base64", () => {
    const hash = hashPassword('s3cret');
    expect(hash).toMatch(/^\$7\$101\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==$/);
    const file = PasswordFile.fromText(`u:${hash}\n`);
    expect(file.verify('u', 's3cret')).toBe(true);
    expect(file.verify('u', 's3creT')).toBe(false);
    expect(hashPassword('s3cret')).not.toBe(hash); // a fresh salt each time
  });

  it.runIf(findOnPath('mosquitto_passwd') !== undefined)('reads what the installed mosquitto_passwd writes', () => {
    const file = path.join(tmp(), 'pw');
    execFileSync(findOnPath('mosquitto_passwd')!, ['-c', '-b', file, 'sensor-1', 'p@ss:word with spaces']);
    expect(PasswordFile.load(file).verify('sensor-1', 'p@ss:word with spaces')).toBe(true);
  });

  it('skips comments and lines without ":" and reports every line Mosquitto would drop', () => {
    const text = [
      '# a comment: with a colon',
      'no colon here',
      MOSQUITTO_LINE,
      'plain:not-a-hash',
      'short:$7$101$AAAA$AAAA',
      MOSQUITTO_LINE,
      ':$7$101$x$y',
      '',
    ].join('\n');
    const { users, problems } = parsePasswordFile(text);
    expect([...users.keys()]).toEqual(['alice']);
    expect(problems).toEqual([
      'line 4: user "plain": the hash must start with $7$ (or $6$); write it with `mqtt-ingest passwd` or mosquitto_passwd',
      'line 5: user "short": the salt must be 12 bytes of base64',
      'line 6: user "alice" appears twice',
      'line 7: empty user name',
    ]);
    expect(problems.join('\n')).not.toContain('bvSvfZ3SaE');
  });

  it('load() throws a typed error naming the file and each problem', () => {
    const file = path.join(tmp(), 'pw');
    fs.writeFileSync(file, 'x:$7$1$bad$bad\n');
    expect(() => PasswordFile.load(file)).toThrow(PasswordFileError);
    expect(() => PasswordFile.load(file)).toThrow(/line 1: user "x": the salt must be 12 bytes/);
    expect(() => PasswordFile.load(path.join(tmp(), 'missing'))).toThrow(/cannot read it \(ENOENT\)/);
  });

  it('adds, replaces and deletes one user, keeping every other line', () => {
    const start = `# users\n${MOSQUITTO_LINE}\nbob:$7$old\n`;
    const added = updatePasswordText(start, 'carol', '$7$new');
    expect(added).toEqual({ existed: false, text: `# users\n${MOSQUITTO_LINE}\nbob:$7$old\ncarol:$7$new\n` });
    const replaced = updatePasswordText(added.text, 'bob', '$7$newer');
    expect(replaced.text).toBe(`# users\n${MOSQUITTO_LINE}\nbob:$7$newer\ncarol:$7$new\n`);
    expect(replaced.existed).toBe(true);
    const deleted = updatePasswordText(replaced.text, 'alice', undefined);
    expect(deleted).toEqual({ existed: true, text: '# users\nbob:$7$newer\ncarol:$7$new\n' });
    expect(updatePasswordText('', 'x', undefined)).toEqual({ existed: false, text: '' });
  });

  it('refuses user names a password file cannot hold', () => {
    expect(userNameProblem('sensor-7')).toBeUndefined();
    expect(userNameProblem('')).toMatch(/empty/);
    expect(userNameProblem('a:b')).toMatch(/":"/);
    expect(userNameProblem('a\nb')).toMatch(/newline/);
    expect(userNameProblem(' a')).toMatch(/blanks/);
  });

  it('writes atomically: a new file gets mode 0600, an existing file keeps its mode', () => {
    const dir = tmp();
    const file = path.join(dir, 'pw');
    writeFileAtomic(file, 'a\n');
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    fs.chmodSync(file, 0o640);
    writeFileAtomic(file, 'b\n');
    expect(fs.readFileSync(file, 'utf8')).toBe('b\n');
    expect(fs.statSync(file).mode & 0o777).toBe(0o640);
    expect(fs.readdirSync(dir)).toEqual(['pw']); // no temporary file left
  });
});
