import type { ChildProcess } from 'node:child_process';

/** The last 8 KB a child wrote on stdout and stderr, for the error of a start that failed. */
export function outputTail(child: ChildProcess): () => string {
  let output = '';
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-8_000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  return () => output;
}
