import { readdirSync, readFileSync, existsSync } from 'node:fs';
import path from 'node:path';

export interface FileRecord {
  message_id: string;
  topic: string;
  qos: number;
  retain: boolean;
  received_at: string;
  payload: string;
  payload_encoding: 'utf8' | 'base64';
}

/** Every record the file sink wrote under `dir` (DATA_DIR/out), in file then line order. */
export function readFileSink(dir: string): FileRecord[] {
  if (!existsSync(dir)) return [];
  const files = readdirSync(dir).filter((f) => f.endsWith('.ndjson')).sort();
  return files.flatMap((f) =>
    readFileSync(path.join(dir, f), 'utf8')
      .split('\n')
      .filter((l) => l.length > 0)
      .map((l) => JSON.parse(l) as FileRecord),
  );
}
