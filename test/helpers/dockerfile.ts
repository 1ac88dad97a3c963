/**
 * A Dockerfile reader for tests (there is no Docker engine on these machines): instructions with line
 * continuations joined and comments dropped, grouped by stage, with `ARG` defaults substituted into FROM and
 * exec-form (JSON) arguments parsed. Enough to check the image's properties and replay its runtime stage.
 */
import { readFileSync } from 'node:fs';

export interface Instruction {
  /** Upper case: FROM, RUN, COPY, … */
  op: string;
  /** The text after the instruction word, continuations joined with a space. */
  args: string;
  /** For exec form (`["a", "b"]`): the parsed array. */
  exec?: string[];
  /** COPY/ADD flags such as `--from=build`, `--chown=…`. */
  flags: Record<string, string>;
  /** COPY/ADD sources and destination (after the flags). */
  paths: string[];
  line: number;
}

export interface Stage {
  name: string | undefined;
  image: string;
  instructions: Instruction[];
}

export interface Dockerfile {
  /** ARGs before the first FROM, with their defaults. */
  globalArgs: Record<string, string>;
  stages: Stage[];
}

export function parseDockerfile(file: string): Dockerfile {
  const lines = readFileSync(file, 'utf8').split('\n');
  const instructions: Instruction[] = [];
  let pending = '';
  let start = 0;
  lines.forEach((raw, i) => {
    const line = raw.replace(/\r$/, '');
    // Comment lines (parser directives included) are dropped, even between continuation lines, as Docker does.
    if (/^\s*#/.test(line)) return;
    if (pending === '' && line.trim() === '') return;
    if (pending === '') start = i + 1;
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1).trim()} `;
      return;
    }
    pending += line.trim();
    const m = /^(\w+)\s*(.*)$/s.exec(pending.trim());
    pending = '';
    if (!m) return;
    instructions.push(toInstruction(m[1]!.toUpperCase(), m[2]!.trim(), start));
  });

  const globalArgs: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const ins of instructions) {
    if (ins.op === 'FROM') {
      const [image, as, name] = ins.args.split(/\s+/);
      const resolved = (image ?? '').replace(/\$\{?(\w+)\}?/g, (_, v: string) => globalArgs[v] ?? '');
      stages.push({ name: as?.toUpperCase() === 'AS' ? name : undefined, image: resolved, instructions: [] });
    } else if (stages.length === 0) {
      if (ins.op === 'ARG') {
        const [k, v] = ins.args.split('=');
        globalArgs[k!] = v ?? '';
      }
    } else {
      stages.at(-1)!.instructions.push(ins);
    }
  }
  return { globalArgs, stages };
}

function toInstruction(op: string, args: string, line: number): Instruction {
  const ins: Instruction = { op, args, flags: {}, paths: [], line };
  if (args.startsWith('[')) {
    try {
      const parsed: unknown = JSON.parse(args);
      if (Array.isArray(parsed) && parsed.every((a) => typeof a === 'string')) ins.exec = parsed as string[];
    } catch {
      // Not valid JSON: Docker treats it as shell form, and so do we.
    }
  }
  if (op === 'COPY' || op === 'ADD') {
    const words = args.split(/\s+/);
    while (words[0]?.startsWith('--')) {
      const [k, v] = words.shift()!.slice(2).split('=');
      ins.flags[k!] = v ?? '';
    }
    ins.paths = words;
  }
  if (op === 'HEALTHCHECK') {
    const cmd = args.indexOf('CMD ');
    const rest = cmd >= 0 ? args.slice(cmd + 4).trim() : '';
    if (rest.startsWith('[')) ins.exec = JSON.parse(rest) as string[];
  }
  return ins;
}

/** `ENV A=1 B=2` (and the old `ENV A 1`) of a stage, in order. */
export function stageEnv(stage: Stage): Record<string, string> {
  const env: Record<string, string> = {};
  for (const ins of stage.instructions.filter((i) => i.op === 'ENV')) {
    if (!ins.args.includes('=')) {
      const [k, ...v] = ins.args.split(/\s+/);
      env[k!] = v.join(' ');
      continue;
    }
    for (const m of ins.args.matchAll(/(\w+)=("([^"]*)"|\S*)/g)) env[m[1]!] = m[3] ?? m[2]!;
  }
  return env;
}

export function lastOf(stage: Stage, op: string): Instruction | undefined {
  return stage.instructions.filter((i) => i.op === op).at(-1);
}
