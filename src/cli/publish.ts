import { exceedsDataDepth, maxDataDepth } from '../channels/data.ts';
import { parseChannelName } from '../channels/names.ts';
import { parseOptionArgs, resolveOptions } from '../config/load.ts';
import { publishThroughAdminSocket } from '../gateway/admin-socket.ts';
import { CommandError, printLine } from './output.ts';

/** Usage of `portcullis publish`. */
export const publishUsage = `portcullis publish <channel> <json>    (put -- before data that starts with "-", e.g. -- -1)`;

const channelRule = 'lower-case [a-z0-9_-] segments separated by "/", at most 8 segments and 200 bytes';

// Server-side codes that mean the input was wrong rather than the server.
const usageErrorCodes = new Set(['invalid_channel', 'invalid_request', 'payload_too_large', 'data_too_deep']);

function parseData(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    // The parser's message quotes the input, which may be sensitive, so it is not repeated.
    throw new CommandError('invalid_json', `The data is not valid JSON; quote it for the shell, e.g. '{"reboot":true}' or '"text"'.`, 2);
  }
}

/**
 * Runs `portcullis publish`: sends one message through the admin socket of the server running on
 * `--data-dir`, as the operator, and prints how many subscribers on that server received it.
 */
export async function runPublish(argv: string[]): Promise<void> {
  const { values, positionals } = parseOptionArgs(argv);
  const [channel, json, ...extra] = positionals;
  if (channel === undefined || json === undefined || extra.length > 0) {
    throw new CommandError('usage', `Give a channel and the data as one JSON argument.\n${publishUsage}`, 2);
  }
  if (!parseChannelName(channel)) {
    throw new CommandError('invalid_channel', `Channel "${channel}" is not valid: use ${channelRule}.`, 2);
  }
  const data = parseData(json);
  if (exceedsDataDepth(data)) {
    throw new CommandError('data_too_deep', `The data nests arrays or objects deeper than ${maxDataDepth} levels; flatten it.`, 2);
  }
  const options = resolveOptions(values, process.env);

  const response = await publishThroughAdminSocket(options.dataDir, { channel, data });
  if (response === null) {
    throw new CommandError('server_not_running', `No server is running on ${options.dataDir}; start it with "portcullis start" and try again.`);
  }

  const body = response.body as { delivered?: unknown; error?: unknown; error_description?: unknown };
  if (response.status !== 200 || typeof body.delivered !== 'number') {
    const code = typeof body.error === 'string' ? body.error : 'server_error';
    const description = typeof body.error_description === 'string' ? body.error_description : `status ${response.status}`;
    throw new CommandError(code, `The server rejected the message (${code}): ${description}`, usageErrorCodes.has(code) ? 2 : 1);
  }
  printLine(`delivered to ${body.delivered} subscriber(s) on this server`);
}
