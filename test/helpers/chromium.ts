import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';

/** Debian's `chromium` (or the Ubuntu name), when installed. */
export const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((f) => fs.existsSync(f));

/** A page open in a headless Chromium that keeps running: its own script refreshes it as a browser would. */
export interface LivePage {
  /** Evaluates an expression in the page and returns its value (JSON-serialisable). */
  evaluate<T>(expression: string): Promise<T>;
  /** Writes a PNG of the page as it is now. */
  screenshot(file: string): Promise<void>;
  /** Console errors, uncaught exceptions and failed loads the page has logged so far. */
  readonly errors: string[];
  close(): Promise<void>;
}

type Message = { id?: number; method?: string; params?: Record<string, unknown>; result?: Record<string, unknown>; error?: { message: string }; sessionId?: string };

/**
 * Opens `url` in a real headless Chromium and keeps the page live, talking the DevTools protocol over
 * `--remote-debugging-pipe` (file descriptors 3 and 4, messages separated by NUL): no WebSocket client and
 * no library needed, and the page runs its timers in real time (unlike `--dump-dom`, which renders once).
 */
export async function openLivePage(url: string, size = { width: 1100, height: 1400 }): Promise<LivePage> {
  if (!CHROMIUM) throw new Error('chromium is not installed (CI installs it in .ci/run)');
  const userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'chromium-'));
  const child: ChildProcess = spawn(
    CHROMIUM,
    ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--remote-debugging-pipe', `--user-data-dir=${userDir}`, `--window-size=${size.width},${size.height}`, 'about:blank'],
    { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => (stderr = (stderr + b.toString('utf8')).slice(-4000)));
  const toBrowser = child.stdio[3] as Writable;
  const fromBrowser = child.stdio[4] as Readable;
  const pending = new Map<number, { resolve: (r: Record<string, unknown>) => void; reject: (e: Error) => void }>();
  const errors: string[] = [];
  let nextId = 1;
  let buffered = '';
  let exited: Error | undefined;
  const exitedPromise = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.once('exit', (code, signal) => {
    exited = new Error(`chromium exited (${code ?? signal}): ${stderr.trim().split('\n').slice(-5).join(' | ')}`);
    for (const p of pending.values()) p.reject(exited);
    pending.clear();
  });
  fromBrowser.on('data', (b: Buffer) => {
    buffered += b.toString('utf8');
    let nul: number;
    while ((nul = buffered.indexOf('\0')) >= 0) {
      const msg = JSON.parse(buffered.slice(0, nul)) as Message;
      buffered = buffered.slice(nul + 1);
      if (msg.id !== undefined) {
        const p = pending.get(msg.id);
        pending.delete(msg.id);
        if (msg.error) p?.reject(new Error(`DevTools: ${msg.error.message}`));
        else p?.resolve(msg.result ?? {});
      } else if (msg.method) onEvent(msg);
    }
  });
  const send = (method: string, params: Record<string, unknown> = {}, sessionId?: string): Promise<Record<string, unknown>> => {
    if (exited) return Promise.reject(exited);
    const id = nextId++;
    return new Promise((resolve, reject) => {
      pending.set(id, { resolve, reject });
      toBrowser.write(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }) + '\0');
    });
  };
  function onEvent(msg: Message): void {
    const p = msg.params ?? {};
    if (msg.method === 'Runtime.consoleAPICalled' && (p.type === 'error' || p.type === 'assert')) {
      errors.push(`console.${String(p.type)}: ${JSON.stringify((p.args as unknown[]) ?? [])}`);
    } else if (msg.method === 'Runtime.exceptionThrown') {
      const d = p.exceptionDetails as { text?: string; exception?: { description?: string } } | undefined;
      errors.push(`uncaught: ${d?.exception?.description ?? d?.text ?? 'exception'}`);
    } else if (msg.method === 'Log.entryAdded') {
      const e = p.entry as { level?: string; text?: string; url?: string } | undefined;
      if (e?.level === 'error') errors.push(`log: ${e.text ?? ''} ${e.url ?? ''}`.trim());
    }
  }

  const close = async () => {
    if (!exited) {
      await send('Browser.close').catch(() => undefined);
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exitedPromise;
      clearTimeout(timer);
    }
    fs.rmSync(userDir, { recursive: true, force: true });
  };
  try {
    const { targetId } = (await send('Target.createTarget', { url: 'about:blank' })) as { targetId: string };
    const { sessionId } = (await send('Target.attachToTarget', { targetId, flatten: true })) as { sessionId: string };
    await send('Runtime.enable', {}, sessionId);
    await send('Log.enable', {}, sessionId);
    await send('Page.enable', {}, sessionId);
    await send('Emulation.setDeviceMetricsOverride', { ...size, deviceScaleFactor: 1, mobile: false }, sessionId);
    await send('Page.navigate', { url }, sessionId);
    // Loaded once the page at `url` (not the blank one before it) reports complete.
    for (let waited = 0; ; waited += 100) {
      const r = await send('Runtime.evaluate', { expression: 'location.href + " " + document.readyState', returnByValue: true }, sessionId);
      if ((r.result as { value?: string }).value === `${new URL(url).href} complete`) break;
      if (waited > 30_000) throw new Error(`${url} did not load within 30 s`);
      await new Promise((res) => setTimeout(res, 100));
    }
    return {
      errors,
      async evaluate<T>(expression: string): Promise<T> {
        const r = (await send('Runtime.evaluate', { expression, returnByValue: true, awaitPromise: true }, sessionId)) as {
          result: { value?: T };
          exceptionDetails?: { text: string };
        };
        if (r.exceptionDetails) throw new Error(`evaluate ${expression}: ${r.exceptionDetails.text}`);
        return r.result.value as T;
      },
      async screenshot(file: string): Promise<void> {
        const { data } = (await send('Page.captureScreenshot', { format: 'png', captureBeyondViewport: true }, sessionId)) as { data: string };
        fs.writeFileSync(file, Buffer.from(data, 'base64'));
      },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
