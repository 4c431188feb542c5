// A TypeScript ES module that uses the package as its users would; checked
// by `tsc --noEmit` (test/types.test.mjs), never run.
import Switchboard, { Client, validChannel, SwitchboardError, type MessageMeta, type HistoryResult } from 'switchboard-client';

const client = new Client('ws://localhost:8080/ws', {
  getToken: async ({ reason }) => (reason === 'refresh' ? 'jwt' : null),
  requestTimeout: 5000
});
client.on('state', (state, old) => console.log(state.toUpperCase(), old));
client.on('connected', (info) => console.log(info.client, info.pingInterval));
const sub = client.subscribe('chat:lobby', {
  message: (data, meta: MessageMeta) => console.log(data, meta.channel, meta.ts?.toFixed(0), meta.offset),
  gap: ({ from, to }) => console.log(from?.offset, to.epoch),
  error: (err) => console.log(err.code)
});
sub.ready.then((info) => console.log(info.resubscribed));
void client.publish('chat:lobby', { nick: 'ann', text: 'hi', tags: ['a', 1, null] }, { idempotencyKey: 'k1' });
interface ChatLine { nick: string; text: string }
const line: ChatLine = { nick: 'ann', text: 'an interface type is publishable too' };
void sub.publish(line);
void client.history('chat:lobby', { limit: 10 }).then((h: HistoryResult) => h.messages.map((m) => [m.offset, m.ts, m.data]));
void client.ping().then((ms) => ms + 1);
const ok: boolean = validChannel('chat:lobby') && Switchboard.validChannel('x');
const err = new SwitchboardError('timeout', 'took too long');
console.log(ok, err.code, Switchboard.version, client.getSubscription('x')?.channel);

// @ts-expect-error: data must be JSON, not a function
void client.publish('chat:lobby', () => 1);
// @ts-expect-error: no such client event
client.on('messages', () => {});
// @ts-expect-error: a state is one of the documented ones
const s: import('switchboard-client').ClientState = 'open';
console.log(s);
