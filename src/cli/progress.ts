/**
 * The progress of a long operations command (`provision`, `smoke`, `dlq replay|purge`, `simulate`) and its
 * summary line.
 *
 * On a terminal (stderr a TTY) one live line on stderr says where the command is, redrawn in place with
 * `\r\x1b[K` at most once a second: `provision: 3/7 resources checked`, `dlq replay: 4,000/25,000 rows,
 * 1,200/s`. Any other line the command prints clears it first, so the two never mix, and the live line is drawn
 * again below it. Off a terminal (a pipe, a CI log) there is no live line at all: only the command's own lines
 * and, at the end, its summary line, which is written in both cases.
 */

/** Where the live line goes: process.stderr, or a stand-in with `isTTY`. */
export interface ProgressStream {
  write(chunk: string): unknown;
  isTTY?: boolean;
  /** The terminal's width: a longer live line would wrap, and `\r\x1b[K` clears only its last row. */
  columns?: number;
}

/** The live line is redrawn at most this often (and, with `live`, this often). */
export const PROGRESS_INTERVAL_MS = 1000;

const CLEAR = '\r\x1b[K';

/** 25000 → "25,000". */
export function count(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

/** Milliseconds as the summary lines give them: 2940 → "2.9 s", 65000 → "65 s". */
export function duration(ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 1000)} s`;
}

export class Progress {
  readonly tty: boolean;
  private readonly started: number;
  private status: (() => string) | undefined;
  /** A live line is on the terminal now. */
  private drawn = false;
  private lastDraw = 0;
  private lastText = '';
  private timer: NodeJS.Timeout | undefined;
  /** A draw put off by the once-a-second limit, so that the newest text still shows. */
  private pending: NodeJS.Timeout | undefined;
  private finished = false;

  /**
   * `command` begins every line this prints (`provision`, `dlq replay`); `stderr` carries the live line and, by
   * default, the summary.
   */
  constructor(
    private readonly command: string,
    private readonly stderr: ProgressStream,
    private readonly now: () => number = Date.now,
  ) {
    this.tty = stderr.isTTY === true;
    this.started = now();
  }

  /** Milliseconds since the command started. */
  elapsedMs(): number {
    return this.now() - this.started;
  }

  /**
   * Sets what the live line says (without the command's name). The first text is drawn at once, later ones at
   * most once a second. `live`: the text changes by itself (a count of seconds), so it is redrawn every second
   * until the next update. Nothing is drawn off a terminal.
   */
  update(text: string | (() => string), opts: { live?: boolean } = {}): void {
    if (!this.tty || this.finished) return;
    this.status = typeof text === 'string' ? () => text : text;
    this.stopTimer();
    if (opts.live) {
      this.timer = setInterval(() => this.draw(), PROGRESS_INTERVAL_MS);
      // The live line never keeps a command alive.
      this.timer.unref();
    }
    const wait = this.lastDraw + PROGRESS_INTERVAL_MS - this.now();
    if (!this.drawn || wait <= 0) this.draw();
    else if (!this.pending) {
      this.pending = setTimeout(() => {
        this.pending = undefined;
        this.draw();
      }, wait);
      this.pending.unref();
    }
  }

  /** Prints a whole line to `stream` (stderr by default): the live line is cleared first and drawn again after. */
  line(text: string, stream: ProgressStream = this.stderr): void {
    this.clear();
    stream.write(`${text}\n`);
    if (this.status && !this.finished) this.draw();
  }

  /** Takes the live line off the terminal (before output that is not a line, or at the end). */
  clear(): void {
    if (!this.drawn) return;
    this.stderr.write(CLEAR);
    this.drawn = false;
  }

  /**
   * Ends the live line and prints the summary line `<command>: <summary>`, on a terminal or not, to `stream`
   * (stderr by default). Later updates draw nothing.
   */
  done(summary: string, stream: ProgressStream = this.stderr): void {
    this.stop();
    stream.write(`${this.command}: ${summary}\n`);
  }

  /** Ends the live line without a summary (a command that stops on a usage or configuration error). */
  stop(): void {
    this.finished = true;
    this.stopTimer();
    this.clear();
  }

  private draw(): void {
    if (!this.status || this.finished) return;
    const full = `${this.command}: ${this.status()}`;
    const width = (this.stderr.columns ?? 0) - 1;
    const text = width > 0 && full.length > width ? `${full.slice(0, Math.max(0, width - 1))}…` : full;
    // The same words again would only flicker.
    if (this.drawn && text === this.lastText) return;
    this.stderr.write(`${CLEAR}${text}`);
    this.drawn = true;
    this.lastText = text;
    this.lastDraw = this.now();
  }

  private stopTimer(): void {
    if (this.timer) clearInterval(this.timer);
    if (this.pending) clearTimeout(this.pending);
    this.timer = undefined;
    this.pending = undefined;
  }
}

/**
 * Counts rows done of a known total for the live line: `4,000/25,000 rows, 1,200/s`, and the rate for the
 * summary.
 */
export class RowCount {
  done = 0;

  constructor(
    private readonly progress: Progress,
    readonly total: number,
  ) {}

  add(n: number): void {
    this.done += n;
    this.progress.update(() => `${count(this.done)}/${count(this.total)} rows, ${count(this.perSecond())}/s`);
  }

  /** Rows per second since the command started. */
  perSecond(): number {
    const s = this.progress.elapsedMs() / 1000;
    return s > 0 ? this.done / s : 0;
  }
}
