package hub

// This file lends the hub's insides to its external tests.

// QueueLen returns how many frames wait in c's queue (not those being
// written).
func (c *Client) QueueLen() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue)
}

// ClientOn returns the client attached to t, or nil.
func (h *Hub) ClientOn(t Transport) *Client {
	for _, c := range h.snapshot() {
		c.mu.Lock()
		tr := c.t
		c.mu.Unlock()
		if tr == t {
			return c
		}
	}
	return nil
}

// Held reports whether c waits in the writer pool for its due time (the
// write delay).
func (c *Client) Held() bool {
	p := &c.hub.writers
	p.mu.Lock()
	defer p.mu.Unlock()
	return c.dueIndex >= 0
}
