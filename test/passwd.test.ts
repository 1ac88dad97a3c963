/**
 * `mqtt-ingest passwd`, run as users run it (the built CLI), and its files read by the real Mosquitto.
 * (The other direction, files of `mosquitto_passwd` read by the embedded broker: test/broker-security.test.ts.)
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { renderMosquittoConf } from '../src/intake/mosquitto/mosquitto-conf.js';
import { canConnect, findOnPath, pollUntil } from '../src/intake/mosquitto/process-utils.js';
import { PasswordFile } from '../src/intake/security/passwd-file.js';
import { hasMosquitto, mosquittoBin } from './helpers/mosquitto.js';
import { refusal } from './helpers/mqtt-clients.js';
import { BIN } from './helpers/node-process.js';
import { freePort } from './helpers/ports.js';
import { serviceAvailable } from './helpers/skip.js';

const dirs: string[] = [];
function tmp(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'mqtt-ingest-passwd-cli-'));
  dirs.push(d);
  return d;
}
afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

function passwd(args: string[], input?: string): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, 'passwd', ...args], { input: input ?? '', encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('mqtt-ingest passwd', () => {
  it('creates the file with mode 0600, adds and updates users from a line of standard input, and deletes with -D', () => {
    const file = path.join(tmp(), 'passwd');
    expect(passwd([file, 'alice'], 'first-pw\n')).toMatchObject({ code: 0, stdout: `added user "alice" in ${file}; send the broker SIGHUP to apply it\n` });
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(fs.readFileSync(file, 'utf8')).toMatch(/^alice:\$7\$101\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==\n$/);
    expect(passwd([file, 'bob'], 'bob-pw')).toMatchObject({ code: 0 }); // no newline at the end is fine too
    expect(passwd([file, 'alice'], 'second-pw\r\nignored second line\n')).toMatchObject({ code: 0, stdout: expect.stringMatching(/^updated user "alice"/) });
    let users = PasswordFile.load(file);
    expect(users.verify('alice', 'second-pw')).toBe(true);
    expect(users.verify('alice', 'first-pw')).toBe(false);
    expect(users.verify('bob', 'bob-pw')).toBe(true);
    expect(passwd(['-D', file, 'bob'])).toMatchObject({ code: 0, stdout: expect.stringMatching(/^deleted user "bob"/) });
    users = PasswordFile.load(file);
    expect(users.has('bob')).toBe(false);
    expect(users.verify('alice', 'second-pw')).toBe(true);
  });

  it('refuses a password given as an argument, an empty password, a bad user name and deleting a missing user', () => {
    const file = path.join(tmp(), 'passwd');
    const asArgument = passwd([file, 'alice', 'hunter2']);
    expect(asArgument.code).not.toBe(0);
    expect(asArgument.stderr).toMatch(/too many arguments/);
    expect(asArgument.stderr + asArgument.stdout).not.toContain('hunter2');
    expect(fs.existsSync(file)).toBe(false);
    expect(passwd([file, 'alice'], '\n')).toMatchObject({ code: 1, stderr: 'mqtt-ingest passwd: the password is empty\n' });
    expect(passwd([file, 'a:b'], 'pw\n')).toMatchObject({ code: 1, stderr: expect.stringMatching(/must not contain ":"/) });
    expect(passwd(['-D', file, 'alice'])).toMatchObject({ code: 1, stderr: expect.stringMatching(/does not exist/) });
    expect(fs.existsSync(file)).toBe(false);
  });

  const haveScript = serviceAvailable('script (util-linux)', findOnPath('script') !== undefined, 'apt-get install util-linux');

  it.runIf(haveScript)('on a terminal, asks twice without echo, and refuses two different passwords', async () => {
    const file = path.join(tmp(), 'passwd');
    const onTerminal = (answers: string[]) =>
      new Promise<{ code: number | null; output: string }>((resolve) => {
        // `script` runs the command on a pseudo-terminal; answers are typed once each prompt is shown.
        const child = spawn('script', ['-qec', `${process.execPath} ${BIN} passwd ${file} carol`, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
        let output = '';
        const pending = [...answers];
        child.stdout.on('data', (d: Buffer) => {
          output += d.toString();
          const prompts = (output.match(/password: /gi) ?? []).length;
          if (prompts > answers.length - pending.length && pending.length > 0) child.stdin.write(`${pending.shift()}\r`);
        });
        child.on('close', (code) => resolve({ code, output }));
      });
    const mismatch = await onTerminal(['one-secret', 'another-secret']);
    expect(mismatch.code).toBe(1);
    expect(mismatch.output).toMatch(/the passwords do not match/);
    const ok = await onTerminal(['tty-secret', 'tty-secret']);
    expect(ok.code).toBe(0);
    expect(ok.output).toMatch(/Password: \r?\nReenter password: \r?\nadded user "carol"/);
    expect(ok.output).not.toContain('tty-secret');
    expect(PasswordFile.load(file).verify('carol', 'tty-secret')).toBe(true);
  });

  const haveMosquitto = serviceAvailable('mosquitto', hasMosquitto(), 'apt-get install mosquitto');

  it.runIf(haveMosquitto)('writes files the real Mosquitto accepts', async () => {
    const dir = tmp();
    const file = path.join(dir, 'passwd');
    expect(passwd([file, 'sensor-1'], 'p@ss:word with spaces\n').code).toBe(0);
    const port = await freePort();
    const conf = path.join(dir, 'mosquitto.conf');
    fs.writeFileSync(
      conf,
      renderMosquittoConf({
        host: '127.0.0.1',
        port,
        dataDir: dir,
        user: os.userInfo().username,
        persistence: false,
        security: { host: '127.0.0.1', plaintextPort: port, authFile: file, allowAnonymous: false, identityFromCert: false, maxPacketBytes: 1_048_576, maxConnections: 100 },
      }),
    );
    const child = spawn(mosquittoBin()!, ['-c', conf], { stdio: 'ignore' });
    try {
      expect(await pollUntil(() => canConnect('127.0.0.1', port), 15_000)).toBe(true);
      const url = `mqtt://127.0.0.1:${port}`;
      expect(await refusal(url, { username: 'sensor-1', password: 'p@ss:word with spaces' })).toBe('connected');
      expect(await refusal(url, { username: 'sensor-1', password: 'wrong' })).toMatch(/not authori[sz]ed/i);
    } finally {
      const closed = new Promise((r) => child.once('close', r));
      child.kill('SIGTERM');
      await closed;
    }
  });
});
