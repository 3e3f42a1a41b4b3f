// The side of a benchmark child process that talks to the harness over IPC.
import type { ChildMessage } from './processes.ts';

/** Sends one message to the harness and resolves once it is written. Without an IPC channel it does nothing. */
export function sendToHarness(message: ChildMessage): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send || !process.connected) {
      resolve();
      return;
    }
    process.send(message, () => resolve());
  });
}

/** Sends a progress line, which the harness prints on its standard error. */
export function reportProgress(text: string): void {
  void sendToHarness({ type: 'progress', text });
}

/**
 * Ends this process when the harness goes away (its IPC channel closes) or `deadlineMs` passes,
 * whichever comes first, after `cleanup` has had up to five seconds.
 */
export function exitWithHarness(deadlineMs: number, cleanup: () => Promise<void> | void = () => {}): void {
  let exiting = false;
  const exit = (code: number) => {
    if (exiting) {
      return;
    }
    exiting = true;
    setTimeout(() => process.exit(code), 5_000).unref();
    Promise.resolve()
      .then(cleanup)
      .catch((error: unknown) => process.stderr.write(`cleanup failed: ${(error as Error).message}\n`))
      .finally(() => process.exit(code));
  };

  process.once('disconnect', () => exit(0));
  process.once('SIGTERM', () => exit(0));
  process.once('SIGINT', () => exit(130));
  setTimeout(() => {
    process.stderr.write(`stopping after the hard limit of ${deadlineMs} ms\n`);
    exit(1);
  }, deadlineMs).unref();
}
