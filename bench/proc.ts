// Reads another process's memory, CPU time and open-file limit from Linux's /proc, so that every
// server is measured from outside in the same way, whether or not it cooperates.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

let clockTicksPerSecond: number | undefined;

function ticksPerSecond(): number {
  if (clockTicksPerSecond === undefined) {
    try {
      clockTicksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      // 100 is the value on every common Linux architecture.
      clockTicksPerSecond = 100;
    }
  }
  return clockTicksPerSecond;
}

/** Returns the resident set size of `pid` in bytes (VmRSS). */
export function readRssBytes(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
  if (!match) {
    throw new Error(`/proc/${pid}/status has no VmRSS line`);
  }
  return Number(match[1]) * 1024;
}

/** Returns the user plus system CPU time that `pid` has used, in milliseconds, at clock-tick resolution. */
export function readCpuMs(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name in field 2 may contain spaces and parentheses, so fields are counted from the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const userTicks = Number(fields[11]);
  const systemTicks = Number(fields[12]);
  return ((userTicks + systemTicks) * 1000) / ticksPerSecond();
}

/** Returns the soft limit on open files of `pid`, or null when it cannot be read. */
export function readOpenFileLimit(pid: number): number | null {
  try {
    const limits = fs.readFileSync(`/proc/${pid}/limits`, 'utf8');
    const match = /^Max open files\s+(\d+|unlimited)/m.exec(limits);
    if (!match) {
      return null;
    }
    return match[1] === 'unlimited' ? Number.POSITIVE_INFINITY : Number(match[1]);
  } catch {
    return null;
  }
}

/** CPU time used during one measurement window, in milliseconds. */
export interface CpuUsage {
  wallMs: number;
  /** The server process. */
  serverMs: number;
  /** The process that created the window, normally the load process. */
  loadMs: number;
  /**
   * Every other process on the machine (other benchmark processes included, the harness among
   * them). On a shared machine this shows when the figures of a window are unreliable.
   */
  otherMs: number;
}

/** Measures CPU use of the server, this process and the rest of the machine over a window. */
export class CpuWindow {
  private readonly startedAt = performance.now();
  private readonly serverStartMs: number;
  private readonly loadStart = process.cpuUsage();
  private readonly machineStart = readCpuTicks();

  constructor(private readonly serverPid: number) {
    this.serverStartMs = readCpuMs(serverPid);
  }

  /** Returns the CPU time used since construction. */
  finish(): CpuUsage {
    const load = process.cpuUsage(this.loadStart);
    const machineEnd = readCpuTicks();
    const serverMs = readCpuMs(this.serverPid) - this.serverStartMs;
    const loadMs = (load.user + load.system) / 1_000;
    const machineMs = ((machineEnd.busy - this.machineStart.busy) * 1_000) / ticksPerSecond();
    return { wallMs: performance.now() - this.startedAt, serverMs, loadMs, otherMs: Math.max(0, machineMs - serverMs - loadMs) };
  }
}

/** Returns the rows that describe CPU use over a window, as percentages of one core. */
export function cpuRows(usage: CpuUsage): Array<{ metric: string; value: number; unit: string }> {
  const percent = (ms: number) => (100 * ms) / usage.wallMs;
  return [
    { metric: 'server_cpu', value: percent(usage.serverMs), unit: '% of a core' },
    { metric: 'load_cpu', value: percent(usage.loadMs), unit: '% of a core' },
    { metric: 'other_cpu', value: percent(usage.otherMs), unit: '% of a core' },
  ];
}

/** Returns how many file descriptors `pid` has open. */
export function countOpenFiles(pid: number): number {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}

function readCpuTicks(): { busy: number; total: number } {
  const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0];
  const ticks = line.trim().split(/\s+/).slice(1).map(Number);
  // Fields: user nice system idle iowait irq softirq steal. Idle and iowait are not busy time.
  const total = ticks.slice(0, 8).reduce((sum, value) => sum + value, 0);
  return { busy: total - ticks[3] - ticks[4], total };
}

/** Returns how many CPUs the whole machine kept busy over `windowMs`, for example 0.4 of 2. */
export async function sampleBusyCpus(windowMs: number, cpus: number): Promise<number> {
  const before = readCpuTicks();
  await new Promise((resolve) => setTimeout(resolve, windowMs));
  const after = readCpuTicks();
  const total = after.total - before.total;
  return total === 0 ? 0 : (cpus * (after.busy - before.busy)) / total;
}
