// Package broker defines how a switchboard node exchanges messages with every
// other node: the Broker interface, the Message it carries, a channel's
// Position in its history, and the errors a broker reports.
//
// A node owns one Broker. It calls Subscribe when its first local client joins
// a channel and Unsubscribe a while after its last one leaves, so a broker
// holds one subscription per channel per node, never one per client. Every
// message published to a channel the node is subscribed to, including the
// node's own, comes back through the Handler given to Start: one path, one
// order.
//
// Implementations live in sub-packages (memory, redis) and must pass the
// conformance suite in broker/brokertest. All methods of a Broker are safe for
// concurrent use.
package broker
