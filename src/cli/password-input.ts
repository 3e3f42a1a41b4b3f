import readline from 'node:readline';

import { CommandError } from './output.ts';

/** Reads all of standard input and strips one trailing newline, for `--password-stdin`. */
export async function readPasswordFromStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) {
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

/** Prompts twice on the terminal without echo; fails when standard input is not a terminal. */
export async function promptPassword(): Promise<string> {
  if (!process.stdin.isTTY) {
    throw new CommandError('password_required', 'Standard input is not a terminal; pipe the password and pass --password-stdin.', 2);
  }

  const first = await promptHidden('Password: ');
  const second = await promptHidden('Repeat password: ');
  if (first !== second) {
    throw new CommandError('password_mismatch', 'The two passwords differ; run the command again.', 2);
  }
  return first;
}

function promptHidden(question: string): Promise<string> {
  return new Promise((resolve) => {
    const terminal = readline.createInterface({ input: process.stdin, output: process.stderr, terminal: true });
    // Characters typed after the question are not written back to the terminal.
    (terminal as unknown as { _writeToOutput: (text: string) => void })._writeToOutput = (text: string) => {
      if (text.startsWith(question)) {
        process.stderr.write(question);
      }
    };
    terminal.question(question, (answer) => {
      terminal.close();
      process.stderr.write('\n');
      resolve(answer);
    });
  });
}
