import type { Logger } from '../core/logger.js';
import { monotonicMs } from '../core/clock.js';
import type { Metrics } from '../core/metrics.js';
import type { Sink } from '../sinks/sink.js';
import type { Spool } from '../spool/spool.js';
import type { Router } from '../routes/router.js';
import { RouteStage } from './route-stage.js';
import { SinkRunner, type RunnerOptions } from './sink-runner.js';

/**
 * One SinkRunner per sink: each sink progresses on its own, so a slow or failing sink never delays
 * another (a row leaves the spool only when every routed sink is done with it).
 */
export class Dispatcher {
  readonly runners: SinkRunner[];

  /** `router`: the routes (ROUTES_FILE), applied by each runner at delivery; the first sink's runner counts them. */
  constructor(sinks: Sink[], spool: Spool, logger: Logger, metrics: Metrics, opts: RunnerOptions, router?: Router) {
    this.runners = sinks.map((s, i) => {
      const log = logger.child({ component: `sink.${s.name}` });
      const now = opts.clock ? () => opts.clock!.monotonic() : monotonicMs;
      const routing = router ? new RouteStage({ router, sink: s.name, counts: i === 0, metrics, logger: log, now }) : undefined;
      return new SinkRunner(s, spool, log, metrics, routing ? { ...opts, routing } : opts);
    });
  }

  start(): void {
    for (const r of this.runners) r.start();
  }

  notify(): void {
    for (const r of this.runners) r.notify();
  }

  /** Stops leasing and waits for in-flight writes (bounded by timeoutMs). True when all finished. */
  async stop(timeoutMs: number): Promise<boolean> {
    const done = await Promise.all(this.runners.map((r) => r.stop(timeoutMs)));
    return done.every(Boolean);
  }

  status(): Record<string, ReturnType<SinkRunner['status']>> {
    return Object.fromEntries(this.runners.map((r) => [r.sink.name, r.status()]));
  }
}
