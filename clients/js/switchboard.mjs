// The ES module entry of switchboard.js (import { Client } from
// 'switchboard-client'): the same client as the CommonJS/browser file,
// re-exported by name and as the default export.
import Switchboard from './switchboard.js';

export const { Client, Subscription, SwitchboardError, validChannel, version, protocolVersion } = Switchboard;
export default Switchboard;
