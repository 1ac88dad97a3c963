/**
 * The end-to-end case's published stream: `publishers` processes of `mosquitto_pub -l -q 1`, each with its share of
 * the messages (200-byte JSON, benchPayload) written to files once, so that every pass publishes the same bytes in
 * the same way and the files are not made while a pass is timed. A publisher sends its share in runs of at most
 * 50,000 lines (mosquitto_pub 2.0.11 loses messages past 65,535 in one run: see mosquittoPublish), one run after
 * the other. All publishers start through one `sh`, which, once every one has exited, writes its own /proc stat to
 * fd 3: the CPU of the publishers it waited for (cutime, cstime), kept out of every consumer's figure.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { benchPayload, mosquittoTool, nowMs } from './lib.js';

const RUN_LINES = 50_000;

export interface Stream {
  /** Per publisher, its files in order. */
  files: string[][];
  messages: number;
}

/** Writes `messages` payloads (sequence numbers from `firstSeq`) for `publishers` publishers under `dir`. */
export function writeStream(dir: string, name: string, messages: number, publishers: number, firstSeq: number): Stream {
  const per = Math.ceil(messages / publishers);
  const files: string[][] = [];
  for (let p = 0; p < publishers; p++) {
    const from = firstSeq + p * per;
    const to = firstSeq + Math.min(messages, (p + 1) * per);
    const own: string[] = [];
    for (let start = from; start < to; start += RUN_LINES) {
      const lines: string[] = [];
      for (let i = start; i < Math.min(to, start + RUN_LINES); i++) lines.push(benchPayload(i));
      const file = path.join(dir, `${name}-${p}-${own.length}.txt`);
      writeFileSync(file, lines.join('\n') + '\n');
      own.push(file);
    }
    files.push(own);
  }
  return { files, messages };
}

export interface Published {
  /** When the publishers were started (the clock of nowMs): the pass's first publish follows at once. */
  started: number;
  /** When the last publisher had exited (every PUBACK received from the broker). */
  ended: number;
  /** CPU seconds of all the publishers together. */
  cpuSeconds: number;
}

/** Publishes the stream, publisher p to `${topicPrefix}/p${p}`; resolves once every publisher has exited. */
export function publishStream(port: number, topicPrefix: string, stream: Stream): Promise<Published> {
  const pub = mosquittoTool('mosquitto_pub');
  const lines = ['fail=0'];
  stream.files.forEach((files, p) => {
    const runs = files.map((f) => `"${pub}" -h 127.0.0.1 -p ${port} -q 1 -t "${topicPrefix}/p${p}" -l < "${f}"`).join(' && ');
    lines.push(`( ${runs} ) & p${p}=$!`);
  });
  lines.push(`for p in ${stream.files.map((_, p) => `$p${p}`).join(' ')}; do wait "$p" || fail=1; done`);
  lines.push('cat /proc/$$/stat >&3', 'exit $fail');
  const started = nowMs();
  const proc = spawn('sh', ['-c', lines.join('\n')], { stdio: ['ignore', 'ignore', 'inherit', 'pipe'] });
  let stat = '';
  proc.stdio[3]!.on('data', (d) => (stat += d));
  return new Promise((resolve, reject) => {
    proc.on('error', reject);
    proc.on('close', (code) => {
      const ended = nowMs();
      if (code !== 0) return reject(new Error(`the e2e publishers exited with ${code}`));
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      resolve({ started, ended, cpuSeconds: (Number(fields[13]) + Number(fields[14])) / 100 });
    });
  });
}
