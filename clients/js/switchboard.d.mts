// Types of the ES module entry (switchboard.mjs): the same as switchboard.d.ts.
export * from './switchboard.js';
import * as Switchboard from './switchboard.js';
export default Switchboard;
