/**
 * `mqtt-ingest passwd [-D] FILE USER`: adds, updates or (with -D) deletes a user in a Mosquitto password file
 * (MQTT_AUTH_FILE), in the `$7$` format `mosquitto_passwd` 2.0 writes (PBKDF2-SHA512, 101 iterations, 12-byte
 * salt), so both broker modes and Mosquitto's own tools read the same file. A new file is created with mode 0600.
 *
 * The password is never an argument (it would show in `ps` and the shell history): on a terminal it is asked
 * twice without echo; otherwise the first line of standard input is read (`printf '%s\n' "$PW" | mqtt-ingest
 * passwd FILE USER`). Send the broker SIGHUP afterwards to load the change.
 */
import fs from 'node:fs';
import type { Command } from 'commander';
import { IngestError } from '../core/errors.js';
import { hashPassword, parsePasswordFile, updatePasswordText, userNameProblem, writeFileAtomic } from '../intake/security/passwd-file.js';

export interface PasswdIo {
  stdin: NodeJS.ReadStream;
  stdout: Pick<NodeJS.WritableStream, 'write'>;
  stderr: Pick<NodeJS.WritableStream, 'write'>;
}

/** Runs the command; returns the exit code (0 done, 1 refused). Messages never contain the password. */
export async function passwd(file: string, user: string, opts: { delete?: boolean }, io: PasswdIo): Promise<number> {
  const fail = (message: string) => {
    io.stderr.write(`mqtt-ingest passwd: ${message}\n`);
    return 1;
  };
  const bad = userNameProblem(user);
  if (bad) return fail(bad);
  let text = '';
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') return fail(`cannot read ${JSON.stringify(file)} (${code ?? String(err)})`);
    if (opts.delete) return fail(`${JSON.stringify(file)} does not exist`);
  }
  // Other users' lines are kept as they are, but say what the brokers will refuse to load.
  for (const problem of parsePasswordFile(text).problems) io.stderr.write(`warning: ${file}: ${problem}\n`);

  if (opts.delete) {
    const { text: next, existed } = updatePasswordText(text, user, undefined);
    if (!existed) return fail(`user ${JSON.stringify(user)} is not in ${JSON.stringify(file)}`);
    writeFileAtomic(file, next);
    io.stdout.write(`deleted user ${JSON.stringify(user)} from ${file}; send the broker SIGHUP to apply it\n`);
    return 0;
  }

  let password: string;
  try {
    password = io.stdin.isTTY ? await askTwice(io) : await readLine(io.stdin);
  } catch (err) {
    return fail((err as Error).message);
  }
  if (password === '') return fail('the password is empty');
  if (password.includes('\0')) return fail('the password must not contain a NUL character');
  const { text: next, existed } = updatePasswordText(text, user, hashPassword(password));
  writeFileAtomic(file, next);
  io.stdout.write(`${existed ? 'updated' : 'added'} user ${JSON.stringify(user)} in ${file}; send the broker SIGHUP to apply it\n`);
  return 0;
}

async function askTwice(io: PasswdIo): Promise<string> {
  const first = await askHidden(io, 'Password: ');
  const second = await askHidden(io, 'Reenter password: ');
  if (first !== second) throw new IngestError('PASSWD_FAILED', 'the passwords do not match');
  return first;
}

/** Reads a line from the terminal in raw mode, echoing nothing. Ctrl-C and Ctrl-D abort. */
function askHidden(io: PasswdIo, prompt: string): Promise<string> {
  const stdin = io.stdin;
  // Raw mode (no echo) before the prompt shows: whatever is typed after the prompt is never echoed.
  stdin.setRawMode(true);
  io.stderr.write(prompt);
  return new Promise((resolve, reject) => {
    let typed = '';
    const done = (err?: Error) => {
      stdin.setRawMode(false);
      stdin.pause();
      stdin.removeListener('data', onData);
      io.stderr.write('\n');
      if (err) reject(err);
      else resolve(typed);
    };
    const onData = (chunk: Buffer) => {
      for (const ch of chunk.toString('utf8')) {
        if (ch === '\r' || ch === '\n') return done();
        if (ch === '\u0003' || ch === '\u0004') return done(new IngestError('PASSWD_FAILED', 'aborted'));
        if (ch === '\u007f' || ch === '\b') typed = typed.slice(0, -1);
        else typed += ch;
      }
    };
    stdin.resume();
    stdin.on('data', onData);
  });
}

/** The first line of a stream (without its line ending), or everything up to the end when there is no newline. */
function readLine(stream: NodeJS.ReadableStream): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const finish = () => {
      stream.removeListener('data', onData);
      stream.removeListener('end', finish);
      stream.pause();
      const nl = text.indexOf('\n');
      resolve((nl === -1 ? text : text.slice(0, nl)).replace(/\r$/, ''));
    };
    const onData = (chunk: Buffer | string) => {
      text += chunk.toString();
      if (text.includes('\n')) finish();
    };
    stream.on('data', onData);
    stream.once('end', finish);
    stream.once('error', reject);
  });
}

export function registerPasswd(program: Command): void {
  program
    .command('passwd')
    .description('add, update or delete a user of a Mosquitto-format password file (MQTT_AUTH_FILE)')
    .argument('<file>', 'the password file; created with mode 0600 when missing')
    .argument('<user>', 'the user name')
    .option('-D, --delete', 'delete the user')
    .allowExcessArguments(false)
    .addHelpText(
      'after',
      '\nThe password is never taken as an argument: it is asked twice on a terminal, or read as the first line of\n' +
        'standard input. Send the broker SIGHUP (kill -HUP <pid of mqtt-ingest run>) to load the change.\n',
    )
    .action(async (file: string, user: string, options: { delete?: boolean }) => {
      process.exitCode = await passwd(file, user, options, process);
    });
}
