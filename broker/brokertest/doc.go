// Package brokertest is the conformance suite every broker.Broker must pass.
//
// A broker's tests call Run with a Factory that makes brokers:
//
//	func TestConformance(t *testing.T) {
//		brokertest.Run(t, brokertest.Factory{
//			New: func(t *testing.T) broker.Broker { return memory.New(memory.Config{}) },
//		})
//	}
//
// Run checks delivery, per-channel order under concurrent publishers,
// subscription bookkeeping and Close; the history contract when the broker
// implements broker.Historian; and, when Factory.Shared is set, that brokers
// made by the same Factory behave as several nodes on one backend: a message
// published through one reaches the others, every node sees a channel's
// messages in the same order, and their histories agree.
//
// Subtests run in parallel and use channel names unique to each run, so
// brokers sharing a backend with other tests do not see each other's
// messages. The suite needs no timing beyond polling: every wait is bounded
// by Factory.Timeout.
package brokertest
