package transport

import (
	"net"

	"github.com/switchboard-rt/switchboard/hub"
)

// This file lends the transport's insides to its external tests.

// ServeConn serves an already upgraded connection of c, as Serve does
// after the handshake.
func (s *Server) ServeConn(c *hub.Client, conn net.Conn) { s.newSession(c, conn, nil, false).start() }

// ServeConnDeflate is ServeConn for a connection that negotiated
// permessage-deflate.
func (s *Server) ServeConnDeflate(c *hub.Client, conn net.Conn) {
	c.SetCompression(hub.Deflate)
	s.newSession(c, conn, nil, true).start()
}

// Parked returns how many sessions wait in the poller with no reader.
func (s *Server) Parked() int {
	p := s.poller()
	if p == nil {
		return 0
	}
	return p.parked()
}

// TCPPair returns two ends of a loopback TCP connection.
var TCPPair = tcpPair
