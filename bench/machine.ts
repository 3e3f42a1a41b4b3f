// A description of the machine a run measured, for the report.
import fs from 'node:fs';
import os from 'node:os';

import { readOpenFileLimit } from './proc.ts';

/** Hardware and software of the machine. */
export interface MachineInfo {
  cpuModel: string;
  /** Logical CPUs this process may use. */
  cpus: number;
  memoryGiB: number;
  node: string;
  kernel: string;
  /** Soft open-file limit of the harness process. Children ask for more. */
  openFileLimit: number | null;
}

/** Describes this machine. */
export function describeMachine(): MachineInfo {
  let cpuModel = os.cpus()[0]?.model ?? 'unknown';
  try {
    const match = /^model name\s*:\s*(.+)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'));
    cpuModel = match?.[1]?.trim() ?? cpuModel;
  } catch {
    // Not Linux: os.cpus() has the model too.
  }

  return {
    cpuModel,
    cpus: os.availableParallelism(),
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    kernel: `${os.type()} ${os.release()}`,
    openFileLimit: readOpenFileLimit(process.pid),
  };
}
