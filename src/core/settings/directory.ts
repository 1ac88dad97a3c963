/** Whether a configured folder (DATA_DIR, FILE_SINK_DIR) can be used: found at load rather than at start. */
import { accessSync, constants as fsConstants, statSync } from 'node:fs';
import path from 'node:path';
import { fsReason, quote } from './text.js';

/** Why `dir` cannot be used as a writable directory (it or the first existing folder above it), or undefined. */
export function directoryProblem(dir: string): string | undefined {
  const target = path.resolve(dir);
  let existing = target;
  for (;;) {
    try {
      const st = statSync(existing);
      if (!st.isDirectory()) {
        return existing === target ? 'is a file, not a directory' : `cannot be created: ${quote(existing)} is a file, not a directory`;
      }
      break;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const parent = path.dirname(existing);
      // ENOTDIR: a folder above is a file; the walk up finds it and says so.
      if ((code !== 'ENOENT' && code !== 'ENOTDIR') || parent === existing) return `cannot be checked (${fsReason(err)})`;
      existing = parent;
    }
  }
  try {
    accessSync(existing, fsConstants.W_OK | fsConstants.X_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const where = existing === target ? 'it' : `${quote(existing)}, where it would be created,`;
    if (code === 'EROFS') return `cannot be written: ${where} is on a read-only file system`;
    if (code === 'EACCES' || code === 'EPERM') {
      return `cannot be written: ${where} is not writable by this user (uid ${process.getuid?.() ?? '?'})`;
    }
    return `cannot be written (${fsReason(err)})`;
  }
  return undefined;
}
