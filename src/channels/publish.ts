import { PortcullisError } from '../errors.ts';
import type { ChannelBroker, ChannelMessage, Publisher } from './broker.ts';
import { exceedsDataDepth } from './data.ts';
import { parseChannelName } from './names.ts';

/** Publisher recorded for messages that the operator sends from the CLI or from embedding code. */
export const operatorPublisher: Readonly<Publisher> = Object.freeze({ client_id: 'portcullis', sub: 'operator' });

/**
 * Publishes `data` on `channel` with the operator's authority, for `portcullis publish` and for code
 * that embeds the gateway. Permission checks belong to the caller; the channel name is still
 * validated, and so is the depth of `data`. Returns the number of subscribers on this node that received it.
 */
export function publishAsOperator(broker: ChannelBroker, channel: string, data: unknown, publisher: Publisher = operatorPublisher): number {
  if (!parseChannelName(channel)) {
    throw new PortcullisError('invalid_channel');
  }
  if (exceedsDataDepth(data)) {
    throw new PortcullisError('data_too_deep');
  }

  const message: ChannelMessage = { channel, data, publisher: { ...publisher }, timestamp: Date.now() };
  return broker.publish(message);
}
