// The same package through require (CommonJS), as Node users of
// switchboard.js load it; checked by tsc, never run.
import Switchboard = require('switchboard-client');

const client = new Switchboard.Client('ws://localhost:8080/ws', { WebSocket: class {} as unknown as Switchboard.WebSocketConstructor });
const sub: Switchboard.Subscription = client.subscribe('news', (data, meta) => console.log(data, meta.ts));
console.log(sub.state, Switchboard.protocolVersion);
