// Type declarations of switchboard.js, the JavaScript client of Switchboard's
// native WebSocket dialect (PROTOCOL.md, version 1). README.md describes the
// behaviour; these types describe the shapes. Checked by `tsc --noEmit` in
// the package's tests (test/types/).

/** Any JSON value: what a message's data is when it arrives. */
export type JSONValue = string | number | boolean | null | JSONValue[] | { [key: string]: JSONValue };

/**
 * What publish takes: any value JSON.stringify turns into JSON (objects of
 * interface types included), but not a function.
 */
export type Publishable<T> = T extends (...args: never[]) => unknown ? never : T;

/** The protocol's error codes and the client's own (timeout, disconnected, closed). */
export type ErrorCode =
  | 'bad_request'
  | 'unauthorized'
  | 'forbidden'
  | 'not_found'
  | 'too_large'
  | 'rate_limited'
  | 'limit_exceeded'
  | 'unavailable'
  | 'internal'
  | 'timeout'
  | 'disconnected'
  | 'closed';

/** A failed request (or a client that gave up on its token). */
export interface SwitchboardError extends Error {
  name: 'SwitchboardError';
  code: ErrorCode | (string & {});
  /** The raw reply frame, when the server answered. */
  reply?: unknown;
  /** The close code of a client that gave up on its token (4001, or 0 for a refused auth). */
  closeCode?: number;
}
export const SwitchboardError: {
  (code: string, message?: string, reply?: unknown): SwitchboardError;
  new (code: string, message?: string, reply?: unknown): SwitchboardError;
  readonly prototype: SwitchboardError;
};

export interface Position {
  epoch: string;
  offset: number;
}

/** Why getToken is called. */
export interface TokenRequest {
  reason: 'connect' | 'refresh' | 'unauthorized';
}

/** A token source: a JWT, a Promise of one, or null/'' for none. */
export type TokenSource = (req: TokenRequest) => string | null | undefined | Promise<string | null | undefined>;
export type SubscriptionTokenSource = (channel: string) => string | null | undefined | Promise<string | null | undefined>;

/** A WebSocket constructor: the browser's, or npm ws's. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => unknown;

export interface ClientOptions {
  /** The WebSocket constructor. Default: the global WebSocket (Node: pass require('ws')). */
  WebSocket?: WebSocketConstructor;
  getToken?: TokenSource;
  /** A fixed JWT (never refreshed), or a function like getToken. */
  token?: string | TokenSource;
  getSubscriptionToken?: SubscriptionTokenSource;
  /** ms; default 1000. */
  minRefreshDelay?: number;
  /** ms; default 500. */
  minReconnectDelay?: number;
  /** ms; default 20000. */
  maxReconnectDelay?: number;
  /** ms; default 1000. */
  restartReconnectDelay?: number;
  /** ms; default 10000. */
  requestTimeout?: number;
  /** Default true. */
  heartbeat?: boolean;
}

export type ClientState = 'disconnected' | 'connecting' | 'connected' | 'reconnecting' | 'closed';
export type SubscriptionState = 'subscribing' | 'subscribed' | 'unsubscribed';

/** What connect() resolves with and 'connected' carries: the welcome. */
export interface ConnectedInfo {
  client: string;
  node: string;
  version: number;
  pingInterval: number;
  user?: string;
  expiresAt?: number;
}

export interface DisconnectedInfo {
  code: number;
  reason: string;
  willReconnect: boolean;
}

/** The second argument of a message handler. */
export interface MessageMeta {
  channel: string;
  /** Only on channels with history. */
  epoch?: string;
  offset?: number;
  /** The server's publish time, ms since the Unix epoch. */
  ts?: number;
  /** "base64" when data is binary data a raw client sent, as a base64 string. */
  encoding?: 'base64';
}

export interface SubscribedInfo {
  channel: string;
  resubscribed: boolean;
  recovered: boolean | undefined;
  epoch: string | undefined;
  offset: number | undefined;
}

export interface MemberEvent {
  channel: string;
  client: string;
  user?: string;
}

export interface GapInfo {
  channel: string;
  from: Position | null;
  to: Position;
}

export interface UnsubscribedInfo {
  channel: string;
  reason: string;
}

export interface HistoryMessage {
  offset: number;
  data: JSONValue;
  /** The server's publish time, ms since the Unix epoch (absent on old entries). */
  ts?: number;
  encoding?: 'base64';
}

export interface HistoryResult {
  epoch: string;
  offset: number;
  messages: HistoryMessage[];
}

export interface PublishResult {
  epoch?: string;
  offset?: number;
}

export interface PresenceEntry {
  client: string;
  user?: string;
  info?: JSONValue;
}

export type MessageHandler = (data: JSONValue, meta: MessageMeta) => void;

export interface SubscriptionHandlers {
  message?: MessageHandler;
  subscribed?: (info: SubscribedInfo) => void;
  join?: (ev: MemberEvent) => void;
  leave?: (ev: MemberEvent) => void;
  gap?: (info: GapInfo) => void;
  unsubscribed?: (info: UnsubscribedInfo) => void;
  error?: (err: SwitchboardError) => void;
}

export type SubscriptionEvents = {
  message: [data: JSONValue, meta: MessageMeta];
  subscribed: [info: SubscribedInfo];
  join: [ev: MemberEvent];
  leave: [ev: MemberEvent];
  gap: [info: GapInfo];
  unsubscribed: [info: UnsubscribedInfo];
  error: [err: SwitchboardError];
};

export type ClientEvents = {
  connected: [info: ConnectedInfo];
  disconnected: [info: DisconnectedInfo];
  state: [state: ClientState, old: ClientState];
  refreshed: [info: { user: string | null; expiresAt: number | null }];
  unsubscribed: [info: UnsubscribedInfo];
  error: [err: Error];
};

/** An event emitter over a map of event names to argument lists. */
declare class Emitter<Events extends Record<string, unknown[]>> {
  on<K extends keyof Events & string>(event: K, fn: (...args: Events[K]) => void): this;
  off<K extends keyof Events & string>(event: K, fn?: (...args: Events[K]) => void): this;
  once<K extends keyof Events & string>(event: K, fn: (...args: Events[K]) => void): this;
}

export declare class Subscription extends Emitter<SubscriptionEvents> {
  readonly client: Client;
  readonly channel: string;
  readonly state: SubscriptionState;
  /** The last message's position, or null on channels without history. */
  readonly position: Position | null;
  /** The first subscribed info; rejects when the server refuses the subscription. */
  readonly ready: Promise<SubscribedInfo>;
  unsubscribe(): Promise<void>;
  publish<T>(data: Publishable<T>): Promise<PublishResult>;
  history(opts?: { limit?: number }): Promise<HistoryResult>;
  presence(): Promise<PresenceEntry[]>;
}

export declare class Client extends Emitter<ClientEvents> {
  /** url is the /ws endpoint; http(s):// is turned into ws(s)://. */
  constructor(url: string, options?: ClientOptions);
  readonly url: string;
  readonly state: ClientState;
  readonly clientId: string | null;
  readonly nodeId: string | null;
  readonly pingInterval: number;
  readonly protocolVersion: number;
  readonly user: string | null;
  readonly expiresAt: number | null;
  connect(): Promise<ConnectedInfo>;
  close(): void;
  subscribe(
    channel: string,
    handlers?: MessageHandler | SubscriptionHandlers,
    opts?: { token?: string | SubscriptionTokenSource }
  ): Subscription;
  unsubscribe(channel: string | Subscription): Promise<void>;
  publish<T>(channel: string, data: Publishable<T>, opts?: { idempotencyKey?: string }): Promise<PublishResult>;
  history(channel: string, opts?: { limit?: number }): Promise<HistoryResult>;
  presence(channel: string): Promise<PresenceEntry[]>;
  /** Resolves with the round trip in ms. */
  ping(): Promise<number>;
  getSubscription(channel: string): Subscription | null;
  subscriptions(): Subscription[];
}

/** Whether name is a valid channel name: 1 to 200 of A-Z a-z 0-9 _ - = @ , . ; : */
export declare function validChannel(name: string): boolean;
/** The client's version. */
export declare const version: string;
/** The protocol version it speaks. */
export declare const protocolVersion: number;
